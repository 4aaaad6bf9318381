"""Multi-node backend: several hub nodes share bus, presence and credentials through one Redis.

Theory of operation
-------------------
One :class:`RedisLink` (:mod:`hub.backends.redis_link`: a ``redis.asyncio`` client plus a
health flag) is shared by the bus, the presence store, the credential store
(:mod:`hub.backends.redis_credentials`) and the ledger (:mod:`hub.ledger.redis`) of a node.
Whoever meets a connection error calls :meth:`RedisLink.lost`; from then on every part
*fails fast* instead of waiting on a dead socket, and only the node agent
(:mod:`hub.backends.nodes`) brings the link back, after it has resubscribed the bus,
re-registered the node, republished this node's presence and flushed the held ledger writes.

* **Bus** — Redis pub/sub, one channel per bus channel (``jaga:bus:<name>``), one Redis
  subscription per node whatever the number of local listeners. The bytes published are the
  bytes delivered. Pub/sub drops what a disconnected node would have received; that is fine
  because the bus only carries *deltas* and the presence store is the truth a node resyncs
  from (see ``docs/scaling.md`` for why not streams). While Redis is away, :meth:`RedisBus.publish`
  delivers to this node's own listeners, so a node keeps serving its own stations and watchers.
* **Presence** — ``jaga:seq`` (INCR) orders events; ``jaga:presence`` holds one msgpack record
  per station and ``jaga:presence:seq`` the sequence number (version) of that record. Two nodes
  may INCR and publish in opposite orders, so a save only lands when its version is newer than
  the stored one (a Lua compare-and-set), and watchers apply events per station by version
  (:mod:`hub.services.watchers`). While Redis is away, :meth:`RedisPresenceStore.next_seq`
  hands out provisional numbers above the last one it knew; the recovery raises ``jaga:seq``
  past them before republishing.
* **Credentials** — hashes in ``jaga:cred:*``; sessions expire in Redis. Station token hashes
  are cached, and only the cache answers while Redis is away (a known station can reconnect;
  a rotation check never mistakes an outage for a revocation).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis.asyncio.client import PubSub

from hub.backends.base import Bus, PresenceStore, Subscription
from hub.backends.redis_link import PREFIX, REDIS_ERRORS, RedisLink, pack, text, unpack
from hub.errors import Unavailable

log = logging.getLogger("jaga.redis")


class RedisBus(Bus):
    """Pub/sub across nodes; local fan-out to bounded :class:`Subscription` inboxes."""

    def __init__(self, link: RedisLink) -> None:
        self.link = link.hold()
        self._listeners: dict[str, list[Subscription]] = {}
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._confirmed: set[str] = set()  # channels whose SUBSCRIBE Redis has acknowledged
        self._changed = asyncio.Event()
        self._lock = asyncio.Lock()
        self._pending: set[asyncio.Task[None]] = set()

    @staticmethod
    def _key(channel: str) -> str:
        return f"{PREFIX}bus:{channel}"

    async def publish(self, channel: str, data: bytes) -> None:
        if self.link.healthy:
            try:
                await self.link.bounded(self.link.client.publish(self._key(channel), data))
                return
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
        self._deliver(channel, data)  # Redis is away: this node's own listeners still hear it

    def subscribe(self, channel: str) -> Subscription:
        subscription = Subscription(channel)
        listeners = self._listeners.setdefault(channel, [])
        listeners.append(subscription)
        if len(listeners) == 1:
            task = asyncio.get_running_loop().create_task(self._redis_subscribe([channel]))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        listeners = self._listeners.get(subscription.channel, [])
        if subscription in listeners:
            listeners.remove(subscription)
            subscription.end()
        # The Redis subscription stays: the hub's two channels live as long as the node.

    async def settle(self, wait: float = 5.0) -> None:
        """Wait until Redis acknowledged the SUBSCRIBE of every channel with listeners, so a
        caller that subscribes, then loads the presence store, misses no event in between."""
        deadline = asyncio.get_running_loop().time() + wait
        while self.link.healthy and not set(self._listeners) <= self._confirmed:
            self._changed.clear()
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise TimeoutError("redis did not acknowledge SUBSCRIBE in time")
            with_timeout = asyncio.wait_for(self._changed.wait(), left)
            try:
                await with_timeout
            except TimeoutError:
                continue

    async def _redis_subscribe(self, channels: list[str]) -> None:
        async with self._lock:
            if not self.link.healthy:
                return  # the recovery resubscribes everything
            try:
                if self._pubsub is None:
                    self._pubsub = self.link.client.pubsub()
                await self.link.bounded(self._pubsub.subscribe(*[self._key(c) for c in channels]))
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
                return
            if self._reader is None or self._reader.done():
                self._reader = asyncio.get_running_loop().create_task(self._read(self._pubsub))

    async def resubscribe(self) -> None:
        """After an outage: a fresh pub/sub connection subscribed to every channel."""
        async with self._lock:
            await self._drop_pubsub()
            self._confirmed.clear()
            if not self._listeners:
                return
            pubsub = self.link.client.pubsub()
            try:
                await self.link.bounded(pubsub.subscribe(*[self._key(c) for c in self._listeners]))
            except BaseException:
                await pubsub.aclose()
                raise
            self._pubsub = pubsub
            self._reader = asyncio.get_running_loop().create_task(self._read(pubsub))

    async def _read(self, pubsub: PubSub) -> None:
        prefix = len(self._key(""))
        try:
            while True:
                message = await pubsub.get_message(timeout=1.0)
                if message is None:
                    continue
                channel = message["channel"].decode()[prefix:]
                if message["type"] == "message":
                    self._deliver(channel, message["data"])
                elif message["type"] == "subscribe":
                    self._confirmed.add(channel)
                    self._changed.set()
        except REDIS_ERRORS as exc:
            # What other nodes publish meanwhile is lost. Listeners are not flagged as
            # overflowed: the store they would resync from is down too. The node agent's
            # recovery resyncs them once it is back (hooks.resync).
            self.link.lost(exc)

    def _deliver(self, channel: str, data: bytes) -> None:
        for subscription in self._listeners.get(channel, ()):
            subscription.deliver(data)

    async def _drop_pubsub(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None
        if self._pubsub is not None:
            pubsub, self._pubsub = self._pubsub, None
            try:
                await pubsub.aclose()
            except Exception:  # a dead connection may fail to close; it is gone either way
                pass

    async def close(self) -> None:
        for task in list(self._pending):
            task.cancel()
        await asyncio.gather(*self._pending, return_exceptions=True)
        async with self._lock:
            await self._drop_pubsub()
        for listeners in self._listeners.values():
            for subscription in listeners:
                subscription.end()
        self._listeners.clear()
        await self.link.release()


# Store a record only if it is newer than the stored one (per-station version).
_SAVE = """
local version = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '-1')
local seq = tonumber(ARGV[3])
if seq >= 0 and seq <= version then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""

# Raise the global sequence to at least ARGV[1] (after provisional numbers were handed out).
_RAISE_SEQ = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if current < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""


class RedisPresenceStore(PresenceStore):
    RECORDS = PREFIX + "presence"
    VERSIONS = PREFIX + "presence:seq"
    SEQ = PREFIX + "seq"

    def __init__(self, link: RedisLink, bus: RedisBus | None = None) -> None:
        self.link = link
        self.bus = bus
        self.high = 0  # the highest sequence number this node handed out or knows of
        self._save = link.client.register_script(_SAVE)
        self._raise = link.client.register_script(_RAISE_SEQ)

    async def next_seq(self) -> int:
        if self.link.healthy:
            try:
                self.high = max(self.high, int(await self.link.bounded(self.link.client.incr(self.SEQ))))
                return self.high
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
        self.high += 1  # provisional: orders this node's own events until Redis returns
        return self.high

    async def save(self, station: str, record: dict[str, Any]) -> None:
        if not self.link.healthy:
            return  # the recovery republishes this node's stations
        seq = record.get("seq")
        try:
            await self.link.bounded(self._save(keys=[self.RECORDS, self.VERSIONS],
                                               args=[station, pack(record), -1 if seq is None else int(seq)]))
        except REDIS_ERRORS as exc:
            self.link.lost(exc)

    async def load_all(self) -> dict[str, dict[str, Any]]:
        if self.bus is not None:
            await self.bus.settle()
        try:
            raw = await self.link.bounded(self.link.client.hgetall(self.RECORDS))
        except REDIS_ERRORS as exc:
            self.link.lost(exc)
            raise Unavailable("presence store unavailable (redis)") from None
        records = {text(key): unpack(value) for key, value in raw.items()}
        self.high = max([self.high, *(int(r.get("seq") or 0) for r in records.values())])
        return records

    async def claim(self, key: str, ttl_s: float) -> bool:
        if not self.link.healthy:
            return False  # nobody can tell; snapshots after the recovery carry the right status
        try:
            won = await self.link.bounded(self.link.client.set(f"{PREFIX}claim:{key}", b"1", nx=True,
                                                               px=max(1, int(ttl_s * 1000))))
        except REDIS_ERRORS as exc:
            self.link.lost(exc)
            return False
        return bool(won)

    async def load(self, station: str) -> dict[str, Any] | None:
        raw = await self.link.bounded(self.link.client.hget(self.RECORDS, station))
        return unpack(raw) if raw else None

    async def raise_seq(self) -> None:
        """Make the global sequence pass every provisional number this node handed out."""
        await self.link.bounded(self._raise(keys=[self.SEQ], args=[self.high]))
        self.high = max(self.high, int(await self.link.bounded(self.link.client.get(self.SEQ)) or 0))
