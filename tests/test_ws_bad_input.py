"""Every bad input named in DESIGN §4 gets its documented error or close code, and the hub
keeps serving the other stations."""

from __future__ import annotations

import json
from typing import Any

import msgpack
import pytest
from websockets.exceptions import ConnectionClosed

from tests.kit import RunningHub
from tests.wsclient import JSON, MSGPACK, Client, station


async def hello(client: Client, station_id: str, token: str) -> None:
    await client.send({"t": "hello", "station": station_id, "token": token, "agent": "test", "version": "0"})


async def test_wrong_token_closes_4401_and_leaves_existing_session_alone(hub: RunningHub) -> None:
    token = await hub.token("35.09.01")
    good, _ = await station(hub.ws, "35.09.01", token)
    intruder = await Client.open(f"{hub.ws}/ws/station")
    await hello(intruder, "35.09.01", "not-the-token")
    error = await intruder.recv()
    assert (error["t"], error["code"]) == ("error", "not_authenticated")
    assert await intruder.closed_with() == 4401
    await good.send({"t": "ping"})
    assert (await good.recv())["t"] == "pong"
    assert hub.hub.stations.table.get("35.09.01").state == "online"


async def test_unknown_station_closes_4401(hub: RunningHub) -> None:
    client = await Client.open(f"{hub.ws}/ws/station")
    await hello(client, "35.09.99", "whatever")
    assert await client.closed_with() == 4401


@pytest.mark.parametrize("first", [
    {"t": "hb"},
    {"t": "activity.start", "title": "x"},
    {"t": "hello", "station": "35.09.01"},  # no token
    {"no_type": True},
])
async def test_anything_but_a_valid_hello_first_closes_4400(hub: RunningHub, first: dict[str, Any]) -> None:
    client = await Client.open(f"{hub.ws}/ws/station")
    await client.send(first)
    assert await client.closed_with() == 4400


async def test_no_hello_in_time_closes_4400(hub: RunningHub) -> None:
    client = await Client.open(f"{hub.ws}/ws/station")
    assert await client.closed_with(wait=5) == 4400


async def test_garbage_before_hello_closes_4400(hub: RunningHub) -> None:
    client = await Client.open(f"{hub.ws}/ws/station")
    await client.send_raw(b"\xc1\xff\x00garbage")
    assert await client.closed_with() == 4400


async def test_unsupported_subprotocol_closes_4400(hub: RunningHub) -> None:
    client = await Client.open(f"{hub.ws}/ws/station", subprotocol="jaga.v9.xml")
    assert await client.closed_with() == 4400


@pytest.mark.parametrize("subprotocol", [MSGPACK, JSON])
async def test_bad_messages_after_hello_get_errors_and_keep_the_connection(hub: RunningHub, subprotocol: str) -> None:
    client, _ = await station(hub.ws, "35.09.02", await hub.token("35.09.02"), subprotocol)
    malformed = b"\xc1" if subprotocol == MSGPACK else "{not json"
    cases = [
        (malformed, "malformed"),
        ({"t": "launch.missiles"}, "unknown_type"),
        ({"t": "activity.start"}, "missing_field"),
        ({"t": "activity.start", "title": 42}, "bad_field"),
        ({"t": "thumb", "jpeg": b"not a jpeg" if subprotocol == MSGPACK else "bm90IGEganBlZw=="}, "bad_field"),
        ({"t": "hello", "station": "35.09.02", "token": "x"}, "unexpected"),
        (["a", "list"], "malformed"),
    ]
    for payload, code in cases:
        if isinstance(payload, (bytes, str)):
            await client.send_raw(payload)
        elif subprotocol == MSGPACK:
            await client.send_raw(msgpack.packb(payload, use_bin_type=True))
        else:
            await client.send_raw(json.dumps(payload))
        error = await client.recv()
        assert (error["t"], error["code"]) == ("error", code), payload
    await client.send({"t": "ping"})
    assert (await client.recv())["t"] == "pong"


async def test_oversize_frame_closes_1009(hub: RunningHub) -> None:
    client, _ = await station(hub.ws, "35.09.01.2001", await hub.token("35.09.01.2001"))
    await client.send({"t": "activity.start", "title": "x", "padding": "y" * (70 * 1024)})
    assert await client.closed_with() == 1009


async def test_frame_beyond_thumbnail_limit_closes_1009(hub: RunningHub) -> None:
    client, _ = await station(hub.ws, "35.09.01.2001", await hub.token("35.09.01.2001"))
    await client.send({"t": "thumb", "jpeg": b"\xff\xd8" + b"\0" * (300 * 1024)})
    assert await client.closed_with() == 1009


async def test_large_thumbnail_within_its_limit_is_accepted(hub: RunningHub) -> None:
    from tests.web.helpers import make_jpeg

    client, _ = await station(hub.ws, "35.09.01.2001", await hub.token("35.09.01.2001"))
    jpeg = make_jpeg(640, 480, seed=1, detail=3.0)  # a noisy picture: over the 64 KiB of other frames
    assert len(jpeg) > 64 * 1024
    await client.send({"t": "thumb", "jpeg": jpeg})
    await client.send({"t": "ping"})
    assert (await client.recv())["t"] == "pong"
    stored = hub.hub.stations.thumbnails["35.09.01.2001"][0]
    assert stored.startswith(b"\xff\xd8")  # taken, and stored as the hub's own encoding of it


async def test_message_flood_closes_4429_and_others_keep_working(hub: RunningHub) -> None:
    calm, _ = await station(hub.ws, "35.09.01", await hub.token("35.09.01"))
    flood, _ = await station(hub.ws, "35.09.02", await hub.token("35.09.02"))
    burst = hub.hub.settings.presence.burst
    for _ in range(burst * 3):
        try:
            await flood.send({"t": "hb"})
        except ConnectionClosed:  # the hub closed it mid-flood: what this test wants
            break
    assert await flood.closed_with() == 4429
    await calm.send({"t": "ping"})
    assert (await calm.recv())["t"] == "pong"


async def test_watch_socket_answers_bad_frames_with_errors(hub: RunningHub) -> None:
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    assert (await watcher.recv())["t"] == "snapshot"
    await watcher.send_raw("nonsense")
    assert (await watcher.recv())["code"] == "malformed"
    await watcher.send({"t": "subscribe.everything"})
    assert (await watcher.recv())["code"] == "unknown_type"
    await watcher.send({"t": "ping"})
    assert (await watcher.recv())["t"] == "pong"


async def test_rotating_a_token_disconnects_its_session_with_4401(hub: RunningHub) -> None:
    old = await hub.token("35.09.02.1001")
    client, _ = await station(hub.ws, "35.09.02.1001", old)
    await hub.token("35.09.02.1001")  # what `jaga-hub stations token` does, from any process
    assert await client.closed_with() == 4401
    retry = await Client.open(f"{hub.ws}/ws/station")
    await hello(retry, "35.09.02.1001", old)
    assert await retry.closed_with() == 4401
