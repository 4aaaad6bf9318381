"""An operator's access ends with their session: logout, expiry, revocation, a new password,
removal. Sockets and media sessions it opened close within one checkpoint on every hub, also
when the change came from the CLI. Media routes check the CSRF token like the API does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from hub.media.seams_peers import close_peer_connection
from tests.kit import RunningHub, hub_settings, run_cli, start_hub, stop_hub, wait_until, write_config
from tests.media.peers import wait_for_state
from tests.media.test_routes import publisher_offer, viewer_offer
from tests.wsclient import JSON, Client

PRIVATE = "opd.bakesbangpol"
SDP = {"Content-Type": "application/sdp"}
PASSWORD = "rahasia-sekali"


class Clock:
    """Real time plus ``ahead`` seconds: the test jumps to a session's expiry."""

    def __init__(self) -> None:
        self.ahead = 0.0

    def __call__(self) -> float:
        return time.time() + self.ahead


@dataclass
class Access:
    """What one logged-in operator holds open: the private watch view, a WHEP view of a
    private station, and the talk-back WHIP session."""

    http: httpx.AsyncClient
    csrf: str
    watcher: Client
    whep: str
    whip: str
    peers: list[RTCPeerConnection]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def hub(tmp_path: Path, clock: Clock) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path), clock)
    try:
        await running.hub.auth.add_operator("budi", PASSWORD)
        yield running
    finally:
        await stop_hub(running)


@pytest.fixture
async def publishing(hub: RunningHub) -> AsyncIterator[None]:
    """The private station publishes, so an operator has something to view."""
    token = await hub.token(PRIVATE)
    publisher, offer = await publisher_offer()
    async with httpx.AsyncClient(base_url=hub.http) as http:
        created = await http.post(f"/whip/{PRIVATE}", content=offer,
                                  headers={"Authorization": f"Bearer {token}", **SDP})
        assert created.status_code == 201, created.text
    await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
    await wait_for_state(publisher, "connected")
    yield
    await close_peer_connection(publisher)


async def open_access(hub: RunningHub) -> Access:
    http = httpx.AsyncClient(base_url=hub.http)
    csrf = (await http.post("/api/v1/auth/login", json={"username": "budi", "password": PASSWORD})).json()["csrf"]
    headers = {"X-CSRF-Token": csrf, **SDP}
    viewer, view_offer = await viewer_offer()
    watched = await http.post(f"/whep/{PRIVATE}", content=view_offer, headers=headers)
    assert watched.status_code == 201, watched.text
    talker, talk_offer = await publisher_offer()
    talking = await http.post("/whip/pendopo", content=talk_offer, headers=headers)
    assert talking.status_code == 201, talking.text
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON,
                                additional_headers={"Cookie": f"jaga_session={http.cookies['jaga_session']}"})
    snapshot = await watcher.recv()
    assert PRIVATE in {s["id"] for s in snapshot["stations"]}
    return Access(http, csrf, watcher, watched.headers["location"].rsplit("/", 1)[1],
                  talking.headers["location"].rsplit("/", 1)[1], [viewer, talker])


async def assert_all_ended(hub: RunningHub, access: Access) -> None:
    assert await access.watcher.closed_with(wait=10) == 4401
    media = hub.hub.media
    await wait_until(lambda: media.session(access.whep) is None and media.session(access.whip) is None,
                     message="the operator's media sessions to end")
    assert (await access.http.get("/api/v1/auth/me")).json()["operator"] is None
    await access.http.aclose()
    for peer in access.peers:
        await close_peer_connection(peer)


async def cli(tmp_path: Path, *args: str, stdin: str = "") -> None:
    done = await asyncio.to_thread(run_cli, write_config(tmp_path), "operators", *args, stdin=stdin)
    assert done.returncode == 0, done.stderr


async def test_logout_ends_the_watch_view_and_media_sessions(hub: RunningHub, publishing: None) -> None:
    access = await open_access(hub)
    assert (await access.http.post("/api/v1/auth/logout", headers={"X-CSRF-Token": access.csrf})).status_code == 200
    await assert_all_ended(hub, access)


async def test_expiry_ends_them(hub: RunningHub, publishing: None, clock: Clock) -> None:
    access = await open_access(hub)
    clock.ahead += hub.hub.settings.auth.session_hours * 3600 + 1
    await assert_all_ended(hub, access)


@pytest.mark.parametrize("command", [("revoke", "budi"), ("remove", "budi"), ("add", "budi", "--password-stdin")])
async def test_the_cli_ends_them_on_a_running_hub(tmp_path: Path, hub: RunningHub, publishing: None,
                                                   command: tuple[str, ...]) -> None:
    access = await open_access(hub)
    await cli(tmp_path, *command, stdin="kata-sandi-baru\n")
    await assert_all_ended(hub, access)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        again = await http.post("/api/v1/auth/login", json={"username": "budi", "password": PASSWORD})
        assert again.status_code == (200 if command[0] == "revoke" else 401)


async def test_another_operators_sessions_stay(hub: RunningHub, publishing: None, tmp_path: Path) -> None:
    await hub.hub.auth.add_operator("wati", PASSWORD)
    access = await open_access(hub)
    await cli(tmp_path, "revoke", "wati")
    await cli(tmp_path, "revoke", "wati")  # a checkpoint or two later, budi's view is still there
    await access.watcher.send({"t": "ping"})
    assert (await access.watcher.recv_until(lambda m: m["t"] == "pong"))["t"] == "pong"
    assert hub.hub.media.session(access.whep) is not None and hub.hub.media.session(access.whip) is not None
    await access.http.aclose()
    for peer in access.peers:
        await close_peer_connection(peer)


async def test_operator_media_requests_need_the_csrf_token(hub: RunningHub, publishing: None) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        csrf = (await http.post("/api/v1/auth/login", json={"username": "budi", "password": PASSWORD})).json()["csrf"]
        viewer, view_offer = await viewer_offer()
        for path in (f"/whep/{PRIVATE}", "/whip/pendopo"):
            for token in (None, b"wrong", "é-non-ascii".encode("latin-1")):
                headers = [(b"content-type", b"application/sdp"), *([(b"x-csrf-token", token)] if token else [])]
                refused = await http.post(path, content=view_offer, headers=headers)
                assert (refused.status_code, refused.json()["error"]["code"]) == (403, "csrf"), (path, token)
        # The public portal, opened by a logged-in operator, sends the cookie but no token:
        # a public station is then viewed as by anyone.
        public = await http.post("/whep/35.09.01", content=view_offer, headers=SDP)
        assert public.status_code not in (401, 403), public.text
        watched = await http.post(f"/whep/{PRIVATE}", content=view_offer, headers={**SDP, "X-CSRF-Token": csrf})
        assert watched.status_code == 201
        location = watched.headers["location"]
        assert (await http.delete(location)).status_code == 403
        assert (await http.delete(location, headers={"X-CSRF-Token": csrf})).status_code == 200
        await close_peer_connection(viewer)


async def test_non_ascii_cookie_and_csrf_header_are_refused_not_500(hub: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        me = await http.get("/api/v1/auth/me", headers=[(b"cookie", "jaga_session=abc.d\xe9f".encode("latin-1"))])
        assert (me.status_code, me.json()["operator"]) == (200, None)
        await http.post("/api/v1/auth/login", json={"username": "budi", "password": PASSWORD})
        announce = await http.post("/api/v1/announce", json={"text": "Halo", "all": True},
                                   headers=[(b"x-csrf-token", "\xe9t\xe9".encode("latin-1"))])
        assert (announce.status_code, announce.json()["error"]["code"]) == (403, "csrf")
