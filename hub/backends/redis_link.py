"""The Redis client a node's Redis parts share, and whether it currently works.

The lowest of the Redis modules: the bus and presence (:mod:`hub.backends.redis`), the
credentials (:mod:`hub.backends.redis_credentials`), the ledger (:mod:`hub.ledger.redis`) and
the router (:mod:`hub.backends.nodes`) all import it, and it imports none of them, so imports
point one way. See :mod:`hub.backends.redis` for the theory of operation.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import msgpack
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("jaga.redis")
T = TypeVar("T")

PREFIX = "jaga:"
# Connection trouble (refused, reset, timeout, Redis still loading its AOF, a primary demoted
# to replica by a failover) as opposed to a command Redis refused (ResponseError), which is
# a bug or a misconfiguration.
REDIS_ERRORS: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, redis.exceptions.ReadOnlyError, OSError)


COMMAND_TIMEOUT_S = 3.0


def connect(url: str) -> aioredis.Redis:
    """A client that fails fast: no library retries, a short connect timeout. We retry, with
    backoff, in one place (the node agent), and meanwhile serve from memory.

    No ``socket_timeout``: with one, redis-py writes through ``asyncio.wait_for``, which on
    Python 3.11 can swallow a task's cancellation (CPython gh-86296), and a hub task then
    never stops. Commands are bounded by :meth:`RedisLink.bounded` instead."""
    return aioredis.Redis.from_url(url, socket_timeout=None, socket_connect_timeout=1.0,
                                   retry=Retry(NoBackoff(), 0), health_check_interval=0)


class RedisLink:
    """The client a node's Redis parts share, and whether it currently works."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.client = connect(url)
        self.healthy = True
        self.error = ""
        self.went_down = asyncio.Event()  # set by lost(); the node agent waits on it
        self._holders = 0

    def lost(self, exc: BaseException) -> None:
        if self.healthy:
            log.error("redis unavailable (%s): serving this node's stations from memory", exc)
        self.healthy = False
        self.error = str(exc) or type(exc).__name__
        self.went_down.set()

    def restored(self) -> None:
        log.warning("redis is back")
        self.healthy = True
        self.error = ""
        self.went_down.clear()

    async def bounded(self, awaitable: Awaitable[T]) -> T:
        """Await one Redis call, at most :data:`COMMAND_TIMEOUT_S` (a silent network must
        not hold a station's presence lock); a timeout is a connection error (``OSError``)."""
        async with asyncio.timeout(COMMAND_TIMEOUT_S):
            return await awaitable

    def hold(self) -> RedisLink:
        self._holders += 1
        return self

    async def release(self) -> None:
        """Each part holding the link releases it on close; the last one closes the client."""
        self._holders -= 1
        if self._holders <= 0:
            await self.client.aclose()


def pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


# redis-py types every reply as ``bytes | str``; our clients never set decode_responses,
# so replies are bytes. These two take the declared type and say what they expect.

def unpack(data: bytes | str) -> Any:
    assert isinstance(data, bytes), "a Redis reply (decode_responses is off)"
    return msgpack.unpackb(data, raw=False)


def text(data: bytes | str) -> str:
    return data.decode() if isinstance(data, bytes) else data
