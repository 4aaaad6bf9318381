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


class RedisCredentials(CredentialStore):
    TOKENS = PREFIX + "cred:tokens"
    OPERATORS = PREFIX + "cred:operators"
    AUDIT = PREFIX + "audit"

    def __init__(self, link: RedisLink) -> None:
        self.link = link.hold()
        self.client = link.client
        self._tokens: dict[str, str | None] = {}  # station → hash, as last read

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
            await self.link.bounded(self.client.hset(self.TOKENS, station, token_hash))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        self._tokens[station] = token_hash

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

    async def revoke_session(self, session_id: str) -> None:
        try:
            await self.link.bounded(self.client.delete(self._session_key(session_id)))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def audit(self, at: float, actor: str, action: str, detail: str) -> None:
        entry = json.dumps({"at": at, "actor": actor, "action": action, "detail": detail})
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.lpush(self.AUDIT, entry)
                pipe.ltrim(self.AUDIT, 0, AUDIT_KEEP - 1)
                await self.link.bounded(pipe.execute())
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    async def audit_log(self, limit: int = 200) -> list[dict[str, Any]]:
        try:
            entries = await self.link.bounded(self.client.lrange(self.AUDIT, 0, limit - 1))
        except REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        return [json.loads(entry) for entry in entries]

    async def close(self) -> None:
        await self.link.release()
