"""Credential store contract: tokens, operators, sessions, audit log."""

from __future__ import annotations

from tests.backends.conftest import Backend


async def test_token_hashes_are_stored_and_replaced(backend: Backend) -> None:
    store = backend.credentials()
    assert await store.token_hash("35.09.01") is None
    await store.set_token_hash("35.09.01", "sha256$old")
    await store.set_token_hash("35.09.01", "sha256$new")
    await store.set_token_hash("opd.dinkes", "sha256$dinkes")
    assert await store.token_hash("35.09.01") == "sha256$new"
    assert await store.token_hashes(["opd.dinkes", "35.09.01", "35.09.02"]) == {
        "opd.dinkes": "sha256$dinkes", "35.09.01": "sha256$new", "35.09.02": None}


async def test_operators_are_listed_by_name(backend: Backend) -> None:
    store = backend.credentials()
    await store.set_operator("wati", "scrypt$1")
    await store.set_operator("budi", "scrypt$2")
    await store.set_operator("wati", "scrypt$3")
    assert await store.operators() == ["budi", "wati"]
    assert await store.operator_hash("wati") == "scrypt$3"
    assert await store.operator_hash("nobody") is None


async def test_sessions_are_saved_read_and_revoked(backend: Backend) -> None:
    store = backend.credentials()
    expires = 4102444800.25  # 2100-01-01, so Redis keeps the key
    await store.save_session("abc", "budi", expires)
    assert await store.session("abc") == ("budi", expires)
    await store.revoke_session("abc")
    assert await store.session("abc") is None
    assert await store.session("never") is None


async def test_audit_log_is_newest_first_and_limited(backend: Backend) -> None:
    store = backend.credentials()
    for i in range(5):
        await store.audit(1000.5 + i, "budi", "announce", f"text {i}")
    log = await store.audit_log(limit=3)
    assert [entry["detail"] for entry in log] == ["text 4", "text 3", "text 2"]
    assert log[0] == {"at": 1004.5, "actor": "budi", "action": "announce", "detail": "text 4"}
