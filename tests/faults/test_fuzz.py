"""Property-based bad input against a real hub process: random bytes and well-formed but
wrong messages at both WebSocket endpoints, random query strings at the API. Every answer
is a documented error, other sessions are unaffected, and the hub logs no traceback.

Hypothesis prints the failing example and its seed; examples are derandomized so CI runs
are repeatable.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from tests.kit import HubProcess, timeout

DOCUMENTED_CLOSES = {1000, 1009, 4400, 4401, 4429}
FUZZ = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class FuzzedHub(HubProcess):
    """A hub process with generous rate limits (the fuzzer sends fast) and two station tokens."""

    def __init__(self, home: Path) -> None:
        super().__init__(home, presence={"heartbeat_s": 1.0, "timeout_s": 5.0, "hello_timeout_s": 2.0,
                                         "burst": 1000, "max_messages_per_s": 1000.0})
        self.tokens = {sid: self.token(sid) for sid in ("35.09.01", "35.09.02")}

    def connect(self, path: str, subprotocol: str = "jaga.v1.msgpack") -> ClientConnection:
        return connect(f"{self.ws}{path}", subprotocols=[Subprotocol(subprotocol)], open_timeout=timeout(5),
                       max_size=2**22)


@pytest.fixture(scope="module")
def hub_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedHub]:
    running = FuzzedHub(tmp_path_factory.mktemp("fuzz"))
    running.start_blocking()
    try:
        yield running
    finally:
        running.stop()
        log = running.log_text()
        assert "Traceback" not in log, log[-4000:]
        for token in running.tokens.values():
            assert token not in log  # secrets never reach the log


def close_code_after(connection: ClientConnection) -> int | None:
    """Read until the hub closes (or stays quiet for a while); return the close code."""
    try:
        while True:
            connection.recv(timeout=timeout(5))
    except ConnectionClosed:
        return connection.close_code
    except TimeoutError:
        return None


def hello(connection: ClientConnection, hub: FuzzedHub, station: str = "35.09.01") -> dict[str, Any]:
    connection.send(msgpack.packb({"t": "hello", "station": station, "token": hub.tokens[station]}))
    reply: dict[str, Any] = msgpack.unpackb(connection.recv(timeout=timeout(5)))
    return reply


values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
message_types = st.sampled_from(["hello", "hb", "activity.start", "activity.stop", "thumb", "ping", "x", ""])
wrong_messages = st.builds(lambda t, extra: {"t": t, **extra}, message_types,
                           st.dictionaries(st.sampled_from(["title", "jpeg", "camera", "bitrate", "station", "token"]),
                                           values, max_size=3))


@FUZZ
@given(frame=st.binary(max_size=300) | st.text(max_size=300))
def test_random_first_frames_close_station_socket_with_documented_codes(hub_process: FuzzedHub,
                                                                         frame: bytes | str) -> None:
    with hub_process.connect("/ws/station") as connection:
        connection.send(frame)
        assert close_code_after(connection) in DOCUMENTED_CLOSES


@FUZZ
@given(message=wrong_messages)
def test_wrong_messages_after_hello_get_errors_and_the_session_survives(hub_process: FuzzedHub,
                                                                         message: dict[str, Any]) -> None:
    with hub_process.connect("/ws/station") as connection:
        assert hello(connection, hub_process)["t"] == "welcome"
        connection.send(msgpack.packb(message, use_bin_type=True))
        connection.send(msgpack.packb({"t": "ping"}))
        while True:
            reply = msgpack.unpackb(connection.recv(timeout=timeout(5)))
            if reply["t"] == "pong":
                break
            assert reply["t"] == "error" and reply["code"] in {
                "malformed", "unknown_type", "missing_field", "bad_field", "unexpected"}, reply


@FUZZ
@given(frame=st.binary(max_size=300) | st.text(max_size=300))
def test_random_frames_at_watch_socket_get_errors_and_the_socket_survives(hub_process: FuzzedHub,
                                                                          frame: bytes | str) -> None:
    with hub_process.connect("/ws/watch", "jaga.v1.json") as connection:
        assert json.loads(connection.recv(timeout=timeout(5)))["t"] == "snapshot"
        connection.send(frame)
        connection.send(json.dumps({"t": "ping"}))
        replies = [json.loads(connection.recv(timeout=timeout(5))) for _ in range(2)]
        assert replies[-1]["t"] == "pong"
        assert replies[0]["t"] == "pong" or replies[0]["t"] == "error"


api_paths = st.sampled_from([
    "/api/v1/stations", "/api/v1/stations/35.09.01", "/api/v1/attendance/daily", "/api/v1/attendance/monthly",
    "/api/v1/activities", "/api/v1/stations/35.09.01/thumbnail.jpg",
])
query = st.dictionaries(st.sampled_from(["date", "month", "group", "format", "station", "since", "x"]),
                        st.text(max_size=12), max_size=4)


@FUZZ
@given(path=api_paths, params=query)
def test_random_query_strings_get_answers_or_documented_errors(hub_process: FuzzedHub, path: str,
                                                               params: dict[str, str]) -> None:
    response = httpx.get(f"{hub_process.http}{path}", params=params, timeout=timeout(10))
    assert response.status_code in {200, 400, 404}, (response.status_code, response.text)
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"]


def test_other_sessions_were_unaffected(hub_process: FuzzedHub) -> None:
    with hub_process.connect("/ws/station") as connection:
        assert hello(connection, hub_process, "35.09.02")["t"] == "welcome"
        connection.send(msgpack.packb({"t": "ping"}))
        assert msgpack.unpackb(connection.recv(timeout=timeout(5)))["t"] == "pong"


def valid_offer() -> str:
    """A real publisher offer from aiortc (video + audio), made once."""
    import asyncio

    from hub.media.seams_peers import close_peer_connection, new_peer_connection
    from tests.media.peers import PatternTrack, ToneTrack, make_offer

    async def make() -> str:
        pc = new_peer_connection(())
        pc.addTransceiver(PatternTrack(), direction="sendonly")
        pc.addTransceiver(ToneTrack(), direction="sendonly")
        try:
            return await make_offer(pc)
        finally:
            await close_peer_connection(pc)

    return asyncio.run(make())


OFFER = valid_offer()
OFFER_LINES = OFFER.splitlines()


@st.composite
def mutated_offers(draw: st.DrawFn) -> str:
    lines = list(OFFER_LINES)
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.integers(0, len(lines) - 1))
        action = draw(st.sampled_from(["drop", "duplicate", "garble", "insert", "truncate"]))
        if action == "drop":
            del lines[where]
        elif action == "duplicate":
            lines.insert(where, lines[where])
        elif action == "garble":
            line = lines[where]
            cut = draw(st.integers(0, len(line)))
            lines[where] = line[:cut] + draw(st.text(max_size=12)) + line[cut:]
        elif action == "insert":
            lines.insert(where, draw(st.sampled_from(["m=video 9 UDP/TLS/RTP/SAVPF 96", "a=rtpmap:96 VP8/0",
                                                       "a=fingerprint:sha-256 ZZ", "a=ice-ufrag:", "c=IN IP4 x",
                                                       "a=ssrc:-1 cname:x", "m=application 9 DTLS/SCTP 5000"])))
        else:
            lines = lines[:where]
        if not lines:
            lines = ["v=0"]
    return "\r\n".join(lines) + "\r\n"


@FUZZ
@given(offer=mutated_offers())
def test_mutated_sdp_at_whip_and_whep_gets_documented_answers(hub_process: FuzzedHub, offer: str) -> None:
    token = hub_process.tokens["35.09.01"]
    with httpx.Client(base_url=hub_process.http, timeout=timeout(15)) as http:
        published = http.post("/whip/35.09.01", content=offer,
                              headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
        assert published.status_code in {201, 400, 413}, (published.status_code, published.text)
        if published.status_code == 201:
            assert http.delete(published.headers["location"],
                               headers={"Authorization": f"Bearer {token}"}).status_code == 200
        else:
            assert published.json()["error"]["code"]
        viewed = http.post("/whep/35.09.01", content=offer, headers={"Content-Type": "application/sdp"})
        assert viewed.status_code in {400, 404, 413}, (viewed.status_code, viewed.text)
        assert viewed.json()["error"]["code"]
