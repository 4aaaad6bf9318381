"""The attendance ledger in Redis: the same intervals, and so the same reports, as SQLite.

Keys (``P`` = ``jaga:ledger:``; ``K`` is ``iv`` for presence intervals, ``act`` for activities):

* ``P K:<id>`` — a hash per interval: station, state (or title), start, end, end_reason,
  checkpoint, node, n (insertion order, SQLite's ``id``). ``<id>`` is ``station|start|state``
  for intervals, ``station|start`` for activities, so **replaying a write is a no-op**: the
  buffered ledger may resend a write whose reply was lost, and nothing is doubled.
* ``P K:open`` — station → id of its open interval (at most one per station).
* ``P K:node:<node>`` — ids of the open intervals a node opened (checkpoint, recover,
  close_all and node loss touch only these).
* ``P K:day:<n>`` — ids of the intervals touching UTC day ``n`` (epoch // 86400); an interval
  is indexed on its start day when opened and on every further day it spans when closed.
  ``P K:days`` lists the days that have a set. A report reads its days' sets plus the open
  set: no scan of the whole history.

Every write is one Lua script, so it is atomic. Times travel as ``repr(float)`` strings and are
stored as given, so a float read back is bit-for-bit the float written. Durability comes from
Redis' AOF (``appendonly yes``, ``appendfsync everysec`` or ``always``; see
``docs/scaling.md``). Connection errors become :class:`LedgerUnavailable`, which the buffered
ledger turns into held writes.
"""

from __future__ import annotations

import math
from typing import Any, cast

import redis.exceptions

from hub.backends import redis_link
from hub.backends.redis_link import REDIS_ERRORS, RedisLink, text
from hub.core.attendance import Interval
from hub.errors import LedgerUnavailable
from hub.ledger.base import Ledger, LedgerWrite

PREFIX = redis_link.PREFIX + "ledger:"
DAY_S = 86400

_HELPERS = """
local P = ARGV[1]
local function index(kind, day, id)
  redis.call('SADD', P..kind..':day:'..day, id)
  redis.call('ZADD', P..kind..':days', day, day)
end
local function close(kind, id, endv, reason)
  local key = P..kind..':'..id
  local start = redis.call('HGET', key, 'start')
  if tonumber(endv) < tonumber(start) then endv = start end
  redis.call('HSET', key, 'end', endv)
  if reason then redis.call('HSET', key, 'end_reason', reason) end
  redis.call('HDEL', P..kind..':open', redis.call('HGET', key, 'station'))
  redis.call('SREM', P..kind..':node:'..redis.call('HGET', key, 'node'), id)
  for day = math.floor(tonumber(start) / 86400) + 1, math.floor(tonumber(endv) / 86400) do
    index(kind, day, id)
  end
end
local function open(kind, id, station, field, value, at, node)
  local key = P..kind..':'..id
  redis.call('HSET', key, 'station', station, field, value, 'start', at, 'checkpoint', at,
             'node', node, 'n', redis.call('INCR', P..'n'))
  redis.call('HSET', P..kind..':open', station, id)
  redis.call('SADD', P..kind..':node:'..node, id)
  index(kind, math.floor(tonumber(at) / 86400), id)
end
local function open_ids(kind, node)
  if node == '' then return redis.call('HVALS', P..kind..':open') end
  return redis.call('SMEMBERS', P..kind..':node:'..node)
end
"""

# ARGV: prefix, kind, station, value ('' closes only), at, reason ('' for activities), node
_APPLY = _HELPERS + """
local kind, station, value, at, reason, node = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local id = station..'|'..at
if kind == 'iv' then id = id..'|'..value end
if value ~= '' and redis.call('EXISTS', P..kind..':'..id) == 1 then return 0 end
local current = redis.call('HGET', P..kind..':open', station)
if current then
  if tonumber(redis.call('HGET', P..kind..':'..current, 'start')) > tonumber(at) then
    return 0  -- older than the open interval (already applied, or superseded by a newer writer)
  end
  close(kind, current, at, reason ~= '' and reason or nil)
end
if value ~= '' then open(kind, id, station, kind == 'iv' and 'state' or 'title', value, at, node) end
return 1
"""

# ARGV: prefix, now, node
_CHECKPOINT = _HELPERS + """
for _, kind in ipairs({'iv', 'act'}) do
  for _, id in ipairs(open_ids(kind, ARGV[3])) do redis.call('HSET', P..kind..':'..id, 'checkpoint', ARGV[2]) end
end
return 1
"""

# ARGV: prefix, node ('' = every node), end ('' = each interval's checkpoint), reason
_CLOSE = _HELPERS + """
local closed = 0
for _, kind in ipairs({'iv', 'act'}) do
  for _, id in ipairs(open_ids(kind, ARGV[2])) do
    local endv = ARGV[3]
    if endv == '' then endv = redis.call('HGET', P..kind..':'..id, 'checkpoint') end
    close(kind, id, endv, kind == 'iv' and ARGV[4] or nil)
    if kind == 'iv' then closed = closed + 1 end
  end
end
return closed
"""


def _day(instant: float, unbounded: str) -> int | str:
    return unbounded if math.isinf(instant) else math.floor(instant / DAY_S)


class RedisLedger(Ledger):
    def __init__(self, link: RedisLink, node: str = "") -> None:
        self.link = link.hold()
        self.node = node
        client = link.client
        self._apply = client.register_script(_APPLY)
        self._checkpoint = client.register_script(_CHECKPOINT)
        self._close = client.register_script(_CLOSE)

    async def _run(self, script: Any, *args: Any) -> int:
        if not self.link.healthy:
            raise LedgerUnavailable(f"redis unavailable: {self.link.error}")
        try:
            return int(await self.link.bounded(script(args=[PREFIX, *args])))
        except REDIS_ERRORS as exc:
            self.link.lost(exc)
            raise LedgerUnavailable(f"redis unavailable: {exc}") from None
        except redis.exceptions.RedisError as exc:  # OOM, READONLY replica, MISCONF (disk)
            raise LedgerUnavailable(f"redis refused the ledger write: {exc}") from None

    async def apply(self, write: LedgerWrite) -> None:
        kind = "iv" if write.kind == "transition" else "act"
        value = write.state if write.state and write.state != "offline" else ""
        reason = write.reason if kind == "iv" else ""
        await self._run(self._apply, kind, write.station, value, repr(float(write.at)), reason, self.node)

    async def checkpoint(self, now: float) -> None:
        await self._run(self._checkpoint, repr(float(now)), self.node)

    async def recover(self, node: str | None = None) -> int:
        return await self._run(self._close, node or "", "", "crash")

    async def close_all(self, now: float, reason: str, node: str | None = None) -> None:
        await self._run(self._close, node or "", repr(float(now)), reason)

    async def _read(self, kind: str, start: float, end: float) -> list[dict[str, Any]]:
        client = self.link.client
        try:
            # Members only (no scores), so a list of bytes; redis-py's type covers withscores too.
            days = cast(list[bytes], await self.link.bounded(
                client.zrangebyscore(f"{PREFIX}{kind}:days", _day(start, "-inf"), _day(end, "+inf"))))
            async with client.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.smembers(f"{PREFIX}{kind}:day:{text(day)}")
                pipe.hvals(f"{PREFIX}{kind}:open")
                found = await self.link.bounded(pipe.execute())
            ids = sorted(set().union(*found))
            async with client.pipeline(transaction=False) as pipe:
                for id_ in ids:
                    pipe.hgetall(PREFIX.encode() + kind.encode() + b":" + id_)
                rows = await self.link.bounded(pipe.execute())
        except REDIS_ERRORS as exc:
            self.link.lost(exc)
            raise LedgerUnavailable(f"redis unavailable: {exc}") from None
        result = []
        for raw in rows:
            row = {key.decode(): value.decode() for key, value in raw.items()}
            row_start, row_end = float(row["start"]), float(row["end"]) if "end" in row else None
            if row_start < end and (row_end is None or row_end > start):
                result.append({**row, "start": row_start, "end": row_end, "n": int(row["n"])})
        result.sort(key=lambda r: (r["start"], r["n"]))
        return result

    async def intervals(self, start: float, end: float) -> list[Interval]:
        return [Interval(r["station"], r["state"], r["start"], r["end"], r.get("end_reason"))
                for r in await self._read("iv", start, end)]

    async def activities(self, start: float, end: float) -> list[dict[str, Any]]:
        return [{"station": r["station"], "title": r["title"], "start": r["start"], "end": r["end"]}
                for r in await self._read("act", start, end)]

    async def close(self) -> None:
        await self.link.release()
