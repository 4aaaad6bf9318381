"""Credentials in Redis: station token hashes, operators, sessions, audit log.

Station token hashes are cached, and only the cache answers while Redis is away: a known
station can reconnect, and the periodic rotation check never mistakes an outage for a
revocation. Everything else answers 503 (:class:`Unavailable`) until Redis is back.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hub.backends.base import CredentialStore
from hub.backends.redis_link import PREFIX, REDIS_ERRORS, RedisLink, text
from hub.errors import Unavailable

AUDIT_KEEP = 100_000  # newest audit entries kept in Redis

# The audit log is a sorted set scored by an id from INCR, members "<id> <json>": paging
# back from an id is one ZRANGE BYSCORE, and entries written meanwhile do not shift a page
# (a list, as older hubs kept, pages by position, which every new entry moves). Numbering
# and adding happen in one script, so no reader sees a gap that fills in later. Both
# scripts first move a list left by an older hub into the set, oldest first.
_MOVE_LEGACY_AUDIT = """
local legacy = redis.call('LRANGE', KEYS[3], 0, -1)
for i = #legacy, 1, -1 do
  local id = redis.call('INCR', KEYS[2])
  redis.call('ZADD', KEYS[1], id, string.format('%d ', id) .. legacy[i])
end
if #legacy > 0 then redis.call('DEL', KEYS[3]) end
"""
_AUDIT_ADD = _MOVE_LEGACY_AUDIT + """
local id = redis.call('INCR', KEYS[2])
redis.call('ZADD', KEYS[1], id, string.format('%d ', id) .. ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[2]) - 1)
return id
"""
_AUDIT_PAGE = _MOVE_LEGACY_AUDIT + """
return redis.call('ZRANGE', KEYS[1], ARGV[1], '-inf', 'BYSCORE', 'REV', 'LIMIT', 0, ARGV[2])
"""

# Sessions: a hash per session (EXPIREAT its expiry, so Redis forgets it by itself), plus an
# index to end them by operator and to sweep them: SESSIONS (zset id → expiry), OWNERS (hash
# id → operator) and one zset per operator. The scripts keep the three in step; OWNERS also
# says whether a session still existed when its hash already expired.
_DROP_SESSION = """
local function drop(id)
  redis.call('DEL', ARGV[1] .. id)
  redis.call('ZREM', KEYS[1], id)
  local operator = redis.call('HGET', KEYS[2], id)
  if not operator then return 0 end
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', ARGV[2] .. operator, id)
  return 1
end
"""
_REVOKE_SESSION = _DROP_SESSION + "return drop(ARGV[3])"
_REVOKE_OPERATOR = _DROP_SESSION + """
local ended = 0
for _, id in ipairs(redis.call('ZRANGE', ARGV[2] .. ARGV[3], 0, -1)) do ended = ended + drop(id) end
redis.call('DEL', ARGV[2] .. ARGV[3])
if ARGV[4] == 'remove' then return redis.call('HDEL', KEYS[3], ARGV[3]) end
return ended
"""
_SWEEP_SESSIONS = _DROP_SESSION + """
local swept = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])) do swept = swept + drop(id) end
return swept
"""
# Login throttling: a counter per key in a fixed window (the hash keeps its end, so the
# caller's clock decides, as in SQLite; the TTL only lets Redis forget it), and locks.
_COUNT_ATTEMPT = """
local ends = tonumber(redis.call('HGET', KEYS[1], 'ends') or '0')
if ends <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'count', 1, 'ends', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return redis.call('HINCRBY', KEYS[1], 'count', 1)
"""
_LOCK = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
"""


def _ttl_ms(seconds: float) -> int:
    """A TTL for something whose end our clock decides: a second to spare, never zero."""
    return max(1, math.ceil(seconds * 1000)) + 1000


class RedisCredentials(CredentialStore):
    TOKENS = PREFIX + "cred:tokens"
    # hash → station, so a talk-back listener (who presents only its token) is found without
    # a scan. An index entry is only a hint: a lookup believes it only if TOKENS agrees, so a
    # stale entry (a rotation racing another) can never authenticate anybody.
    TOKEN_OWNERS = PREFIX + "cred:token_owners"
    OPERATORS = PREFIX + "cred:operators"
    SESSIONS = PREFIX + "cred:sessions"  # zset: session id → expiry
    SESSION_OWNERS = PREFIX + "cred:session_owners"  # hash: session id → operator
    SESSIONS_OF = PREFIX + "cred:sessions_of:"  # + operator: zset of their session ids
    LOGIN_ATTEMPTS = PREFIX + "cred:login:attempts:"  # + key
    LOGIN_LOCK = PREFIX + "cred:login:lock:"  # + key
    AUDIT = PREFIX + "audit:log"
    AUDIT_SEQ = PREFIX + "audit:seq"
    LEGACY_AUDIT = PREFIX + "audit"  # the list older hubs wrote; moved into AUDIT on first use

    def __init__(self, link: RedisLink) -> None:
        self.link = link.hold()
        self.client = link.client
        self._tokens: dict[str, str | None] = {}  # station → hash, as last read
        self._audit_add = self.client.register_script(_AUDIT_ADD)
        self._audit_page = self.client.register_script(_AUDIT_PAGE)
        self._revoke_session = self.client.register_script(_REVOKE_SESSION)
        self._revoke_operator = self.client.register_script(_REVOKE_OPERATOR)
        self._sweep_sessions = self.client.register_script(_SWEEP_SESSIONS)
        self._count_attempt = self.client.register_script(_COUNT_ATTEMPT)
        self._lock = self.client.register_script(_LOCK)

    @classmethod
    def from_url(cls, url: str) -> RedisCredentials:
        """A store with its own client (the CLI's); close it when done."""
        return cls(RedisLink(url))

    def _unavailable(self, exc: BaseException) -> Unavailable:
        self.link.lost(exc)
        return Unavailable("credential store unavailable (redis)", retry_after=5.0)

    @staticmethod
    def _session_key(session_id: str) -> str:
        return f"{PREFIX}cred:session:{session_id}"

    async def set_token_hash(self, station: str, token_hash: str) -> None:
        try:
            previous = await self.link.bounded(self.client.hget(self.TOKENS, station))
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(self.TOKENS, station, token_hash)
                pipe.hset(self.TOKEN_OWNERS, token_hash, station)
                if previous and text(previous) != token_hash:
                    pipe.hdel(self.TOKEN_OWNERS, text(previous))
                await self.link.bounded(pipe.execute())
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        self._tokens[station] = token_hash

    async def station_for_token_hash(self, token_hash: str) -> str | None:
        if self.link.healthy:
            try:
                owner = await self.link.bounded(self.client.hget(self.TOKEN_OWNERS, token_hash))
                if owner is None:  # tokens minted before the index existed: look once, then index
                    stored = await self.link.bounded(self.client.hgetall(self.TOKENS))
                    self._tokens.update({text(s): text(h) for s, h in stored.items()})
                    owner = next((s for s, h in stored.items() if text(h) == token_hash), None)
                    if owner is not None:
                        await self.link.bounded(self.client.hset(self.TOKEN_OWNERS, token_hash, owner))
                if owner is not None:
                    await self.token_hashes([text(owner)])  # refreshes the cache: is it still current?
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
        # Answered from the cache, which the lines above refreshed (or, with Redis away, the
        # last hashes read): a station whose current token is this one.
        return next((s for s, h in self._tokens.items() if h == token_hash), None)

    async def token_hash(self, station: str) -> str | None:
        return (await self.token_hashes([station]))[station]

    async def token_hashes(self, stations: list[str]) -> dict[str, str | None]:
        if self.link.healthy and stations:
            try:
                values = await self.link.bounded(self.client.hmget(self.TOKENS, stations))
                self._tokens.update({s: text(v) if v else None for s, v in zip(stations, values, strict=True)})
            except REDIS_ERRORS as exc:
                self.link.lost(exc)
        if not self.link.healthy and any(s not in self._tokens for s in stations):
            raise Unavailable("credential store unavailable (redis)", retry_after=5.0)
        return {station: self._tokens.get(station) for station in stations}

    async def set_operator(self, name: str, password_hash: str) -> None:
        try:
            await self.link.bounded(self.client.hset(self.OPERATORS, name, password_hash))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def operator_hash(self, name: str) -> str | None:
        try:
            value = await self.link.bounded(self.client.hget(self.OPERATORS, name))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        return text(value) if value else None

    async def operators(self) -> list[str]:
        try:
            return sorted(text(name) for name in await self.link.bounded(self.client.hkeys(self.OPERATORS)))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def save_session(self, session_id: str, operator: str, expires: float) -> None:
        key = self._session_key(session_id)
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping={"operator": operator, "expires": repr(expires)})
                pipe.expireat(key, math.ceil(expires))
                pipe.zadd(self.SESSIONS, {session_id: expires})
                pipe.hset(self.SESSION_OWNERS, session_id, operator)
                pipe.zadd(self.SESSIONS_OF + operator, {session_id: expires})
                await self.link.bounded(pipe.execute())
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def session(self, session_id: str) -> tuple[str, float] | None:
        try:
            found = await self.link.bounded(self.client.hgetall(self._session_key(session_id)))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        if not found:
            return None
        return text(found[b"operator"]), float(found[b"expires"])

    async def sessions(self, session_ids: list[str]) -> dict[str, tuple[str, float] | None]:
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for session_id in session_ids:
                    pipe.hgetall(self._session_key(session_id))
                found = await self.link.bounded(pipe.execute())
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        return {session_id: (text(row[b"operator"]), float(row[b"expires"])) if row else None
                for session_id, row in zip(session_ids, found, strict=True)}

    async def _sessions_script(self, script: Any, *args: str) -> int:
        keys = [self.SESSIONS, self.SESSION_OWNERS, self.OPERATORS]
        try:
            return int(await self.link.bounded(script(keys=keys, args=[self._session_key(""), self.SESSIONS_OF,
                                                                       *args])))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def revoke_session(self, session_id: str) -> None:
        await self._sessions_script(self._revoke_session, session_id)

    async def revoke_operator_sessions(self, name: str) -> int:
        return await self._sessions_script(self._revoke_operator, name, "revoke")

    async def remove_operator(self, name: str) -> bool:
        return await self._sessions_script(self._revoke_operator, name, "remove") > 0

    async def sweep_expired(self, now: float) -> int:
        # Login counters and locks carry TTLs: Redis forgets them by itself.
        return await self._sessions_script(self._sweep_sessions, repr(now))

    async def count_login_attempt(self, key: str, now: float, window_s: float) -> int:
        args: list[str | int] = [repr(now), repr(now + window_s), _ttl_ms(window_s)]
        try:
            return int(await self.link.bounded(self._count_attempt(keys=[self.LOGIN_ATTEMPTS + key], args=args)))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def lock_login(self, key: str, until: float, now: float) -> None:
        try:
            await self.link.bounded(self._lock(keys=[self.LOGIN_LOCK + key], args=[repr(until), _ttl_ms(until - now)]))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def login_locks(self, keys: list[str], now: float) -> dict[str, float]:
        try:
            values = await self.link.bounded(self.client.mget([self.LOGIN_LOCK + key for key in keys]))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        locks = {key: float(value) for key, value in zip(keys, values, strict=True) if value is not None}
        return {key: until for key, until in locks.items() if until > now}

    async def clear_login(self, key: str) -> None:
        try:
            await self.link.bounded(self.client.delete(self.LOGIN_ATTEMPTS + key, self.LOGIN_LOCK + key))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def audit(self, at: float, actor: str, action: str, detail: str) -> None:
        entry = json.dumps({"at": at, "actor": actor, "action": action, "detail": detail})
        keys = [self.AUDIT, self.AUDIT_SEQ, self.LEGACY_AUDIT]
        try:
            await self.link.bounded(self._audit_add(keys=keys, args=[entry, AUDIT_KEEP]))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def audit_log(self, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
        keys = [self.AUDIT, self.AUDIT_SEQ, self.LEGACY_AUDIT]
        top = "+inf" if before is None else f"({int(before)}"
        try:
            members = await self.link.bounded(self._audit_page(keys=keys, args=[top, limit]))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        entries = []
        for member in members:
            number, _, entry = text(member).partition(" ")
            entries.append({"id": int(number), **json.loads(entry)})
        return entries

    async def close(self) -> None:
        await self.link.release()
