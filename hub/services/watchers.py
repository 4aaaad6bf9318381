"""Watchers: the wall and public pages following every station's presence.

Theory of operation
-------------------
Every node subscribes once to the bus's ``events`` channel. Each frame (msgpack, carrying a
``seq`` assigned by the presence store) updates this node's *view* of all stations and a
ring of recent frames, then is fanned out: the same bytes to every msgpack watcher, and one
JSON text, encoded once per event, to every JSON watcher. Public watchers skip frames about
non-public stations.

Per event and codec the fan-out also encodes the complete WebSocket frame once
(:mod:`hub.core.wsframe`). A watcher whose socket offers a direct writer (uvicorn's
``websockets-sansio`` without compression, see :mod:`hub.routes.uvicorn_seams`) gets those
bytes written straight to its transport; it falls back to the ASGI ``send`` while it has a
backlog, while its socket buffer is over the writer's limit, or while the socket is closing.
The frames a watcher receives, and their order, are the same either way.

New thumbnails are not fanned out one by one: ~300 stations renew theirs every 10 s, ~30 a
second, and sent to every watcher as they came they were most of a loaded hub's work (the
Jember-day benchmark: half the event loop at 2,000 watchers). They are gathered for
``thumbnail_batch_s`` and go out as one ``thumbs {at: {station: time}}`` per audience (public
watchers: public stations only), without a ``seq`` (the ring keeps each ``thumb`` event for
resuming; a resume sends the ones it holds as one ``thumbs`` too).

A watcher starts with ``snapshot {seq, stations}``, or with the frames after ``since`` when
the ring still holds them. Each watcher has a bounded backlog; one that falls more than
``watcher_backlog`` frames behind loses its backlog and gets a fresh snapshot when it can
take it, so a slow phone never holds up the wall or grows the hub's memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from hub.backends.base import Bus, PresenceStore
from hub.core import wsframe
from hub.core.registry import Registry, Station
from hub.core.schedule import Schedule, wall_status
from hub.core.watch_admission import WatchAdmission
from hub.services import eager
from hub.services.metrics import Metrics
from hub.services.stations import EVENTS_CHANNEL
from hub.settings import PresenceSettings
from jaga import wire

log = logging.getLogger("jaga.watchers")

OPERATOR_FIELDS = ("node",)
SNAPSHOT_MAX_AGE_S = 1.0  # station-object fields only operators see


class Outgoing:
    """One frame for watchers of one codec, built once per event and shared by all of them:
    the ASGI ``websocket.send`` message, and the same message as complete WebSocket frame bytes."""

    __slots__ = ("message", "wire")

    def __init__(self, frame: bytes | str) -> None:
        if isinstance(frame, bytes):
            self.message: dict[str, Any] = {"type": "websocket.send", "bytes": frame}
            self.wire = wsframe.binary_frame(frame)
        else:
            self.message = {"type": "websocket.send", "text": frame}
            self.wire = wsframe.text_frame(frame)


class Watcher:
    """One watch socket's outbox.

    While the socket keeps up, each frame is written inline: pre-framed through ``direct``
    when the socket offers it, else through the ASGI ``send`` (see :mod:`hub.services.eager`);
    no queue, no task. When a write blocks, one drain task finishes it and then writes what
    queued meanwhile (all through ``send``, and nothing goes direct until it is done, so no
    frame overtakes another); past ``backlog_limit`` queued frames the backlog is dropped and
    the drain sends a fresh snapshot instead.

    Thousands of these sit idle for hours, so one holds no more than it needs: slots, and the
    backlog's deque (760 bytes empty) only while a drain is under way.
    """

    __slots__ = ("send", "direct", "codec", "operator", "backlog_limit", "queue", "resync", "closed", "draining",
                 "snapshot")

    def __init__(self, send: Callable[[dict[str, Any]], Coroutine[Any, Any, None]], codec: wire.Codec,
                 operator: bool, backlog_limit: int, direct: Callable[[bytes], bool | None] | None = None) -> None:
        self.send = send  # an ``async def``: eager.start() steps its coroutine by hand
        # Writes a complete frame now (True), or returns False: then ``send`` must take it;
        # None: the connection is closing, nothing more goes out.
        self.direct = direct
        self.codec = codec
        self.operator = operator
        self.backlog_limit = backlog_limit
        self.queue: deque[Outgoing] | None = None  # the backlog, while draining
        self.resync = False
        self.closed = False  # no more writes: the socket failed or is being closed
        self.draining: asyncio.Task[None] | None = None
        # The encoded snapshot for this watcher; set by WatchService.attach.
        self.snapshot: Callable[[Watcher], bytes | str] = _no_snapshot

    def push(self, frame: bytes | str | Outgoing) -> bool:
        """Send ``frame``: bytes, text, or an :class:`Outgoing` built once per event.

        True when it was written pre-framed (the fan-out counts them), False when it went
        to ``send``, was queued, or dropped.
        """
        if self.closed:
            return False
        out = frame if isinstance(frame, Outgoing) else Outgoing(frame)
        if self.draining is not None:
            queue = self.queue
            if queue is None:
                queue = self.queue = deque()
            if len(queue) >= self.backlog_limit:
                queue.clear()
                self.resync = True
            elif not self.resync:
                queue.append(out)
            return False
        direct = self.direct
        if direct is not None:
            written = direct(out.wire)
            if written:
                return True
            if written is None:  # closing: the reader sees the disconnect and detaches
                self.closed = True
                return False
        try:
            blocked = eager.start(self.send(out.message))
        except Exception:
            self.closed = True
            return False
        if blocked is not None:
            self.draining = asyncio.ensure_future(self._drain(blocked))
        return False

    def request_resync(self) -> None:
        self.queue = None
        if self.draining is None:
            self.push(self.snapshot(self))
        else:
            self.resync = True

    async def _drain(self, blocked: Awaitable[None]) -> None:
        try:
            await blocked
            while self.queue or self.resync:
                if self.resync:
                    self.resync = False
                    self.queue = None
                    message = _message(self.snapshot(self))
                else:
                    assert self.queue is not None  # not empty, by the loop's condition
                    message = self.queue.popleft().message
                await self.send(message)
        except Exception:
            self.closed = True  # the socket is gone; the reader side cleans up
        finally:
            self.draining = None
            self.queue = None  # drained (or dead): an idle watcher keeps no deque

    def close(self) -> None:
        self.closed = True
        if self.draining is not None:
            self.draining.cancel()


def _no_snapshot(_watcher: Watcher) -> bytes:
    return b""


def _thumbs_frame(at: dict[str, float]) -> bytes:
    return wire.encode_msgpack({"t": "thumbs", "at": at})


def _as_json(frame: bytes) -> str:
    """A bus frame (msgpack) as the JSON subprotocol's text frame."""
    return wire.encode_json(wire.decode_msgpack(frame))


def _message(frame: bytes | str) -> dict[str, Any]:
    return {"type": "websocket.send", "bytes": frame} if isinstance(frame, bytes) else \
        {"type": "websocket.send", "text": frame}


class WatchService:
    def __init__(self, registry: Registry, schedule: Schedule, store: PresenceStore, bus: Bus,
                 metrics: Metrics, history: int, backlog: int,
                 viewers: Callable[[str], int], thumb_at: Callable[[str], float | None],
                 clock: Callable[[], float] = time.time, admission: WatchAdmission | None = None,
                 thumbnail_batch_s: float = 1.0) -> None:
        self.registry = registry
        self.schedule = schedule
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.backlog = backlog
        self.viewers = viewers
        self.thumb_at = thumb_at
        self.clock = clock
        self.view: dict[str, dict[str, Any]] = {}
        self.last_seq = 0
        # (seq, station, frame, thumbnail time or None): thumb events are replayed batched
        self.history: deque[tuple[int, str, bytes, float | None]] = deque(maxlen=history)
        self.watchers: set[Watcher] = set()
        # Sockets per client address and on the node; the WebSocket edge admits and releases.
        defaults = PresenceSettings()
        self.admission = admission or WatchAdmission(defaults.max_watchers, defaults.watchers_per_address)
        # Event frames given to watchers: written pre-framed vs handed to the ASGI send (or
        # queued/dropped for a slow watcher). Exported as jaga_watch_frames{path}.
        self.frames_direct = 0
        self.frames_asgi = 0
        self._snapshots: dict[tuple[bool, str], tuple[int, float, bytes | str]] = {}
        self.thumbnail_batch_s = thumbnail_batch_s
        self._thumbs: dict[str, float] = {}  # new thumbnails not yet announced: station → time
        self._thumbs_timer: asyncio.TimerHandle | None = None
        self.ready = asyncio.Event()

    # The bus side

    async def run(self) -> None:
        subscription = self.bus.subscribe(EVENTS_CHANNEL)
        try:
            self.view.update(await self.store.load_all())
            self.ready.set()
            async for frame in subscription:
                if subscription.overflowed:
                    subscription.overflowed = False
                    await self._resync_all()
                self.apply(frame)
        finally:
            self.bus.unsubscribe(subscription)

    def apply(self, frame: bytes) -> None:
        event = wire.decode_msgpack(frame)
        seq, station_id = event["seq"], event["id"]
        record = self.view.setdefault(station_id, {})
        kind = event["t"]
        # A station's record carries the seq that wrote it (its version). With several nodes,
        # two INCR-then-publish may cross, so frames are ordered per station, not globally:
        # a frame older than the record it would change was already applied (or a resync
        # loaded something newer) and is dropped.
        if kind in ("presence", "activity"):
            if seq <= record.get("seq", 0):
                return
            record["seq"] = seq
        elif seq <= self.last_seq:
            return
        self.last_seq = max(self.last_seq, seq)
        if kind == "presence":
            record.update(state=event["state"], status=event["status"], since=event["since"],
                          reason=event.get("reason"), media=event.get("media", ""))
        elif kind == "activity":
            record["activity"] = {"title": event["title"], "since": event["since"]} if event["title"] else None
        self.history.append((seq, station_id, frame, event["at"] if kind == "thumb" else None))
        if kind == "thumb":
            self._gather_thumb(station_id, event["at"])
        else:
            self._fan_out(station_id, frame)

    def _gather_thumb(self, station_id: str, at: float) -> None:
        self._thumbs[station_id] = at
        if self._thumbs_timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # outside an event loop (unit tests): at once
                self._flush_thumbs()
                return
            self._thumbs_timer = loop.call_later(self.thumbnail_batch_s, self._flush_thumbs)

    def _flush_thumbs(self) -> None:
        """The thumbnails gathered since the last flush, as one message per audience."""
        self._thumbs_timer = None
        gathered, self._thumbs = self._thumbs, {}
        everyone = {sid: at for sid, at in gathered.items() if self._visible(sid, operator=True)}
        public = {sid: at for sid, at in everyone.items() if self._visible(sid, operator=False)}
        self._send_all(_thumbs_frame(public) if public else None, _thumbs_frame(everyone) if everyone else None)

    async def resync(self) -> None:
        """Reload the view from the presence store; every watcher gets a fresh snapshot
        (after the bus lost messages, e.g. across a Redis outage)."""
        await self._resync_all()

    async def _resync_all(self) -> None:
        self.view = await self.store.load_all()
        for watcher in list(self.watchers):
            watcher.request_resync()

    def _fan_out(self, station_id: str, frame: bytes) -> None:
        self._send_all(frame if self._visible(station_id, operator=False) else None, frame)

    def _send_all(self, public_frame: bytes | None, operator_frame: bytes | None) -> None:
        """One bus frame (msgpack) to every watcher of its audience, each codec's message and
        wire frame built once and shared by all of them."""
        same = public_frame is operator_frame  # a public station's event: one message for all
        frames = (public_frame, operator_frame)
        built: list[Outgoing | None] = [None, None, None, None]  # by audience and codec, built once
        sent = framed = 0
        for watcher in list(self.watchers):  # a failed write may detach a watcher meanwhile
            binary = watcher.codec.binary
            operator = watcher.operator and not same
            slot = 2 * operator + binary
            out = built[slot]
            if out is None:
                frame = frames[watcher.operator]
                if frame is None:
                    continue
                out = built[slot] = Outgoing(frame if binary else _as_json(frame))
            if watcher.push(out):
                framed += 1
            elif watcher.closed:
                continue  # its connection is gone: nothing went out
            sent += 1
        # Counted once per event: a Prometheus increment per message would cost more than the write.
        self.metrics.messages_out.inc(sent)
        self.frames_direct += framed
        self.frames_asgi += sent - framed

    # The watcher side

    def attach(self, watcher: Watcher, since: int | None) -> None:
        """Start a watcher with the events after ``since`` if still held, else a snapshot."""
        watcher.snapshot = self._resync_snapshot
        self.watchers.add(watcher)
        oldest = self.history[0][0] if self.history else self.last_seq + 1
        if since is not None and oldest - 1 <= since <= self.last_seq:
            thumbs: dict[str, float] = {}
            for seq, station_id, frame, thumb_at in self.history:
                if seq > since and self._visible(station_id, watcher.operator):
                    if thumb_at is not None:
                        thumbs[station_id] = thumb_at
                    else:
                        watcher.push(frame if watcher.codec.binary else _as_json(frame))
            if thumbs:
                frame = _thumbs_frame(thumbs)
                watcher.push(frame if watcher.codec.binary else _as_json(frame))
        else:
            watcher.push(self.encoded_snapshot(watcher.operator, watcher.codec))

    def _resync_snapshot(self, watcher: Watcher) -> bytes | str:
        self.metrics.watcher_resyncs.inc()
        return self.encoded_snapshot(watcher.operator, watcher.codec)

    def detach(self, watcher: Watcher) -> None:
        watcher.close()
        self.watchers.discard(watcher)

    def _visible(self, station_id: str, operator: bool) -> bool:
        station = self.registry.get(station_id)
        return station is not None and (operator or station.public)

    # Views shared with the HTTP API

    def encoded_snapshot(self, operator: bool, codec: wire.Codec) -> bytes | str:
        """The snapshot, built and encoded once per audience and codec while nothing changes.

        A wall of 5,000 screens reconnecting after a restart would otherwise build and encode
        the whole registry 5,000 times. Kept at most ``SNAPSHOT_MAX_AGE_S``, so the viewer
        counts and thumbnail times in it are never older than that.
        """
        key = (operator, codec.name)
        now = self.clock()
        cached = self._snapshots.get(key)
        if cached is not None and cached[0] == self.last_seq and now - cached[1] < SNAPSHOT_MAX_AGE_S:
            return cached[2]
        frame = codec.encode(self.snapshot(operator))
        self._snapshots[key] = (self.last_seq, now, frame)
        return frame

    def snapshot(self, operator: bool) -> dict[str, Any]:
        now = self.clock()
        return {"t": "snapshot", "seq": self.last_seq,
                "stations": [self.station_object(s, operator, now) for s in self.registry.visible(operator)]}

    def station_object(self, station: Station, operator: bool, now: float) -> dict[str, Any]:
        record = self.view.get(station.id, {})
        state = record.get("state", "offline")
        item: dict[str, Any] = {
            "id": station.id, "name": station.name, "kind": station.kind, "kecamatan": station.kecamatan,
            "public": station.public, "state": state,
            "status": wall_status(state, self.schedule.expected_on(station, now)),
            "since": record.get("since"), "reason": record.get("reason"), "media": record.get("media") or "",
            "activity": record.get("activity"),
            "viewers": self.viewers(station.id), "thumb_at": self.thumb_at(station.id),
        }
        if operator:
            item.update({name: record.get(name) for name in OPERATOR_FIELDS})
        return item
