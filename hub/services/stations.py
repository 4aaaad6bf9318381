"""Station sessions: hello, heartbeats, activities, thumbnails, talk-back and announcements.

Every presence change goes the same way, in order, under one lock:
``PresenceTable`` transition → ledger write (durable, or held by the buffered ledger) →
shared record saved with a new sequence number → one msgpack frame published on the bus.
Watchers on every node receive that frame; nothing announces a change the ledger has not
been given first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from hub.backends.base import Bus, PresenceStore
from hub.core import turn
from hub.core.presence import OFFLINE, PresenceTable, Transition
from hub.core.registry import Registry, Station
from hub.core.schedule import Schedule, wall_status
from hub.core.talk import TalkTable
from hub.core.token_bucket import TokenBucket
from hub.errors import NotAuthenticated, ProtocolViolation, RateLimited
from hub.ledger.base import BufferedLedger, LedgerWrite
from hub.services.auth import AuthService, hash_token
from hub.services.metrics import Metrics
from hub.services.thumbnails import ThumbnailIntake
from hub.settings import Settings
from jaga import wire

log = logging.getLogger("jaga.stations")

EVENTS_CHANNEL = "events"
COMMANDS_CHANNEL = "commands"
CLOSE_TIMEOUT = 4408  # heartbeats stopped for longer than timeout_s


class Peer(Protocol):
    """What the WebSocket edge gives the service for one station socket."""

    async def send(self, message: dict[str, Any]) -> None: ...
    async def close(self, code: int, reason: str) -> None: ...


@dataclass
class StationSession:
    id: int
    station: Station
    peer: Peer
    bucket: TokenBucket
    token_hash: str
    agent: str = ""
    camera: str = ""
    opened: float = 0.0


class StationsService:
    def __init__(self, settings: Settings, registry: Registry, schedule: Schedule, auth: AuthService,
                 ledger: BufferedLedger, store: PresenceStore, bus: Bus, metrics: Metrics,
                 clock: Callable[[], float] = time.time, *, multi_node: bool) -> None:
        self.settings = settings
        self.registry = registry
        self.schedule = schedule
        self.auth = auth
        self.ledger = ledger
        self.store = store
        self.bus = bus
        self.metrics = metrics
        self.clock = clock
        self.node = settings.node_id
        self.multi_node = multi_node  # presence shared with other nodes: stations may move between them
        self.table = PresenceTable(settings.presence.heartbeat_s, settings.presence.timeout_s)
        self.sessions: dict[int, StationSession] = {}
        self.thumbnails: dict[str, tuple[bytes, float]] = {}
        self.thumbnail_intake = ThumbnailIntake(settings.media.thumbnail_s, clock)
        self.agent_thumbnail_at: dict[str, float] = {}
        self._next_id = 0
        self._lock = asyncio.Lock()
        self._statuses: dict[str, str] = {}  # the wall status last announced per station
        self._next_sweep = 0.0
        self.talks = TalkTable()  # who may listen to the Pendopo (see hub.core.talk)
        # Ends a station's sessions of the Pendopo's stream after talk.stop; the app wires it
        # to the media relay, which this service does not know.
        self.on_talk_stopped: Callable[[str], Awaitable[None]] = _nothing
        # Activities and publishing, told to the recordings service (which only queues them:
        # presence never waits on a disk). The app wires them; by default nobody listens.
        self.on_activity: Callable[[str, dict[str, Any] | None], None] = lambda station_id, activity: None
        self.on_publishing: Callable[[str, bool], None] = lambda station_id, active: None

    # Session lifecycle (called by the WebSocket edge)

    async def open_session(self, hello: dict[str, Any], peer: Peer) -> tuple[StationSession, dict[str, Any]]:
        station = self.registry.get(hello["station"])
        if station is None or not await self.auth.check_station_token(station.id, hello["token"]):
            raise NotAuthenticated("unknown station or wrong token")
        self._next_id += 1
        presence = self.settings.presence
        session = StationSession(self._next_id, station, peer,
                                 TokenBucket(presence.max_messages_per_s, presence.burst, presence.burst, self.clock()),
                                 hash_token(hello["token"]), agent=str(hello.get("agent") or "")[:80],
                                 opened=self.clock())
        self.sessions[session.id] = session
        async with self._lock:
            replaced, transitions = self.table.connected(station.id, session.id, self.clock())
            await self._commit(transitions)
        if replaced is not None and replaced in self.sessions:
            old = self.sessions.pop(replaced)
            await old.peer.close(4409, "replaced by a newer connection")
        if self.multi_node:  # an older connection on another node closes with 4409 too
            await self.bus.publish(COMMANDS_CHANNEL, wire.encode_msgpack(
                {"targets": [station.id], "replaced_by": self.node, "at": session.opened}))
        now = self.clock()
        ice_servers = turn.issue(station.id, now, self.settings.media.ice_servers, self.settings.turn)
        welcome = wire.welcome(station.id, now, presence.heartbeat_s, self.schedule.describe(station, now),
                               [turn.wire_entry(server) for server in ice_servers])
        return session, welcome

    async def handle(self, session: StationSession, message: dict[str, Any]) -> None:
        now = self.clock()
        if not session.bucket.take(now):
            raise RateLimited("too many messages")
        kind = message["t"]
        station_id = session.station.id
        if kind == "ping":
            await session.peer.send({"t": "pong", "server_time": now})
        elif kind == "thumb":  # never stored as sent: gated, then a fresh JPEG of its pixels
            await self.store_thumbnail(station_id, await self.thumbnail_intake.take(station_id, message["jpeg"]))
            self.agent_thumbnail_at[station_id] = now
        async with self._lock:
            await self._commit(self.table.seen(station_id, session.id, now))
            if kind == "hb":
                session.camera = str(message.get("camera") or "")
            elif kind == "activity.start":
                title = message["title"].strip()
                if not title:
                    raise ProtocolViolation("activity.start: title is empty", code="bad_field")
                await self._set_activity(station_id, title, now)
            elif kind == "activity.stop":
                await self._set_activity(station_id, None, now)

    async def close_session(self, session: StationSession, clean: bool) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        async with self._lock:
            await self._commit(self.table.disconnected(session.station.id, session.id, self.clock(), clean))

    # Media and thumbnails

    async def set_publishing(self, station_id: str, active: bool) -> None:
        async with self._lock:
            await self._commit(self.table.publishing(station_id, active, self.clock()))
            self.on_publishing(station_id, active)

    async def set_media(self, station_id: str, media: str) -> None:
        """The media watchdog saw ``media`` flowing: a stall ends `live` (and its ledger
        interval), a resumed stream starts it again; video ⇄ audio is announced as is."""
        async with self._lock:
            now = self.clock()
            changed, transitions = self.table.media_flow(station_id, media, now)
            await self._commit(transitions)
            if changed and not transitions:
                await self._publish_presence(station_id, now)

    async def store_thumbnail(self, station_id: str, jpeg: bytes) -> None:
        if not jpeg.startswith(b"\xff\xd8"):
            raise ProtocolViolation("thumb: jpeg is not a JPEG image", code="bad_field")
        now = self.clock()
        self.thumbnails[station_id] = (jpeg, now)
        async with self._lock:
            await self._publish({"t": "thumb", "id": station_id, "at": now})

    # Operator actions: delivered through the bus so every node reaches its own stations

    async def announce(self, targets: list[str], text: str, sender: str) -> None:
        await self.bus.publish(COMMANDS_CHANNEL, wire.encode_msgpack(
            {"targets": targets, "message": wire.announce(text, sender)}))

    async def talk(self, station_id: str, active: bool, sender: str) -> None:
        message = {"t": "talk.start" if active else "talk.stop", "from": sender}
        # Applied here before it goes on the bus: this node (usually the one the operator
        # talks through, and publishes on) lets the station listen before it is told to.
        await self._apply_talk([station_id], message)
        await self.bus.publish(COMMANDS_CHANNEL, wire.encode_msgpack({"targets": [station_id], "message": message}))

    async def _apply_talk(self, targets: list[str], message: dict[str, Any]) -> None:
        """Every node's talk table follows the talk commands (the bus echoes ours: idempotent)."""
        for station_id in targets:
            if message["t"] == "talk.start":
                self.talks.start(station_id, str(message.get("from") or ""), self.clock())
            else:
                self.talks.stop(station_id)
                await self.on_talk_stopped(station_id)  # also where the start was never seen

    async def deliver_commands(self) -> None:
        subscription = self.bus.subscribe(COMMANDS_CHANNEL)
        try:
            async for frame in subscription:
                command = wire.decode_msgpack(frame)
                if "replaced_by" in command:
                    if command["replaced_by"] != self.node:
                        await self._replaced_elsewhere(command["targets"][0], command["at"])
                    continue
                if command["message"]["t"] in ("talk.start", "talk.stop"):
                    await self._apply_talk(command["targets"], command["message"])
                targets = set(command["targets"])
                for session in list(self.sessions.values()):
                    if session.station.id in targets:
                        await session.peer.send(command["message"])
        finally:
            self.bus.unsubscribe(subscription)

    # Timers

    async def tick(self) -> None:
        """Age connections, close the dead ones, re-evaluate statuses at schedule edges."""
        now = self.clock()
        async with self._lock:
            transitions, expired = self.table.tick(now)
            await self._commit(transitions)
            await self._sweep_statuses(now)
        for _, connection in expired:
            session = self.sessions.pop(connection, None)
            if session is not None:
                await session.peer.close(CLOSE_TIMEOUT, "heartbeat timeout")

    async def close_revoked(self) -> None:
        """A rotated token ends the session that used the old one (closed with 4401)."""
        sessions = list(self.sessions.values())
        if not sessions:
            return
        revoked = set(await self.auth.revoked({s.station.id: s.token_hash for s in sessions}))
        for session in sessions:
            if session.station.id in revoked and self.sessions.pop(session.id, None) is session:
                log.warning("token of %s was rotated: closing its session", session.station.id)
                await session.peer.close(4401, "token revoked")
                async with self._lock:
                    await self._commit(self.table.disconnected(session.station.id, session.id, self.clock(),
                                                               clean=True))

    # Cluster hooks (see hub.backends.nodes): the same path, for stations held elsewhere

    async def _replaced_elsewhere(self, station_id: str, at: float) -> None:
        """A newer connection of this station opened on another node: close ours with 4409.
        That node's hello already closed the ledger interval and wrote the shared record, so
        this node forgets the connection without writing or announcing anything."""
        older = [s for s in self.sessions.values() if s.station.id == station_id and s.opened <= at]
        if not older:
            return
        async with self._lock:
            self.table.forget_connection(station_id, self.clock(), "replaced")  # not committed, on purpose
        for session in older:
            self.sessions.pop(session.id, None)
            await session.peer.close(4409, "replaced by a newer connection on another node")

    async def node_lost(self, node: str, at: float) -> None:
        """``node`` stopped (it died, or this is its clean stop): close its ledger intervals at
        ``at`` and announce every station its records still hold as offline. Idempotent."""
        reason = "shutdown" if node == self.node else "node_lost"
        await self.ledger.inner.close_all(at, reason, node)
        records = await self.store.load_all()
        async with self._lock:
            for station_id, shared in sorted(records.items()):
                if shared.get("node") == node and shared.get("state") != OFFLINE:
                    await self._publish_offline(station_id, at, reason)

    async def republish(self) -> None:
        """Make the shared records of this node's stations true again, each with a fresh seq:
        after Redis came back, and at start (records a previous run of this node id left)."""
        records = await self.store.load_all()
        async with self._lock:
            now = self.clock()
            local = {record.station: record for record in self.table.records()}
            for station_id, shared in sorted(records.items()):
                mine = shared.get("node") == self.node and shared.get("state") != OFFLINE
                if station_id in local and (mine or local[station_id].state != OFFLINE):
                    await self._publish_presence(station_id, now)
                elif mine:
                    await self._publish_offline(station_id, now, "restart")
            for station_id, record in local.items():
                if station_id not in records and record.state != OFFLINE:
                    await self._publish_presence(station_id, now)

    async def _publish_offline(self, station_id: str, at: float | None, reason: str,
                               activity: dict[str, Any] | None = None) -> None:
        """Announce ``station_id`` offline since ``at``, with its wall status as of now."""
        station = self.registry.get(station_id)
        status = wall_status(OFFLINE, self.schedule.expected_on(station, self.clock())) if station else OFFLINE
        shared = {"state": OFFLINE, "since": at, "reason": reason, "media": "", "status": status,
                  "activity": activity, "node": None}
        await self._publish({"t": "presence", "id": station_id, "state": OFFLINE, "status": status, "since": at,
                             "reason": reason, "media": ""}, record=shared)

    async def shutdown(self) -> None:
        for session in list(self.sessions.values()):
            # 1012 "service restart", as uvicorn already closed the others: a stopped hub is
            # expected back, and agents then retry at once and re-make their WHIP sessions.
            await session.peer.close(1012, "hub shutting down")
        self.sessions.clear()
        self.thumbnail_intake.close()

    # The one path every change takes

    async def _commit(self, transitions: list[Transition]) -> None:
        for transition in transitions:
            await self.ledger.apply(LedgerWrite("transition", transition.station, transition.state,
                                                transition.at, transition.reason))
            self.metrics.transitions.labels(transition.state).inc()
            await self._publish_presence(transition.station, transition.at)

    async def _publish_presence(self, station_id: str, now: float) -> None:
        station = self.registry.get(station_id)
        record = self.table.get(station_id)
        status = self.status(station, now) if station else record.state
        self._statuses[station_id] = status
        await self._publish({"t": "presence", "id": station_id, "state": record.state, "status": status,
                             "since": record.since, "reason": record.reason, "media": record.media},
                            record=True)

    async def _set_activity(self, station_id: str, title: str | None, now: float) -> None:
        record = self.table.get(station_id)
        if title is None and record.activity is None:
            return
        if title is not None and record.activity is not None and record.activity["title"] == title:
            return  # the agent announces its kegiatan again after every welcome: the same one goes on
        record.activity = {"title": title, "since": now} if title else None
        await self.ledger.apply(LedgerWrite("activity", station_id, title, now, "stop" if title is None else "start"))
        await self._publish({"t": "activity", "id": station_id, "title": title, "since": now}, record=True)
        self.on_activity(station_id, record.activity)

    def status(self, station: Station, now: float) -> str:
        return wall_status(self.table.get(station.id).state, self.schedule.expected_on(station, now))

    async def _sweep_statuses(self, now: float) -> None:
        """At a window edge (08:00, 15:00, midnight) statuses change with no state change."""
        if now < self._next_sweep:
            return
        edge, self._next_sweep = self._next_sweep, self.schedule.next_change(now)
        for station in self.registry:
            if self.multi_node and self.table.get(station.id).state == OFFLINE:
                continue  # another node may hold it: only the holder writes its record
            status = self.status(station, now)
            previous = self._statuses.setdefault(station.id, status)
            if previous != status:
                await self._publish_presence(station.id, now)
        if self.multi_node and edge and await self.store.claim(f"sweep:{int(edge)}", ttl_s=60):
            await self._sweep_unheld(now)

    async def _sweep_unheld(self, now: float) -> None:
        """In a cluster, one node (the claimant) announces the status change of every station
        that is offline everywhere: at 08:00 they turn `missing`, at 15:00 `off-hours`."""
        records = await self.store.load_all()
        for station in self.registry:
            shared = records.get(station.id) or {"state": OFFLINE, "since": None, "reason": ""}
            if shared.get("state") != OFFLINE:
                continue
            if shared.get("status") != wall_status(OFFLINE, self.schedule.expected_on(station, now)):
                await self._publish_offline(station.id, shared.get("since"), shared.get("reason") or "",
                                            activity=shared.get("activity"))

    async def _publish(self, event: dict[str, Any], record: bool | dict[str, Any] = False) -> None:
        event["seq"] = await self.store.next_seq()
        if record:
            shared = record if isinstance(record, dict) else self.shared_record(event["id"])
            await self.store.save(event["id"], {**shared, "seq": event["seq"]})  # seq: the record's version
        await self.bus.publish(EVENTS_CHANNEL, wire.encode_msgpack(event))

    def shared_record(self, station_id: str) -> dict[str, Any]:
        record = self.table.get(station_id)
        return {"state": record.state, "since": record.since, "reason": record.reason, "media": record.media,
                "status": self._statuses.get(station_id), "activity": record.activity, "node": self.node}


async def _nothing(station_id: str) -> None:
    return None
