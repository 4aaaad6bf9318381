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
    assert log[0] == {"id": log[0]["id"], "at": 1004.5, "actor": "budi", "action": "announce", "detail": "text 4"}


async def test_a_token_hash_names_its_station_until_it_is_rotated(backend: Backend) -> None:
    """Talk-back listeners present only their token: both stores must find its station."""
    store = backend.credentials()
    assert await store.station_for_token_hash("sha256$nobody") is None
    await store.set_token_hash("35.09.01", "sha256$old")
    await store.set_token_hash("opd.dinkes", "sha256$dinkes")
    assert await store.station_for_token_hash("sha256$old") == "35.09.01"
    await store.set_token_hash("35.09.01", "sha256$new")
    assert await store.station_for_token_hash("sha256$new") == "35.09.01"
    assert await store.station_for_token_hash("sha256$old") is None  # a rotated token names nobody
    assert await store.station_for_token_hash("sha256$dinkes") == "opd.dinkes"


async def test_audit_log_pages_by_id_newest_first(backend: Backend) -> None:
    """Every entry has an id, larger for newer entries; ``before`` pages back from an id."""
    store = backend.credentials()
    for i in range(7):
        await store.audit(2000.0 + i, "budi", "announce", f"text {i}")
    first = await store.audit_log(limit=3)
    assert [entry["detail"] for entry in first] == ["text 6", "text 5", "text 4"]
    ids = [entry["id"] for entry in first]
    assert all(isinstance(i, int) for i in ids) and ids == sorted(ids, reverse=True)
    second = await store.audit_log(limit=3, before=ids[-1])
    assert [entry["detail"] for entry in second] == ["text 3", "text 2", "text 1"]
    await store.audit(2010.0, "sari", "login", "127.0.0.1")  # a new entry does not shift the pages
    third = await store.audit_log(limit=3, before=second[-1]["id"])
    assert [entry["detail"] for entry in third] == ["text 0"]
    assert await store.audit_log(limit=3, before=third[-1]["id"]) == []
    assert (await store.audit_log(limit=1))[0]["detail"] == "127.0.0.1"


FAR = 4102444800.0  # 2100-01-01: keys whose expiry is derived from it stay in Redis meanwhile


async def test_login_attempts_are_counted_per_key_in_a_fixed_window(backend: Backend) -> None:
    store = backend.credentials()
    assert [await store.count_login_attempt("pair:budi", FAR + t, 60) for t in (0, 10, 59)] == [1, 2, 3]
    assert await store.count_login_attempt("pair:budi", FAR + 60, 60) == 1  # the window ended: counts anew
    assert await store.count_login_attempt("pair:budi", FAR + 119, 60) == 2  # the window is not sliding
    assert await store.count_login_attempt("user:budi", FAR, 60) == 1


async def test_login_locks_hold_until_their_time_and_are_cleared(backend: Backend) -> None:
    store = backend.credentials()
    await store.lock_login("pair:a", FAR + 30, FAR)
    await store.lock_login("pair:a", FAR + 10, FAR)  # a shorter lock never shortens a longer one
    await store.lock_login("user:a", FAR + 5, FAR)
    assert await store.login_locks(["pair:a", "user:a", "pair:b"], FAR + 1) == {"pair:a": FAR + 30,
                                                                                 "user:a": FAR + 5}
    assert await store.login_locks(["pair:a", "user:a"], FAR + 5) == {"pair:a": FAR + 30}
    await store.count_login_attempt("pair:a", FAR, 60)
    await store.clear_login("pair:a")
    assert await store.login_locks(["pair:a", "user:a"], FAR + 1) == {"user:a": FAR + 5}
    assert await store.count_login_attempt("pair:a", FAR + 1, 60) == 1


async def test_login_counters_and_locks_outlive_the_store(backend: Backend) -> None:
    """What a restarted hub (or another node) sees: the same counts and locks."""
    first = backend.credentials()
    await first.count_login_attempt("pair:budi", FAR, 60)
    await first.lock_login("pair:budi", FAR + 30, FAR)
    await first.close()
    second = backend.credentials()
    assert await second.count_login_attempt("pair:budi", FAR + 1, 60) == 2
    assert await second.login_locks(["pair:budi"], FAR + 1) == {"pair:budi": FAR + 30}


async def test_an_operators_sessions_end_together_and_with_the_operator(backend: Backend) -> None:
    store = backend.credentials()
    await store.set_operator("budi", "scrypt$1")
    await store.set_operator("wati", "scrypt$2")
    for session_id, operator in (("b1", "budi"), ("b2", "budi"), ("w1", "wati")):
        await store.save_session(session_id, operator, FAR)
    assert await store.sessions(["b1", "w1", "never"]) == {"b1": ("budi", FAR), "w1": ("wati", FAR), "never": None}
    assert await store.revoke_operator_sessions("budi") == 2
    assert await store.sessions(["b1", "b2", "w1"]) == {"b1": None, "b2": None, "w1": ("wati", FAR)}
    assert await store.revoke_operator_sessions("budi") == 0
    assert await store.remove_operator("wati") is True
    assert await store.operator_hash("wati") is None and await store.session("w1") is None
    assert await store.operators() == ["budi"]
    assert await store.remove_operator("wati") is False


async def test_expired_sessions_are_swept(backend: Backend) -> None:
    store = backend.credentials()
    await store.save_session("old", "budi", FAR)
    await store.save_session("new", "budi", FAR + 100)
    assert await store.sweep_expired(FAR + 1) == 1
    assert await store.session("old") is None
    assert await store.session("new") == ("budi", FAR + 100)
    assert await store.sweep_expired(FAR + 1) == 0
    assert await store.revoke_operator_sessions("budi") == 1  # the swept one is not counted again
