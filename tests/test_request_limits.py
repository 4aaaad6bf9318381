"""What a request may cost the hub: bounded bodies, and password hashing off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.routes.bodies import MAX_BODY_BYTES
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout, wait_until

BIG = 50 * 1024 * 1024
CHUNK = 64 * 1024


async def stream_until_answered(port: int, path: str, head: str, body_start: bytes) -> tuple[int, int]:
    """POST a chunked body of :data:`BIG` bytes, a chunk at a time, until the hub answers;
    (status, bytes sent). Chunked, so the hub cannot go by a Content-Length."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n{head}\r\n".encode())
    answered = asyncio.ensure_future(reader.readuntil(b"\r\n"))
    sent = 0
    try:
        chunk = body_start + b"x" * (CHUNK - len(body_start))
        while sent < BIG and not answered.done():
            writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            await writer.drain()
            sent += len(chunk)
            chunk = b"x" * CHUNK
        if sent >= BIG:
            writer.write(b"0\r\n\r\n")
    except ConnectionError:
        pass  # the hub answered and closed: the answer is already in the reader
    status_line = await asyncio.wait_for(answered, timeout(30))
    writer.close()
    return int(status_line.split()[1]), sent


async def test_a_50_mb_login_body_is_refused_early_with_413(hub: RunningHub) -> None:
    status, sent = await stream_until_answered(hub.port, "/api/v1/auth/login", "Content-Type: application/json\r\n",
                                               b'{"username": "budi", "password": "')
    assert status == 413
    assert sent < BIG // 5, "the hub read far more than its limit before answering"


async def test_a_declared_length_over_the_limit_is_refused_unread(hub: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.post("/api/v1/auth/login", content=b"x" * (MAX_BODY_BYTES + 1),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large")


async def test_operator_json_bodies_are_capped(hub: RunningHub) -> None:
    await hub.hub.auth.add_operator("budi", "rahasia-sekali")
    async with httpx.AsyncClient(base_url=hub.http) as http:
        login = await http.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
        csrf = {"X-CSRF-Token": login.json()["csrf"], "Content-Type": "application/json"}
        huge = b'{"text": "' + b"x" * MAX_BODY_BYTES + b'", "all": true}'
        for path in ("/api/v1/announce", "/api/v1/stations/35.09.01/talk"):
            response = await http.post(path, content=huge, headers=csrf)
            assert (response.status_code, response.json()["error"]["code"]) == (413, "too_large"), path
        ok = await http.post("/api/v1/announce", json={"text": "Halo", "station": "35.09.01"}, headers=csrf)
        assert ok.status_code == 200, ok.text


def hold_scrypt(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make every scrypt call wait for ``release`` (set ``started`` first): a hash in progress
    the test can see and end. The wait is bounded so a hash on the event loop cannot hang it."""
    started, release = threading.Event(), threading.Event()
    real: Callable[..., bytes] = hashlib.scrypt

    def held(*args: Any, **kwargs: Any) -> bytes:
        started.set()
        release.wait(timeout(10))
        return real(*args, **kwargs)

    monkeypatch.setattr(hashlib, "scrypt", held)
    return started, release


async def test_the_event_loop_keeps_serving_while_a_password_is_hashed(
        hub: RunningHub, monkeypatch: pytest.MonkeyPatch) -> None:
    await hub.hub.auth.add_operator("budi", "rahasia-sekali")
    started, release = hold_scrypt(monkeypatch)
    order = []
    async with httpx.AsyncClient(base_url=hub.http) as http:
        async def log_in() -> int:
            response = await http.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
            order.append("login")
            return response.status_code

        logging_in = asyncio.ensure_future(log_in())
        await wait_until(started.is_set, message="the login's hash to start")
        assert (await http.get("/healthz")).status_code == 200
        order.append("healthz")
        release.set()
        assert await logging_in == 200
    assert order == ["healthz", "login"]  # answered while the hash ran, not after it


async def test_a_login_flood_is_refused_with_503_instead_of_queued(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running = await start_hub(hub_settings(tmp_path, auth={"password_workers": 1, "password_queue": 1}))
    try:
        await running.hub.auth.add_operator("budi", "rahasia-sekali")
        started, release = hold_scrypt(monkeypatch)
        async with httpx.AsyncClient(base_url=running.http) as http:
            def log_in(name: str) -> Any:
                return asyncio.ensure_future(http.post("/api/v1/auth/login", json={"username": name, "password": "x"}))

            waiting = [log_in("budi"), log_in("wati")]  # one hashing, one queued
            await wait_until(lambda: running.hub.auth.passwords.in_flight == 2, message="two logins in the pool")
            refused = await http.post("/api/v1/auth/login", json={"username": "sari", "password": "x"})
            assert (refused.status_code, refused.json()["error"]["code"]) == (503, "busy")
            assert int(refused.headers["retry-after"]) >= 1
            release.set()
            assert [(await w).status_code for w in waiting] == [401, 401]
        assert started.is_set()
        busy = [e for e in await running.hub.credentials.audit_log() if e["action"] == "login.busy"]
        assert [e["detail"] for e in busy] == ["sari"]  # a refused attempt is audited too
    finally:
        await stop_hub(running)
