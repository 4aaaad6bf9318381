"""The recordings' index in Redis, shared by every node (docs/scaling.md).

Keys (``R`` = ``jaga:rec:``, ``RS`` = ``jaga:recordings:``):

* ``R<id>`` — a hash per recording, every :class:`Recording` field (floats as ``repr``, so a
  time read back is the time written; ``end`` "" while open; ``parts`` a JSON list).
* ``RS all``, ``RS station:<station>``, ``RS day:<day>``, ``RS station_day:<station>:<day>``
  — sorted sets of ids scored by ``start``: the lists newest first, retention oldest first.
* ``RS open`` — the ids in state ``recording`` or ``finishing`` (crash recovery).
* ``RS bytes`` — the total of every hash's ``bytes``.

:data:`_SAVE` writes a hash, its index entries and the byte total in one script, so no reader
sees a recording half indexed and the total never drifts; :data:`_DELETE` undoes all three.
Connection errors answer 503 (:class:`Unavailable`).
"""

from __future__ import annotations

import builtins
import json
from typing import Any

from hub.backends.base import Recording, RecordingStore
from hub.backends.redis_link import PREFIX, REDIS_ERRORS, RedisLink, text
from hub.errors import Unavailable

RECORDING = PREFIX + "rec:"
INDEX = PREFIX + "recordings:"
FIELDS = ("id", "station", "title", "start", "end", "duration_s", "bytes", "video_codec", "audio_codec",
          "state", "visible", "hidden_reason", "reason", "parts", "path", "day")

# KEYS[1] the hash. ARGV: index prefix, id, 'add' | 'update', then field/value pairs (with
# station, day, start, state and bytes among them). 'update' of a missing recording does nothing.
_SAVE = """
local P, id = ARGV[1], ARGV[2]
local exists = redis.call('EXISTS', KEYS[1]) == 1
if ARGV[3] == 'update' and not exists then return 0 end
local old_bytes = 0
if exists then
  local old = redis.call('HMGET', KEYS[1], 'station', 'day', 'bytes')
  old_bytes = tonumber(old[3]) or 0
  redis.call('ZREM', P..'station:'..old[1], id)
  redis.call('ZREM', P..'day:'..old[2], id)
  redis.call('ZREM', P..'station_day:'..old[1]..':'..old[2], id)
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
local new = redis.call('HMGET', KEYS[1], 'station', 'day', 'start', 'state', 'bytes')
redis.call('ZADD', P..'all', new[3], id)
redis.call('ZADD', P..'station:'..new[1], new[3], id)
redis.call('ZADD', P..'day:'..new[2], new[3], id)
redis.call('ZADD', P..'station_day:'..new[1]..':'..new[2], new[3], id)
if new[4] == 'recording' or new[4] == 'finishing' then
  redis.call('SADD', P..'open', id)
else
  redis.call('SREM', P..'open', id)
end
redis.call('INCRBY', P..'bytes', (tonumber(new[5]) or 0) - old_bytes)
return 1
"""
# KEYS[1] the hash. ARGV: index prefix, id.
_DELETE = """
local P, id = ARGV[1], ARGV[2]
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HMGET', KEYS[1], 'station', 'day', 'bytes')
redis.call('ZREM', P..'all', id)
redis.call('ZREM', P..'station:'..old[1], id)
redis.call('ZREM', P..'day:'..old[2], id)
redis.call('ZREM', P..'station_day:'..old[1]..':'..old[2], id)
redis.call('SREM', P..'open', id)
redis.call('DECRBY', P..'bytes', tonumber(old[3]) or 0)
redis.call('DEL', KEYS[1])
return 1
"""


def _encode(r: Recording) -> builtins.list[str]:
    pairs: builtins.list[str] = []
    for field in FIELDS:
        value: Any = getattr(r, field)
        if field in ("start", "duration_s"):
            value = repr(float(value))
        elif field == "end":
            value = "" if value is None else repr(float(value))
        elif field == "visible":
            value = "1" if value else "0"
        elif field == "parts":
            value = json.dumps(list(value))
        pairs += [field, str(value)]
    return pairs


def _decode(found: dict[bytes, bytes]) -> Recording:
    row = {text(key): text(value) for key, value in found.items()}
    values: dict[str, Any] = dict(row)
    values["start"] = float(row["start"])
    values["end"] = float(row["end"]) if row["end"] else None
    values["duration_s"] = float(row["duration_s"])
    values["bytes"] = int(row["bytes"])
    values["visible"] = row["visible"] == "1"
    values["parts"] = tuple(json.loads(row["parts"]))
    return Recording(**values)


class RedisRecordings(RecordingStore):
    def __init__(self, link: RedisLink) -> None:
        self.link = link.hold()
        self.client = link.client
        self._save = self.client.register_script(_SAVE)
        self._delete = self.client.register_script(_DELETE)
        self._closed = False

    async def _run(self, awaitable: Any) -> Any:
        try:
            return await self.link.bounded(awaitable)
        except REDIS_ERRORS as exc:
            self.link.lost(exc)
            raise Unavailable("recording index unavailable (redis)", retry_after=5.0) from None

    async def add(self, r: Recording) -> None:
        await self._run(self._save(keys=[RECORDING + r.id], args=[INDEX, r.id, "add", *_encode(r)]))

    async def update(self, r: Recording) -> None:
        await self._run(self._save(keys=[RECORDING + r.id], args=[INDEX, r.id, "update", *_encode(r)]))

    async def get(self, recording_id: str) -> Recording | None:
        found = await self._run(self.client.hgetall(RECORDING + recording_id))
        return _decode(found) if found else None

    async def _load(self, ids: builtins.list[str]) -> builtins.list[Recording]:
        if not ids:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for recording_id in ids:
                pipe.hgetall(RECORDING + recording_id)
            found = await self._run(pipe.execute())
        return [_decode(row) for row in found if row]  # deleted between the two reads: left out

    async def list(self, station: str | None = None, day: str | None = None, limit: int = 500,
                   before: float | None = None) -> builtins.list[Recording]:
        if limit <= 0:
            return []
        if station is not None and day is not None:
            key = f"{INDEX}station_day:{station}:{day}"
        elif station is not None:
            key = f"{INDEX}station:{station}"
        elif day is not None:
            key = f"{INDEX}day:{day}"
        else:
            key = INDEX + "all"
        top = "+inf" if before is None else f"({before!r}"
        # ZRANGE … REV orders equal scores by member descending: the id tie-break SQLite uses.
        ids = await self._run(self.client.zrevrangebyscore(key, top, "-inf", start=0, num=limit))
        return await self._load([text(i) for i in ids])

    async def oldest(self, limit: int = 500) -> builtins.list[Recording]:
        ids = await self._run(self.client.zrange(INDEX + "all", 0, limit - 1))
        return await self._load([text(i) for i in ids])

    async def open_recordings(self) -> builtins.list[Recording]:
        ids = await self._run(self.client.smembers(INDEX + "open"))
        found = await self._load([text(i) for i in ids])
        return sorted(found, key=lambda r: (r.start, r.id))

    async def delete(self, recording_id: str) -> None:
        await self._run(self._delete(keys=[RECORDING + recording_id], args=[INDEX, recording_id]))

    async def total_bytes(self) -> int:
        value = await self._run(self.client.get(INDEX + "bytes"))
        return int(value or 0)

    async def close(self) -> None:
        if not self._closed:  # once: a second release would close the link under other parts
            self._closed = True
            await self.link.release()
