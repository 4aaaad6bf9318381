"""Which node holds what: the node registry, node-loss detection, Redis recovery, routing.

Like LiveKit's router, a single node gets a :class:`LocalRouter` (nothing to share, nothing
to route) and a cluster a :class:`RedisRouter`, chosen once with the rest of the backend
(:func:`hub.backends.factory.build_backend`). The hub calls the same methods on either
(:class:`Router`):

* ``await join(hooks)`` at start, ``run()`` as a task, ``await leave()`` at stop;
* ``await owner_url(station_id)`` — the base ``public_url`` of the node where the station is
  *live* (publishing media), or None when that is this node, or nobody, or unknown. The WHEP
  route answers ``307`` to ``owner_url + request path`` when it is not None;
* ``await stream_here(stream, here)`` — a stream outside the registry (the Pendopo's
  talk-back, which has no presence record) started or stopped publishing on this node, so
  ``owner_url`` finds it too;
* ``readiness()`` — extra ``/readyz`` checks (``{"redis": bool}`` for a cluster).

Theory of operation (cluster)
-----------------------------
Every node writes ``jaga:node:<id>`` (a key with a TTL of ``hub.node_ttl_s``) and its entry in
the ``jaga:nodes`` hash (``public_url``, last heartbeat) every ``ttl/4``. At the same cadence it
looks for entries whose key has expired: a dead node. One survivor, holding
``jaga:lock:node:<id>``, calls ``hooks.node_lost(id, last_heartbeat)`` (the stations service
closes the dead node's ledger intervals at that time and announces its stations ``offline``,
reason ``node_lost``), then removes the entry. A crash half-way leaves the entry, and the next
round does it again: every step is idempotent.

When any part meets a connection error the link goes down (:class:`RedisLink`); this loop then
retries with exponential backoff (50 ms doubling to ``ttl/2``). On success it raises
``jaga:seq`` past the provisional numbers, resubscribes the bus, re-registers, marks the link
healthy, republishes this node's presence (``hooks.republish``), resyncs its watchers and
flushes the held ledger writes. It reaps nobody until it has been connected for ``2 × ttl``:
after a Redis restart every node's key has expired, and the others need a moment to come back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from hub.backends.redis import RedisBus, RedisPresenceStore
from hub.backends.redis_link import PREFIX, REDIS_ERRORS, pack, text, unpack
from hub.errors import JagaError

log = logging.getLogger("jaga.nodes")

# What a registry round survives: connection trouble, and Unavailable from the presence store.
ROUND_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, JagaError)


@dataclass
class ClusterHooks:
    """What the router asks of the services (all idempotent)."""

    republish: Callable[[], Awaitable[None]]  # make this node's shared presence records true
    node_lost: Callable[[str, float], Awaitable[None]]  # a dead node's stations go offline
    resync: Callable[[], Awaitable[None]]  # watchers reload the view and get fresh snapshots
    flush: Callable[[], Awaitable[bool]]  # the buffered ledger writes its held writes


class Router(Protocol):
    """Where stations are and who answers for them; see the module docstring."""

    async def owner_url(self, station_id: str) -> str | None: ...

    async def stream_here(self, stream: str, here: bool) -> None: ...

    def readiness(self) -> dict[str, bool]: ...

    async def join(self, hooks: ClusterHooks) -> None: ...

    async def run(self) -> None: ...

    async def leave(self) -> None: ...


class LocalRouter:
    """One node: everything is here."""

    async def owner_url(self, station_id: str) -> str | None:
        return None

    async def stream_here(self, stream: str, here: bool) -> None:
        return None

    def readiness(self) -> dict[str, bool]:
        return {}

    async def join(self, hooks: ClusterHooks) -> None:
        return None

    async def run(self) -> None:
        return None

    async def leave(self) -> None:
        return None


_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RELEASE_STREAM = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""


class RedisRouter:
    NODES = PREFIX + "nodes"
    # stream → node, for streams without a presence record (the Pendopo's talk-back). An
    # entry of a dead node is harmless: owner_url checks that the node is alive.
    STREAMS = PREFIX + "streams"

    def __init__(self, bus: RedisBus, store: RedisPresenceStore, node: str, ttl_s: float,
                 public_url: Callable[[], str], clock: Callable[[], float] = time.time) -> None:
        self.bus = bus
        self.store = store
        self.link = store.link
        self.client = self.link.client
        self.node = node
        self.ttl_s = ttl_s
        self.public_url = public_url
        self.clock = clock
        self.hooks: ClusterHooks | None = None
        self.connected_at = 0.0  # monotonic time the link last became healthy
        self._release = self.client.register_script(_RELEASE)
        self._release_stream = self.client.register_script(_RELEASE_STREAM)

    @staticmethod
    def alive_key(node: str) -> str:
        return f"{PREFIX}node:{node}"

    # Routing

    async def owner_url(self, station_id: str) -> str | None:
        if not self.link.healthy:
            return None
        try:
            record = await self.store.load(station_id)  # bounded inside
            if record:
                owner = record.get("node") if record.get("state") == "live" else None
            else:
                found = await self.link.bounded(self.client.hget(self.STREAMS, station_id))
                owner = text(found) if found else None
            if owner is None or owner == self.node:
                return None
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.exists(self.alive_key(owner))
                pipe.hget(self.NODES, owner)
                alive, entry = await self.link.bounded(pipe.execute())
        except ROUND_ERRORS as exc:
            self.link.lost(exc)
            return None
        if not alive or not entry:
            return None
        return str(unpack(entry)["url"]).rstrip("/") or None

    async def stream_here(self, stream: str, here: bool) -> None:
        try:
            if here:
                await self.link.bounded(self.client.hset(self.STREAMS, stream, self.node))
            else:  # only our own entry: another node may have taken the stream over
                await self.link.bounded(self._release_stream(keys=[self.STREAMS], args=[stream, self.node]))
        except ROUND_ERRORS as exc:
            self.link.lost(exc)
            log.warning("could not record where %s is published: %s", stream, exc)

    def readiness(self) -> dict[str, bool]:
        return {"redis": self.link.healthy}

    # Lifecycle

    async def join(self, hooks: ClusterHooks) -> None:
        """Register, and clear the records a previous run of this node id left behind."""
        self.hooks = hooks
        await self._heartbeat()
        self.connected_at = time.monotonic()
        await hooks.republish()

    async def run(self) -> None:
        interval = self.ttl_s / 4
        backoff = 0.05
        while True:
            if self.link.healthy:
                try:
                    await self._heartbeat()
                    if time.monotonic() - self.connected_at >= 2 * self.ttl_s:
                        await self._reap()
                except ROUND_ERRORS as exc:
                    self.link.lost(exc)
                except Exception:
                    log.exception("node registry round failed")
                try:
                    await asyncio.wait_for(self.link.went_down.wait(), interval)
                except TimeoutError:
                    pass
            else:
                try:
                    await self._recover()
                    backoff = 0.05
                except ROUND_ERRORS as exc:
                    log.debug("redis still unavailable: %s", exc)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.ttl_s / 2)

    async def leave(self) -> None:
        """Clean stop: this node's remaining stations go offline; the entry goes."""
        if not self.link.healthy or self.hooks is None:
            return
        try:
            await self.hooks.node_lost(self.node, self.clock())
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.alive_key(self.node))
                pipe.hdel(self.NODES, self.node)
                await self.link.bounded(pipe.execute())
        except ROUND_ERRORS as exc:
            log.warning("could not leave the node registry cleanly: %s", exc)

    # Rounds

    async def _heartbeat(self) -> None:
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(self.alive_key(self.node), b"1", px=max(1, int(self.ttl_s * 1000)))
            pipe.hset(self.NODES, self.node, pack({"url": self.public_url(), "at": self.clock()}))
            await self.link.bounded(pipe.execute())

    async def _reap(self) -> None:
        entries = {text(k): unpack(v) for k, v in (await self.link.bounded(self.client.hgetall(self.NODES))).items()}
        others = [node for node in entries if node != self.node]
        if not others:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for node in others:
                pipe.exists(self.alive_key(node))
            alive = await self.link.bounded(pipe.execute())
        for node, is_alive in zip(others, alive, strict=True):
            if not is_alive:
                await self._bury(node, float(entries[node]["at"]))

    async def _bury(self, node: str, last_heartbeat: float) -> None:
        assert self.hooks is not None
        lock, token = f"{PREFIX}lock:node:{node}", secrets.token_hex(8)
        if not await self.link.bounded(self.client.set(lock, token, nx=True, px=max(1000, int(self.ttl_s * 5000)))):
            return  # another survivor is on it
        try:
            if not await self.link.bounded(self.client.hexists(self.NODES, node)):
                return  # buried meanwhile
            log.warning("node %s stopped heartbeating at %.3f: its stations go offline", node, last_heartbeat)
            await self.hooks.node_lost(node, last_heartbeat)
            await self.link.bounded(self.client.hdel(self.NODES, node))
        finally:
            await self.link.bounded(self._release(keys=[lock], args=[token]))

    async def _recover(self) -> None:
        assert self.hooks is not None
        await self.link.bounded(self.client.ping())
        await self.store.raise_seq()
        await self.bus.resubscribe()
        await self._heartbeat()
        self.link.restored()
        self.connected_at = time.monotonic()
        try:
            await self.hooks.republish()
            await self.hooks.resync()
            await self.hooks.flush()
        except ROUND_ERRORS:
            if self.link.healthy:
                raise
            # It went away again during the recovery; the next round starts over.
