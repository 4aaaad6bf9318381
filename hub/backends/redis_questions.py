"""Citizens' questions in Redis, shared by every node: asked on one, moderated on another.

Keys (``Q`` = ``jaga:q:``, ``QS`` = ``jaga:questions:``):

* ``Q<id>`` — a hash per question, every :class:`Question` field (floats as ``repr``, so a
  time read back is bit-for-bit the time written). Ids are URL-safe tokens: no ``:``.
* ``Q<id>:voters`` — the devices that voted for it. :data:`_VOTE` adds the device and bumps
  the hash's ``votes`` in one script, so two nodes voting at once are both counted and one
  device voting twice at once is counted once.
* ``QS<state>:<station>`` — a sorted set per station and state, scored by ``asked_at``: a
  station's queue newest first, and ``ZCARD`` of the pending one for ``max_pending``.
* ``QS<state>`` — the same across stations (the wall's queue of every station).
* ``QS ban:<kind>:<value>`` — ``until`` for a banned device or address, expiring by itself a
  minute after ``until`` (``SET … PXAT``; the minute covers clock skew between Redis and the
  hubs). Whether a ban holds is decided by the caller's clock against the stored ``until``.
* ``QS slow_mode`` — a hash, station → seconds set by an operator.

:data:`_SAVE` writes a question and moves it between index sets in one script, so no reader
sees it in two states or in none. Connection errors answer 503 (:class:`Unavailable`); there
is no local fallback: a question nobody else can see or moderate is worse than a retry.
"""

from __future__ import annotations

import builtins
import heapq
import itertools
import math
from collections.abc import Sequence
from typing import Any

from hub.backends.base import QuestionStore
from hub.backends.redis_link import PREFIX, REDIS_ERRORS, RedisLink, text
from hub.core.questions import PENDING, Question
from hub.errors import Unavailable

QUESTION = PREFIX + "q:"
INDEX = PREFIX + "questions:"
BAN = INDEX + "ban:"
SLOW_MODE = INDEX + "slow_mode"
BAN_SPARE_MS = 60_000

FLOATS = ("asked_at", "decided_at")
# What update() writes: everything but the id and the vote count, which only _VOTE changes; an
# update built from a question read before a citizen's upvote must not take the upvote back.
UPDATED = ("station", "text", "name", "state", "asked_at", "device", "address", "activity", "held", "decided_by",
           "decided_at")

# KEYS[1] the question's hash. ARGV: index prefix, id, 'add' | 'update', then field/value pairs.
# 'update' of a question that does not exist does nothing (like SQLite's UPDATE … WHERE id).
_SAVE = """
local P, id = ARGV[1], ARGV[2]
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[3] == 'update' and not exists then return 0 end
if exists then
  local old = redis.call('HMGET', KEYS[1], 'station', 'state')
  redis.call('ZREM', P..old[2]..':'..old[1], id)
  redis.call('ZREM', P..old[2], id)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
local new = redis.call('HMGET', KEYS[1], 'station', 'state', 'asked_at')
redis.call('ZADD', P..new[2]..':'..new[1], new[3], id)
redis.call('ZADD', P..new[2], new[3], id)
return 1
"""
# KEYS[1] the question's hash, KEYS[2] its voters. ARGV[1] the device. nil: no such question,
# or this device already voted.
_VOTE = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return false end
return redis.call('HINCRBY', KEYS[1], 'votes', 1)
"""
# KEYS[1] the ban. ARGV: until, when Redis may forget it (unix ms). A longer ban is kept.
_BAN = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '-inf') then
  redis.call('SET', KEYS[1], ARGV[1], 'PXAT', ARGV[2])
end
"""


def _encode(q: Question, fields: Sequence[str]) -> builtins.list[str]:
    pairs: builtins.list[str] = []
    for field in fields:
        value = getattr(q, field)
        pairs += [field, repr(float(value)) if field in FLOATS else str(value)]
    return pairs


def _decode(found: dict[bytes, bytes]) -> Question:
    row = {text(key): text(value) for key, value in found.items()}
    values: dict[str, Any] = dict(row)
    values["votes"] = int(row["votes"])
    for field in FLOATS:
        values[field] = float(row[field])
    return Question(**values)


class RedisQuestions(QuestionStore):
    def __init__(self, link: RedisLink) -> None:
        self.link = link.hold()
        self.client = link.client
        self._save = self.client.register_script(_SAVE)
        self._vote = self.client.register_script(_VOTE)
        self._ban = self.client.register_script(_BAN)
        self._closed = False

    def _unavailable(self, exc: BaseException) -> Unavailable:
        self.link.lost(exc)
        return Unavailable("question store unavailable (redis)", retry_after=5.0)

    async def _run(self, awaitable: Any) -> Any:
        try:
            return await self.link.bounded(awaitable)
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def add(self, q: Question) -> None:
        fields = ("id", *UPDATED, "votes")
        await self._run(self._save(keys=[QUESTION + q.id], args=[INDEX, q.id, "add", *_encode(q, fields)]))

    async def get(self, question_id: str) -> Question | None:
        found = await self._run(self.client.hgetall(QUESTION + question_id))
        return _decode(found) if found else None

    async def update(self, q: Question) -> None:
        await self._run(self._save(keys=[QUESTION + q.id], args=[INDEX, q.id, "update", *_encode(q, UPDATED)]))

    async def list(self, station: str | None, states: Sequence[str], limit: int = 500) -> builtins.list[Question]:
        if not states or limit <= 0:
            return []
        keys = [INDEX + state + ("" if station is None else f":{station}") for state in states]
        async with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.zrevrange(key, 0, limit - 1, withscores=True)
            ranked = await self._run(pipe.execute())
        # Each set is newest first (equal times: greater id first, as SQLite breaks ties);
        # merge them and keep the newest ``limit``.
        newest = heapq.merge(*ranked, key=lambda entry: (entry[1], entry[0]), reverse=True)
        ids = [text(member) for member, _ in itertools.islice(newest, limit)]
        async with self.client.pipeline(transaction=False) as pipe:
            for question_id in ids:
                pipe.hgetall(QUESTION + question_id)
            found = await self._run(pipe.execute())
        questions = [_decode(row) for row in found if row]
        # A question moderated between the two reads has left these states: leave it out.
        return [q for q in questions if q.state in states and (station is None or q.station == station)]

    async def count_pending(self, station: str) -> int:
        return int(await self._run(self.client.zcard(f"{INDEX}{PENDING}:{station}")))

    async def vote(self, question_id: str, device: str) -> int | None:
        key = QUESTION + question_id
        count = await self._run(self._vote(keys=[key, key + ":voters"], args=[device]))
        return None if count is None else int(count)

    async def ban(self, kind: str, value: str, until: float) -> None:
        forget_at = math.ceil(until * 1000) + BAN_SPARE_MS
        await self._run(self._ban(keys=[f"{BAN}{kind}:{value}"], args=[repr(float(until)), forget_at]))

    async def banned(self, device: str, address: str, now: float) -> bool:
        values = await self._run(self.client.mget([f"{BAN}device:{device}", f"{BAN}address:{address}"]))
        return any(value is not None and float(value) > now for value in values)

    async def set_slow_mode(self, station: str, seconds: float) -> None:
        await self._run(self.client.hset(SLOW_MODE, station, repr(float(seconds))))

    async def slow_mode(self, station: str) -> float | None:
        value = await self._run(self.client.hget(SLOW_MODE, station))
        return None if value is None else float(value)

    async def close(self) -> None:
        if not self._closed:  # once: a second release would close the link under other parts
            self._closed = True
            await self.link.release()
