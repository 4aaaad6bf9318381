"""The watch fan-out's pre-framed fast path over real sockets (see hub/routes/uvicorn_seams.py).

Events are applied to the hub's watch service directly (as the bus would) when a test needs
many of them or big ones; real stations make the rest.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from websockets.client import ClientProtocol
from websockets.frames import Opcode
from websockets.http11 import Response
from websockets.protocol import Protocol
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from hub.routes import uvicorn_seams as seams
from hub.services.watchers import Watcher, WatchService
from jaga import wire
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout, wait_until
from tests.wsclient import JSON, MSGPACK, Client, presence_of, station

PUBLIC_STATION = "35.09.01"


def apply_activity(watch: WatchService, title: str, station_id: str = PUBLIC_STATION) -> int:
    """One activity event, as the bus delivers it; returns its seq."""
    seq = watch.last_seq + 1
    watch.apply(wire.encode_msgpack({"t": "activity", "seq": seq, "id": station_id, "title": title,
                                     "since": 1_787_000_000.5}))
    return seq


def newest_watcher(watch: WatchService, known: set[Watcher]) -> Watcher:
    (watcher,) = watch.watchers - known
    return watcher


def resyncs(hub: RunningHub) -> float:
    return hub.hub.metrics.registry.get_sample_value("jaga_watcher_resyncs_total") or 0.0


class StalledWatcher:
    """A watch socket whose reader can stop: a tiny receive buffer and no reads until asked.

    websockets' asyncio client keeps reading into its own queue; this one speaks the protocol
    through websockets' sans-I/O ``ClientProtocol`` over a plain stream, so the server's
    socket really fills up while the test does not read.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, protocol: ClientProtocol) -> None:
        self.reader, self.writer, self.protocol = reader, writer, protocol
        self.pending: list[Any] = []

    @classmethod
    async def open(cls, url: str, subprotocol: str) -> StalledWatcher:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: fixes the window
        sock.setblocking(False)
        uri = parse_uri(url)
        await asyncio.get_running_loop().sock_connect(sock, (uri.host, uri.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)  # buffers ~2 KiB, then pauses
        protocol = ClientProtocol(uri, subprotocols=[Subprotocol(subprotocol)])
        protocol.send_request(protocol.connect())
        self = cls(reader, writer, protocol)
        self._flush()
        return self

    def _flush(self) -> None:
        self.writer.write(b"".join(self.protocol.data_to_send()))  # pongs, if the server pings

    async def recv(self, wait: float = 5.0) -> dict[str, Any]:
        """The next data message (the handshake response is skipped)."""

        async def next_message() -> dict[str, Any]:
            while True:
                while self.pending:
                    event = self.pending.pop(0)
                    if isinstance(event, Response):
                        assert event.status_code == 101, event
                    elif event.opcode in (Opcode.BINARY, Opcode.TEXT):
                        binary = event.opcode == Opcode.BINARY
                        payload = bytes(event.data)
                        message: dict[str, Any] = msgpack.unpackb(payload, raw=False) if binary else json.loads(payload)
                        return message
                data = await self.reader.read(65_536)
                assert data, "server closed the watch socket"
                self.protocol.receive_data(data)
                self.pending += self.protocol.events_received()
                self._flush()

        return await asyncio.wait_for(next_message(), timeout(wait))

    def close(self) -> None:
        self.writer.close()


@pytest.fixture
async def small_backlog_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path, presence={"watcher_backlog": 8}))
    try:
        yield running
    finally:
        await stop_hub(running)


async def test_msgpack_and_json_watchers_get_the_same_events_pre_framed(hub: RunningHub) -> None:
    watch = hub.hub.watchers
    binary = await Client.open(f"{hub.ws}/ws/watch", MSGPACK)
    text = await Client.open(f"{hub.ws}/ws/watch", JSON)
    for client in (binary, text):
        assert (await client.recv())["t"] == "snapshot"
    assert len(watch.watchers) == 2 and all(w.direct is not None for w in watch.watchers)
    for watcher in watch.watchers:  # slimmed for an idle life (uvicorn_seams.slim), and still working below
        protocol = watcher.direct.__self__._protocol  # type: ignore[union-attr]
        assert isinstance(protocol.queue, seams.ReceiveQueue) and isinstance(protocol.writable, seams.WritableFlag)
        assert protocol.request is None and protocol.conn.parser.gi_code is Protocol.parse.__code__
    direct0, asgi0 = watch.frames_direct, watch.frames_asgi

    from_binary: list[dict[str, Any]] = []
    from_text: list[dict[str, Any]] = []
    agent, _ = await station(hub.ws, PUBLIC_STATION, await hub.token(PUBLIC_STATION))
    await agent.close()
    offline = presence_of(PUBLIC_STATION, "offline")
    await binary.recv_until(offline, into=from_binary)
    # Every header length form over the wire: 7-bit, 16-bit and 64-bit payload lengths.
    last = 0
    for size in (3, 200, 70_000):
        last = apply_activity(watch, "k" * size)
    await binary.recv_until(lambda m: m.get("seq") == last, into=from_binary)
    await text.recv_until(lambda m: m.get("seq") == last, into=from_text)
    assert from_binary == from_text  # the same events, decoded the same
    assert [m["t"] for m in from_binary][:2] == ["presence", "presence"]
    assert [m["t"] for m in from_binary][-3:] == ["activity"] * 3
    assert len(from_binary[-1]["title"]) == 70_000
    sent = 2 * len(from_binary)
    assert (watch.frames_direct - direct0, watch.frames_asgi - asgi0) == (sent, 0)
    metrics = hub.hub.metrics.render().decode()  # what /metrics serves (to operators and the scraper)
    assert f'jaga_watch_frames{{path="direct"}} {float(watch.frames_direct)}' in metrics


async def test_a_watcher_reset_mid_fan_out_gets_no_more_writes(hub: RunningHub,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    # A reset seen by asyncio closes the transport at once; uvicorn hears of it a loop turn
    # later. Events fanned out in between must not be written to it: asyncio logs a warning
    # per write to a lost connection from the fifth on (78,000 in a second when 5,000
    # watchers went at once, "A Jember day").
    watch = hub.hub.watchers
    known = set(watch.watchers)
    client = await Client.open(f"{hub.ws}/ws/watch", MSGPACK)
    assert (await client.recv())["t"] == "snapshot"
    watcher = newest_watcher(watch, known)
    assert watcher.direct is not None
    watcher.direct.__self__._transport.abort()  # type: ignore[attr-defined]  # as a reset would
    direct0, asgi0 = watch.frames_direct, watch.frames_asgi
    with caplog.at_level("WARNING", logger="asyncio"):
        for index in range(20):  # in one go, before uvicorn's connection_lost runs
            apply_activity(watch, f"rapat {index}")
    assert "socket.send() raised exception" not in caplog.text
    assert watcher.closed and (watch.frames_direct - direct0, watch.frames_asgi - asgi0) == (0, 0)
    await wait_until(lambda: watcher not in watch.watchers, message="the reader detaches it")
    await client.close()


async def test_slow_watcher_is_resynced_while_others_stay_on_the_fast_path_in_order(
        small_backlog_hub: RunningHub) -> None:
    hub = small_backlog_hub
    watch = hub.hub.watchers
    fast = await Client.open(f"{hub.ws}/ws/watch", MSGPACK)
    first = await fast.recv()
    fast_watcher = next(iter(watch.watchers))
    stalled = await StalledWatcher.open(f"{hub.ws}/ws/watch", JSON)
    slow_snapshot = await stalled.recv()
    slow = newest_watcher(watch, {fast_watcher})
    assert slow.direct is not None and fast_watcher.direct is not None
    resyncs0 = resyncs(hub)

    # Fast → slow: the stalled socket's buffers fill, its writes block (a drain task), its
    # backlog passes 8 frames and is dropped. The fast watcher gets every frame meanwhile,
    # in order, each written pre-framed.
    title = "x" * 8000  # kernel buffers on loopback autotune to megabytes: fill them in fewer events
    sent = 0
    while not slow.resync:
        assert sent < 20_000, "the stalled watcher never fell behind"
        direct0 = watch.frames_direct
        seq = apply_activity(watch, title)
        sent += 1
        assert watch.frames_direct - direct0 >= 1  # the fast watcher's frame went direct
        assert (await fast.recv())["seq"] == seq
    assert slow.draining is not None and not slow.queue  # backlog dropped, not grown
    for _ in range(3):
        seq = apply_activity(watch, title)
        assert (await fast.recv())["seq"] == seq
    last_before_resync = seq

    # Slow → fast: the watcher reads again; the drain sends what it held, then a snapshot.
    received = [slow_snapshot]
    while not (received[-1]["t"] == "snapshot" and received[-1]["seq"] >= last_before_resync):
        received.append(await stalled.recv())
    if slow.draining is not None:  # the snapshot is out; the drain task ends right after
        await asyncio.wait_for(asyncio.shield(slow.draining), timeout(5))
    assert resyncs(hub) == resyncs0 + 1

    direct0 = watch.frames_direct
    after = [apply_activity(watch, "back") for _ in range(3)]
    assert watch.frames_direct - direct0 == 2 * 3  # both watchers pre-framed again
    for seq in after:
        assert (await fast.recv())["seq"] == seq
        received.append(await stalled.recv())

    # The stalled watcher's view: snapshot, a run of consecutive events (direct, then from the
    # backlog), the resync snapshot, then consecutive events again: nothing overtook anything.
    kinds = [m["t"] for m in received]
    assert kinds[0] == "snapshot" and kinds.count("snapshot") == 2
    resync_at = kinds.index("snapshot", 1)
    before, after_resync = received[1:resync_at], received[resync_at + 1:]
    assert [m["seq"] for m in before] == list(range(first["seq"] + 1, first["seq"] + 1 + len(before)))
    resync_seq = received[resync_at]["seq"]
    assert [m["seq"] for m in after_resync] == list(range(resync_seq + 1, resync_seq + 1 + len(after_resync)))
    assert after_resync[-1]["seq"] == after[-1]
    stalled.close()
    await fast.close()


async def test_compressed_connections_fall_back_to_the_asgi_send(tmp_path: Path) -> None:
    hub = await start_hub(hub_settings(tmp_path), per_message_deflate=True)
    try:
        watch = hub.hub.watchers
        compressed = await Client.open(f"{hub.ws}/ws/watch", MSGPACK)  # offers permessage-deflate
        await compressed.recv()
        compressed_watcher = next(iter(watch.watchers))
        plain = await Client.open(f"{hub.ws}/ws/watch", JSON, compression=None)
        await plain.recv()
        plain_watcher = newest_watcher(watch, {compressed_watcher})
        assert compressed_watcher.direct is None  # frames would differ per connection
        assert plain_watcher.direct is not None  # decided per connection
        direct0, asgi0 = watch.frames_direct, watch.frames_asgi
        seq = apply_activity(watch, "Musyawarah Desa " * 20)
        for client in (compressed, plain):
            event = await client.recv()
            assert (event["seq"], event["title"]) == (seq, "Musyawarah Desa " * 20)
        assert (watch.frames_direct - direct0, watch.frames_asgi - asgi0) == (1, 1)
    finally:
        await stop_hub(hub)
