"""The watcher fan-out policy: ordered frames, bounded backlog, resync for the slow."""

from __future__ import annotations

import asyncio
from typing import Any

from hub.backends.memory import MemoryBus, MemoryPresenceStore
from hub.core.registry import parse_registry
from hub.core.schedule import Schedule
from hub.services.metrics import Metrics
from hub.services.watchers import Watcher, WatchService
from hub.settings import ScheduleSettings
from jaga import wire
from tests.kit import TEST_REGISTRY, timeout


def service(history: int = 16, thumbnail_batch_s: float = 1.0) -> WatchService:
    return WatchService(parse_registry(TEST_REGISTRY), Schedule(ScheduleSettings()), MemoryPresenceStore(),
                        MemoryBus(), Metrics(), history=history, backlog=4,
                        viewers=lambda _: 0, thumb_at=lambda _: None, clock=lambda: 1_787_000_000.0,
                        thumbnail_batch_s=thumbnail_batch_s)


def thumb(seq: int, station: str, at: float) -> bytes:
    return wire.encode_msgpack({"t": "thumb", "seq": seq, "id": station, "at": at})


def event(seq: int, station: str = "35.09.01", state: str = "online") -> bytes:
    return wire.encode_msgpack({"t": "presence", "seq": seq, "id": station, "state": state, "status": state,
                                "since": 1.0, "reason": "hello"})


async def test_slow_watcher_is_resynced_and_fast_one_gets_every_frame_inline() -> None:
    watch = service()
    released = asyncio.Event()
    fast_frames: list[bytes | str] = []
    slow_frames: list[bytes | str] = []

    async def fast_send(message: dict[str, Any]) -> None:
        fast_frames.append(message["bytes"])

    async def slow_send(message: dict[str, Any]) -> None:
        await released.wait()  # a phone on a bad link: its writes block
        slow_frames.append(message["bytes"])

    codec = wire.CODECS[wire.MSGPACK]
    fast, slow = Watcher(fast_send, codec, False, 4), Watcher(slow_send, codec, False, 4)
    watch.attach(fast, None)
    watch.attach(slow, None)
    for seq in range(1, 11):
        watch.apply(event(seq))
    # No task switch happened, yet the fast watcher has every frame, in order.
    assert [wire.decode_msgpack(f)["seq"] for f in fast_frames[1:]] == list(range(1, 11))
    assert fast.draining is None
    assert slow.resync and not slow.queue  # backlog dropped, not grown
    released.set()
    assert slow.draining is not None
    await asyncio.wait_for(slow.draining, timeout(5))
    first, last = (wire.decode_msgpack(f) for f in (slow_frames[0], slow_frames[-1]))
    assert first["t"] == "snapshot" and first["seq"] == 0  # the blocked initial snapshot
    assert last["t"] == "snapshot" and last["seq"] == 10  # then a fresh one, not ten stale frames
    assert len(slow_frames) == 2


async def test_direct_writes_never_overtake_a_backlog() -> None:
    # The direct writer declines (socket over its limit), the ASGI send blocks: from then on
    # every frame queues behind it, even if the socket would take a direct write, until the
    # drain has sent the backlog; then frames go direct again.
    watch = service()
    wire_log: list[tuple[str, int]] = []
    accept_direct = [True]
    released = asyncio.Event()

    def direct(frame: bytes) -> bool:
        if accept_direct[0]:
            wire_log.append(("direct", _seq_of_frame(frame)))
        return accept_direct[0]

    async def send(message: dict[str, Any]) -> None:
        await released.wait()
        wire_log.append(("asgi", wire.decode_msgpack(message["bytes"])["seq"]))

    watcher = Watcher(send, wire.CODECS[wire.MSGPACK], False, 100, direct=direct)
    watch.attach(watcher, None)  # the snapshot (seq 0) goes direct
    watch.apply(event(1))
    accept_direct[0] = False
    watch.apply(event(2))  # declined → the ASGI send, which blocks
    accept_direct[0] = True
    watch.apply(event(3))  # the socket would take it, but seq 2 is still pending
    watch.apply(event(4))
    assert watcher.draining is not None and watch.frames_asgi == 3 and watch.frames_direct == 1
    released.set()
    await asyncio.wait_for(watcher.draining, timeout(5))
    watch.apply(event(5))
    assert wire_log == [("direct", 0), ("direct", 1), ("asgi", 2), ("asgi", 3), ("asgi", 4), ("direct", 5)]
    assert watch.frames_direct == 2


def _seq_of_frame(frame: bytes) -> int:
    """The seq in a pre-framed binary message (a header of 2 or 4 bytes here)."""
    header = 4 if frame[1] == 126 else 2
    return int(wire.decode_msgpack(frame[header:])["seq"])


async def test_a_closing_connection_gets_nothing_more() -> None:
    # The direct writer answers None once the transport is closing: no fallback to the ASGI
    # send (which would still write to the dead transport until uvicorn hears of it).
    watch = service()
    written: list[bytes] = []
    closing = [False]

    def direct(frame: bytes) -> bool | None:
        if closing[0]:
            return None
        written.append(frame)
        return True

    async def send(message: dict[str, Any]) -> None:
        raise AssertionError("nothing goes to the ASGI send")

    watcher = Watcher(send, wire.CODECS[wire.MSGPACK], False, 100, direct=direct)
    watch.attach(watcher, None)
    watch.apply(event(1))
    closing[0] = True
    for seq in range(2, 12):
        watch.apply(event(seq))
    assert watcher.closed and len(written) == 2  # the snapshot and event 1
    assert watch.frames_direct == 1 and watch.frames_asgi == 0  # the fan-out counts events, not the snapshot


async def test_a_failed_write_closes_the_watcher() -> None:
    watch = service()

    async def broken(message: dict[str, Any]) -> None:
        raise ConnectionResetError

    watcher = Watcher(broken, wire.CODECS[wire.MSGPACK], False, 4)
    watch.attach(watcher, None)
    assert watcher.closed
    watch.apply(event(1))  # ignored, no error


async def test_since_within_history_replays_only_later_frames_and_hides_private() -> None:
    watch = service(history=4)
    for seq in range(1, 7):
        watch.apply(event(seq, station="opd.bakesbangpol" if seq == 5 else "35.09.01"))
    received: list[bytes | str] = []

    async def record(message: dict[str, Any]) -> None:
        received.append(message.get("bytes") or message["text"])

    watch.attach(Watcher(record, wire.CODECS[wire.JSON], False, 100), since=3)
    assert [wire.decode_json(f)["seq"] for f in received] == [4, 6]
    received.clear()
    watch.attach(Watcher(record, wire.CODECS[wire.JSON], False, 100), since=1)  # 2 is gone: a snapshot
    assert [wire.decode_json(f)["t"] for f in received] == ["snapshot"]


async def test_duplicate_or_old_frames_are_ignored() -> None:
    watch = service()
    watch.apply(event(2))
    watch.apply(event(1, state="offline"))
    watch.apply(event(2, state="offline"))
    assert watch.view["35.09.01"]["state"] == "online"


async def test_snapshot_is_encoded_once_until_something_changes() -> None:
    now = [1_787_000_000.0]
    watch = service()
    watch.clock = lambda: now[0]
    codec = wire.CODECS[wire.MSGPACK]
    first = watch.encoded_snapshot(False, codec)
    assert watch.encoded_snapshot(False, codec) is first  # the same bytes, not rebuilt
    assert watch.encoded_snapshot(True, codec) is not first  # operators see more
    watch.apply(event(1))
    second = watch.encoded_snapshot(False, codec)
    assert second is not first and wire.decode_msgpack(second)["seq"] == 1
    now[0] += 1.5  # viewer counts and thumbnail times may have moved: rebuilt
    assert watch.encoded_snapshot(False, codec) is not second


async def test_thumbnails_are_announced_together_per_audience_not_one_event_each() -> None:
    watch = service(thumbnail_batch_s=0.05)
    frames: dict[str, list[Any]] = {"public": [], "operator": []}
    announced = asyncio.Event()

    def recorder(audience: str) -> Any:
        async def send(message: dict[str, Any]) -> None:
            frames[audience].append(wire.decode_json(message["text"]))
            if audience == "operator" and frames[audience][-1]["t"] == "thumbs":
                announced.set()
        return send

    watch.attach(Watcher(recorder("public"), wire.CODECS[wire.JSON], False, 100), None)
    watch.attach(Watcher(recorder("operator"), wire.CODECS[wire.JSON], True, 100), None)
    for seq, station in enumerate(("35.09.01", "35.09.02", "opd.bakesbangpol", "35.09.01"), start=1):
        watch.apply(thumb(seq, station, 100.0 + seq))
    watch.apply(event(5, station="35.09.02"))  # presence goes out at once, thumbnails wait
    assert [m["t"] for m in frames["public"]] == ["snapshot", "presence"]

    await asyncio.wait_for(announced.wait(), timeout(5))
    assert frames["public"][-1] == {"t": "thumbs", "at": {"35.09.01": 104.0, "35.09.02": 102.0}}  # no private
    assert frames["operator"][-1] == {"t": "thumbs", "at": {"35.09.01": 104.0, "35.09.02": 102.0,
                                                            "opd.bakesbangpol": 103.0}}
    assert "seq" not in frames["public"][-1]


async def test_a_resume_gets_the_missed_thumbnails_as_one_message_after_the_other_events() -> None:
    watch = service()
    watch.apply(event(1))
    watch.apply(thumb(2, "35.09.01", 10.0))
    watch.apply(thumb(3, "opd.bakesbangpol", 11.0))
    watch.apply(event(4, station="35.09.02"))
    watch.apply(thumb(5, "35.09.01", 12.0))
    received: list[Any] = []

    async def record(message: dict[str, Any]) -> None:
        received.append(wire.decode_json(message["text"]))

    watch.attach(Watcher(record, wire.CODECS[wire.JSON], False, 100), since=1)
    assert [m["t"] for m in received] == ["presence", "thumbs"]
    assert received[-1]["at"] == {"35.09.01": 12.0}  # the latest; the private one not at all
