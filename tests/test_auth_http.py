"""Operator login, sessions, CSRF, throttling, and the JSON error shape."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from hub.errors import RateLimited
from hub.services.auth import LoginThrottle, hash_password, password_matches
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub
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


def test_login_throttle_locks_out_then_forgives() -> None:
    throttle = LoginThrottle(limit=3, lockout_s=60)
    keys = ["user:budi", "addr:10.0.0.1"]
    for _ in range(3):
        throttle.check(keys, now=0)
        throttle.failed(keys, now=0)
    with pytest.raises(RateLimited) as caught:
        throttle.check(keys, now=30)
    assert 29 <= caught.value.retry_after <= 30
    throttle.check(keys, now=61)  # the lock-out is over
    throttle.failed(keys, now=61)
    throttle.check(keys, now=61)  # and the count started again


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
    jpeg = b"\xff\xd8\xff\xe0" + b"jfif" * 10
    await client.send({"t": "thumb", "jpeg": jpeg})
    await client.send({"t": "ping"})
    await client.recv_until(lambda m: m["t"] == "pong")
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.get("/api/v1/stations/35.09.01/thumbnail.jpg")
        assert response.content == jpeg
        assert response.headers["content-type"] == "image/jpeg"
        again = await http.get("/api/v1/stations/35.09.01/thumbnail.jpg",
                               headers={"If-Modified-Since": response.headers["last-modified"]})
        assert again.status_code == 304


async def test_health_ready_and_metrics(hub: RunningHub) -> None:
    client, _ = await station(hub.ws, "35.09.01", await hub.token("35.09.01"))
    async with httpx.AsyncClient(base_url=hub.http) as http:
        assert (await http.get("/healthz")).json() == {"ok": True}
        ready = await http.get("/readyz")
        assert ready.status_code == 200 and ready.json()["ready"] is True
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
