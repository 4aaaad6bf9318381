"""Operator login, sessions, CSRF, throttling, and the JSON error shape."""

from __future__ import annotations

import base64
import hashlib
import os
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from hub.app import session_secret
from hub.core.login_throttle import LoginThrottle
from hub.services.passwords import hash_password, needs_rehash, password_matches
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, wait_until
from tests.redis_server import RedisServer
from tests.wsclient import JSON, Client, station


async def login(http: httpx.AsyncClient, username: str = "budi", password: str = "rahasia-sekali") -> str:
    response = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["csrf"])


@pytest.fixture
async def operator(hub: RunningHub) -> str:
    await hub.hub.auth.add_operator("budi", "rahasia-sekali")
    return "budi"


def test_password_hash_roundtrip_and_salt() -> None:
    first, second = hash_password("kata sandi"), hash_password("kata sandi")
    assert first != second and first.startswith("scrypt$")
    assert password_matches("kata sandi", first)
    assert not password_matches("kata sandi!", first)
    assert not password_matches("x", None)
    assert not password_matches("x", "garbage")
    assert not needs_rehash(first)


def test_hashes_of_the_old_cost_still_verify_and_ask_for_a_rehash() -> None:
    old = "scrypt$16384$8$1$MDEyMzQ1Njc4OWFiY2RlZg==$" + base64.b64encode(hashlib.scrypt(
        b"kata sandi", salt=b"0123456789abcdef", n=2**14, r=8, p=1, dklen=32)).decode()
    assert password_matches("kata sandi", old) and needs_rehash(old)
    assert hash_password("kata sandi").startswith("scrypt$131072$8$1$")  # OWASP's scrypt advice


def test_login_throttle_locks_the_address_then_backs_the_name_off() -> None:
    throttle = LoginThrottle(limit=3, lockout_s=60, user_limit=6, user_backoff_max_s=10)
    pair, user = throttle.keys("Budi", "10.0.0.1")
    assert (pair, user) == throttle.keys("budi", "10.0.0.1") and pair != throttle.keys("budi", "10.0.0.2")[0]
    assert throttle.locks_after(pair, 2, user, 2, now=0) == {}
    assert throttle.locks_after(pair, 3, user, 3, now=0) == {pair: 60}  # the third attempt locks the address
    assert throttle.over_limit(4) and not throttle.over_limit(3)
    assert throttle.retry_after({pair: 60}, now=30) == 30
    assert throttle.retry_after({pair: 60}, now=60) is None  # the lock-out is over
    # The name, from every address: past user_limit, 1 s, 2 s, 4 s … up to the maximum.
    assert [throttle.locks_after(pair, 1, user, n, now=100).get(user) for n in (6, 7, 8, 9, 12)] == \
        [None, 101, 102, 104, 110]


async def test_login_sets_httponly_samesite_cookies_and_me_reports_operator(hub: RunningHub, operator: str) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
        cookies = response.headers.get_list("set-cookie")
        session = next(c for c in cookies if c.startswith("jaga_session="))
        assert "HttpOnly" in session and "SameSite=strict" in session
        csrf_cookie = next(c for c in cookies if c.startswith("jaga_csrf="))
        assert "HttpOnly" not in csrf_cookie
        me = (await http.get("/api/v1/auth/me")).json()
        assert me == {"operator": "budi", "csrf": response.json()["csrf"]}


async def test_wrong_password_is_401_then_rate_limited_with_retry_after(hub: RunningHub, operator: str) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        limit = hub.hub.settings.auth.login_attempts
        for _ in range(limit):
            response = await http.post("/api/v1/auth/login", json={"username": "budi", "password": "salah"})
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "not_authenticated"
        response = await http.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
    audit = await hub.hub.credentials.audit_log()
    assert sum(1 for entry in audit if entry["action"] == "login.failed") == limit


async def test_form_login_redirects_to_next_and_never_off_site(hub: RunningHub, operator: str) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.post("/api/v1/auth/login",
                                   data={"username": "budi", "password": "rahasia-sekali", "next": "/laporan"})
        assert (response.status_code, response.headers["location"]) == (303, "/laporan")
        response = await http.post("/api/v1/auth/login",
                                   data={"username": "budi", "password": "rahasia-sekali", "next": "//evil.example"})
        assert response.headers["location"] == "/wall"
        response = await http.post("/api/v1/auth/login", data={"username": "budi", "password": "x"})
        assert response.status_code == 303 and response.headers["location"].startswith("/login?error=1")


async def test_wall_redirects_anonymous_to_login_and_serves_operator(hub: RunningHub, operator: str) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.get("/wall")
        assert (response.status_code, response.headers["location"]) == (303, "/login?next=/wall")
        await login(http)
        response = await http.get("/wall")
        assert response.status_code == 200
        assert "script-src 'self'" in response.headers["content-security-policy"]


async def test_announce_needs_operator_and_csrf_and_reaches_the_station(hub: RunningHub, operator: str) -> None:
    client, _ = await station(hub.ws, "35.09.01", await hub.token("35.09.01"))
    async with httpx.AsyncClient(base_url=hub.http) as http:
        anonymous = await http.post("/api/v1/announce", json={"text": "Halo", "station": "35.09.01"})
        assert anonymous.status_code == 401
        csrf = await login(http)
        no_csrf = await http.post("/api/v1/announce", json={"text": "Halo", "station": "35.09.01"})
        assert (no_csrf.status_code, no_csrf.json()["error"]["code"]) == (403, "csrf")
        ok = await http.post("/api/v1/announce", json={"text": "Rapat jam 10", "kecamatan": "Jombang"},
                             headers={"X-CSRF-Token": csrf})
        assert ok.json() == {"targets": 3}
        bad = await http.post("/api/v1/announce", json={"text": "x"}, headers={"X-CSRF-Token": csrf})
        assert (bad.status_code, bad.json()["error"]["code"]) == (400, "missing_field")
    message = await client.recv_until(lambda m: m["t"] == "announce")
    assert (message["text"], message["from"]) == ("Rapat jam 10", "budi")
    audit = await hub.hub.credentials.audit_log()
    assert audit[0]["action"] == "announce" and audit[0]["actor"] == "budi"


async def test_logout_ends_the_session_everywhere(hub: RunningHub, operator: str) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        csrf = await login(http)
        session_cookie = http.cookies["jaga_session"]
        assert (await http.post("/api/v1/auth/logout", headers={"X-CSRF-Token": csrf})).status_code == 200
    async with httpx.AsyncClient(base_url=hub.http, cookies={"jaga_session": session_cookie}) as replay:
        assert (await replay.get("/api/v1/auth/me")).json()["operator"] is None


async def test_forged_session_cookie_is_ignored(hub: RunningHub, operator: str) -> None:
    async with httpx.AsyncClient(base_url=hub.http, cookies={"jaga_session": "abc.def"}) as http:
        assert (await http.get("/api/v1/auth/me")).json()["operator"] is None
        assert (await http.get("/wall")).status_code == 303


async def test_operator_watcher_sees_private_stations(hub: RunningHub, operator: str) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        await login(http)
        cookie = http.cookies["jaga_session"]
        ids = {s["id"] for s in (await http.get("/api/v1/stations")).json()["stations"]}
        assert "opd.bakesbangpol" in ids
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON, additional_headers={"Cookie": f"jaga_session={cookie}"})
    snapshot = await watcher.recv()
    assert "opd.bakesbangpol" in {s["id"] for s in snapshot["stations"]}
    assert "node" in snapshot["stations"][0]


async def test_errors_are_json_with_code_and_message(hub: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        for path, status, code in [
            ("/api/v1/stations/35.09.99", 404, "not_found"),
            ("/api/v1/stations/35.09.01/thumbnail.jpg", 404, "no_thumbnail"),
            ("/api/v1/attendance/daily?date=kemarin", 400, "bad_query"),
            ("/api/v1/attendance/monthly?month=2026-13", 400, "bad_query"),
            ("/api/v1/attendance/monthly?group=planet", 400, "bad_query"),
            ("/api/v1/stations?format=xml", 400, "bad_query"),
            ("/api/v1/audit", 401, "not_authenticated"),
        ]:
            response = await http.get(path)
            assert response.status_code == status, path
            assert response.json()["error"]["code"] == code, path
            assert response.json()["error"]["message"]


async def test_thumbnail_served_with_last_modified(hub: RunningHub) -> None:
    client, _ = await station(hub.ws, "35.09.01", await hub.token("35.09.01"))
    from tests.web.helpers import make_jpeg

    await client.send({"t": "thumb", "jpeg": make_jpeg(seed=5)})
    await client.send({"t": "ping"})
    await client.recv_until(lambda m: m["t"] == "pong")
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.get("/api/v1/stations/35.09.01/thumbnail.jpg")
        assert response.content == hub.hub.stations.thumbnails["35.09.01"][0]  # the hub's encoding
        assert response.headers["content-type"] == "image/jpeg"
        again = await http.get("/api/v1/stations/35.09.01/thumbnail.jpg",
                               headers={"If-Modified-Since": response.headers["last-modified"]})
        assert again.status_code == 304


async def test_health_ready_and_metrics(hub: RunningHub) -> None:
    await hub.hub.auth.add_operator("budi", "rahasia-sekali")
    async with httpx.AsyncClient(base_url=hub.http) as http:
        assert (await http.get("/healthz")).json() == {"ok": True}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
        assert (await http.get("/metrics")).status_code == 401  # counts private stations too
        await http.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
        # Connected after the (slow, scrypt) login: it sends no heartbeats.
        client, _ = await station(hub.ws, "35.09.01", await hub.token("35.09.01"))
        text = (await http.get("/metrics")).text
    assert 'jaga_stations{state="online"} 1.0' in text
    assert "jaga_messages_in_total" in text
    await client.close()


async def test_cookies_are_secure_when_served_over_https(tmp_path: Path) -> None:
    running = await start_hub(hub_settings(tmp_path, hub={"secure_cookies": True}))
    try:
        await running.hub.auth.add_operator("budi", "rahasia-sekali")
        async with httpx.AsyncClient(base_url=running.http) as http:
            response = await http.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
        cookies = response.headers.get_list("set-cookie")
        assert cookies and all("Secure" in cookie for cookie in cookies)
    finally:
        await stop_hub(running)


class FrozenClock:
    """The hub's clock, moved only by the test (lock-outs and expiry without waiting)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def from_address(running: RunningHub, address: str) -> httpx.AsyncClient:
    """A client whose requests come from ``address`` (any 127.x.y.z is the loopback on Linux)."""
    return httpx.AsyncClient(base_url=running.http, transport=httpx.AsyncHTTPTransport(local_address=address))


async def attempt(http: httpx.AsyncClient, password: str, username: str = "budi") -> int:
    response = await http.post("/api/v1/auth/login", json={"username": username, "password": password})
    return response.status_code


async def test_a_guesser_locks_only_their_own_address_out_and_refusals_are_audited(
        hub: RunningHub, operator: str) -> None:
    limit = hub.hub.settings.auth.login_attempts
    async with from_address(hub, "127.0.0.2") as guesser, from_address(hub, "127.0.0.1") as budi:
        assert [await attempt(guesser, "salah") for _ in range(limit)] == [401] * limit
        assert await attempt(guesser, "rahasia-sekali") == 429  # even the right password, from there
        assert await attempt(budi, "rahasia-sekali") == 200  # the operator, from their own address
    refused = [e for e in await hub.hub.credentials.audit_log() if e["action"] == "login.refused"]
    assert [(e["actor"], e["detail"]) for e in refused] == [("anon@127.0.0.2", "budi")]


async def test_a_distributed_guesser_is_slowed_down_by_name(tmp_path: Path) -> None:
    clock = FrozenClock()
    running = await start_hub(hub_settings(tmp_path, auth={"login_attempts": 2, "user_attempts": 4,
                                                           "user_backoff_max_s": 60}), clock)
    try:
        await running.hub.auth.add_operator("budi", "rahasia-sekali")
        for n in range(2, 7):  # one guess from each of five addresses: nobody's address is locked,
            async with from_address(running, f"127.0.0.{n}") as guesser:  # but the fifth is one too many
                assert await attempt(guesser, "salah") == 401
        async with from_address(running, "127.0.0.1") as budi:
            response = await budi.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
            assert response.status_code == 429 and int(response.headers["retry-after"]) == 1  # a back-off …
            clock.now += 1
            assert await attempt(budi, "rahasia-sekali") == 200  # … of seconds, not a lock-out
        async with from_address(running, "127.0.0.7") as guesser:
            response = await guesser.post("/api/v1/auth/login", json={"username": "budi", "password": "salah"})
            assert int(response.headers["retry-after"]) == 2  # doubling with every attempt on the name
    finally:
        await stop_hub(running)


async def test_a_lock_out_survives_a_restart(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path)
    running = await start_hub(settings)
    try:
        await running.hub.auth.add_operator("budi", "rahasia-sekali")
        async with httpx.AsyncClient(base_url=running.http) as http:
            for _ in range(settings.auth.login_attempts):
                assert await attempt(http, "salah") == 401
    finally:
        await stop_hub(running)
    running = await start_hub(settings)
    try:
        async with httpx.AsyncClient(base_url=running.http) as http:
            assert await attempt(http, "rahasia-sekali") == 429
    finally:
        await stop_hub(running)


@pytest.mark.redis
async def test_every_node_of_a_cluster_counts_the_same_attempts(tmp_path: Path, redis_url: str) -> None:
    nodes = [await start_hub(hub_settings(tmp_path / name, hub={"backend": "redis", "redis_url": redis_url,
                                                                "node_id": name}))
             for name in ("a", "b")]
    try:
        await nodes[0].hub.auth.add_operator("budi", "rahasia-sekali")
        limit = nodes[0].hub.settings.auth.login_attempts
        for n in range(limit):  # spread over both nodes
            async with httpx.AsyncClient(base_url=nodes[n % 2].http) as http:
                assert await attempt(http, "salah") == 401
        for running in nodes:
            async with httpx.AsyncClient(base_url=running.http) as http:
                assert await attempt(http, "rahasia-sekali") == 429
    finally:
        for running in nodes:
            await stop_hub(running)


@pytest.mark.redis
async def test_an_operator_request_while_redis_is_down_is_503_with_retry_after(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    running = await start_hub(hub_settings(tmp_path, hub={"backend": "redis", "redis_url": server.url}))
    try:
        await running.hub.auth.add_operator("budi", "rahasia-sekali")
        async with httpx.AsyncClient(base_url=running.http) as http:
            await login(http)
            server.stop()
            response = await http.get("/api/v1/auth/me")
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "unavailable" and int(response.headers["retry-after"]) > 0
            # A WHEP client on another origin must be able to read the same answer.
            whep = await http.post("/whep/35.09.01", content=b"v=0", headers={"Content-Type": "application/sdp"})
            assert whep.status_code == 503 and whep.headers["access-control-allow-origin"] == "*"
            cookie = http.cookies["jaga_session"]
        with pytest.raises(InvalidStatus) as refused:  # the watch handshake too
            await Client.open(f"{running.ws}/ws/watch", JSON, additional_headers={"Cookie": f"jaga_session={cookie}"})
        assert refused.value.response.status_code == 503 and refused.value.response.headers["Retry-After"]
    finally:
        await stop_hub(running)
        server.stop()


def test_the_session_secret_file_is_created_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Created 0600 at once, not written world-readable and chmod'ed afterwards."""
    monkeypatch.setattr(Path, "chmod", lambda self, mode: None)
    previous = os.umask(0o022)
    try:
        settings = hub_settings(tmp_path)
        secret = session_secret(settings)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((settings.data_path / "session_secret").stat().st_mode) == 0o600
    assert len(secret) == 64 and session_secret(settings) == secret


async def test_expired_sessions_are_refused_and_deleted(tmp_path: Path) -> None:
    clock = FrozenClock()
    running = await start_hub(hub_settings(tmp_path), clock)
    store = running.hub.credentials
    try:
        await running.hub.auth.add_operator("budi", "rahasia-sekali")
        async with httpx.AsyncClient(base_url=running.http) as http:
            await login(http)
            session_id = http.cookies["jaga_session"].rsplit(".", 1)[0]
            await store.save_session("unused", "budi", clock.now + 60)  # nobody looks it up again
            clock.now += running.hub.settings.auth.session_hours * 3600 + 1
            assert (await http.get("/api/v1/auth/me")).json()["operator"] is None
            assert await store.session(session_id) is None  # deleted on lookup
        await wait_until(_gone(store, "unused"), message="the timer's sweep of expired sessions")
    finally:
        await stop_hub(running)


def _gone(store: Any, session_id: str) -> Any:
    async def gone() -> bool:
        return await store.session(session_id) is None
    return gone


async def test_a_login_upgrades_a_hash_of_the_old_cost_and_keeps_the_password(hub: RunningHub) -> None:
    salt = b"0123456789abcdef"
    old = "scrypt$16384$8$1$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(
        hashlib.scrypt(b"rahasia-sekali", salt=salt, n=2**14, r=8, p=1, dklen=32)).decode()
    await hub.hub.credentials.set_operator("budi", old)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        await login(http)
        upgraded = await hub.hub.credentials.operator_hash("budi")
        assert upgraded is not None and upgraded.startswith("scrypt$131072$8$1$")
        assert (await http.get("/api/v1/auth/me")).json()["operator"] == "budi"  # the session stays
        await login(http)  # and the same password still works
