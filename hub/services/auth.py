"""Who is asking: station tokens, operator passwords, sessions, CSRF, login throttling.

* Station tokens are 256-bit random strings; only their SHA-256 is stored (a slow hash adds
  nothing to a secret with that much entropy) and they are compared in constant time.
* Operator passwords are stored with scrypt (:mod:`hub.services.passwords`), hashed in a
  small, bounded thread pool, never on the event loop.
* A login creates a server-side session (so logout really ends it on every node). The cookie
  carries the session id and an HMAC of it; a second, script-readable cookie carries the
  CSRF token, which state-changing operator requests echo in ``X-CSRF-Token``.
* Attempts are counted per username and address and, with a gentler back-off, per username
  (:mod:`hub.core.login_throttle`); the counters live in the credential store, so every node
  and a restarted hub share them. Every refused or failed attempt is audited.
* A new password, a removed operator or ``operators revoke`` ends the operator's sessions in
  the store; :mod:`hub.services.operator_access` then closes what they held open.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, Protocol

from hub.backends.base import CredentialStore
from hub.core.login_throttle import LoginThrottle
from hub.errors import Forbidden, NotAuthenticated, RateLimited, Unavailable
from hub.services.passwords import PasswordHasher, hash_password, needs_rehash, password_matches
from hub.settings import AuthSettings

__all__ = ["CSRF_COOKIE", "CSRF_HEADER", "SESSION_COOKIE", "AuthService", "hash_password", "hash_token",
           "mint_token", "password_matches", "set_operator_password", "token_matches"]

SESSION_COOKIE = "jaga_session"
CSRF_COOKIE = "jaga_csrf"
CSRF_HEADER = "x-csrf-token"


class Connection(Protocol):
    """What the request helpers read of a request or WebSocket (starlette's fit; no import of it here)."""

    @property
    def scope(self) -> MutableMapping[str, Any]: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


def mint_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(hash_token(token), stored)


async def set_operator_password(store: CredentialStore, name: str, password_hash: str) -> int:
    """Add an operator or give them a new password; a new password ends their sessions (an
    old cookie must not outlive the password it was issued for). How many sessions ended."""
    await store.set_operator(name, password_hash)
    return await store.revoke_operator_sessions(name)


def _bytes(text: str) -> bytes:
    # compare_digest on str accepts ASCII only (a non-ASCII cookie or header was a 500).
    return text.encode("utf-8", "replace")


class AuthService:
    def __init__(self, store: CredentialStore, settings: AuthSettings, secret: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self._secret = secret
        self._clock = clock
        self.throttle = LoginThrottle(settings.login_attempts, settings.lockout_s, settings.user_attempts,
                                      settings.user_backoff_max_s)
        self.passwords = PasswordHasher(settings.password_workers, settings.password_queue)

    # Stations

    async def check_station_token(self, station_id: str, token: str) -> bool:
        return token_matches(token, await self.store.token_hash(station_id))

    async def station_for_token(self, token: str) -> str | None:
        return await self.store.station_for_token_hash(hash_token(token))

    async def revoked(self, tokens: dict[str, str]) -> list[str]:
        """Of ``{station: token hash it authenticated with}``, the stations whose token has
        since been rotated or removed."""
        current = await self.store.token_hashes(list(tokens))
        return [station for station, used in tokens.items() if current.get(station) != used]

    async def rotate_token(self, station_id: str) -> str:
        token = mint_token()
        await self.store.set_token_hash(station_id, hash_token(token))
        return token

    # Operators

    async def add_operator(self, name: str, password: str) -> None:
        """Add an operator or set a new password (which ends their sessions)."""
        await set_operator_password(self.store, name, await self.passwords.hash(password))

    async def login(self, username: str, password: str, address: str) -> tuple[str, str]:
        """Return (session cookie value, csrf token) or raise NotAuthenticated / RateLimited
        (locked out) / Unavailable (the password pool is full, or the store is away)."""
        now = self._clock()
        store, throttle = self.store, self.throttle
        pair, user = throttle.keys(username, address)
        retry_after = throttle.retry_after(await store.login_locks([pair, user], now), now)
        if retry_after is None:
            pair_count = await store.count_login_attempt(pair, now, self.settings.lockout_s)
            # Past the limit: raced the lock an earlier attempt set; not counted for the name.
            user_count = 0 if throttle.over_limit(pair_count) else \
                await store.count_login_attempt(user, now, self.settings.lockout_s)
            locks = throttle.locks_after(pair, pair_count, user, user_count, now)
            for key, until in locks.items():
                await store.lock_login(key, until, now)
            if throttle.over_limit(pair_count):
                retry_after = throttle.retry_after(locks, now)
        if retry_after is not None:
            await store.audit(now, f"anon@{address}", "login.refused", username[:64])
            raise RateLimited("too many login attempts; try again later", retry_after=retry_after)
        stored = await store.operator_hash(username)
        try:
            matches = await self.passwords.matches(password, stored)
        except Unavailable:
            await store.audit(now, f"anon@{address}", "login.busy", username[:64])
            raise
        if not matches:
            await store.audit(now, f"anon@{address}", "login.failed", username[:64])
            raise NotAuthenticated("wrong username or password")
        assert stored is not None
        await store.clear_login(pair)  # this address is forgiven; the name's counter runs on
        if needs_rehash(stored):
            await self._rehash(username, password)
        session_id = secrets.token_urlsafe(24)
        await store.save_session(session_id, username, now + self.settings.session_hours * 3600)
        await store.audit(now, username, "login", address)
        return f"{session_id}.{self._sign(session_id)}", self.csrf_token(session_id)

    async def _rehash(self, name: str, password: str) -> None:
        """Store the password again at today's cost (same password: sessions stay)."""
        try:
            await self.store.set_operator(name, await self.passwords.hash(password))
        except Unavailable:
            pass  # the pool is busy: the next login upgrades it

    async def logout(self, cookie: str | None) -> None:
        session_id = self._verified_session_id(cookie)
        if session_id:
            await self.store.revoke_session(session_id)

    async def resolve_session(self, cookie: str | None) -> tuple[str, str] | None:
        """(operator name, session id) for a valid, unexpired session cookie; else None.
        An expired session found here is deleted (the timer's sweep catches the rest)."""
        session_id = self._verified_session_id(cookie)
        if not session_id:
            return None
        found = await self.store.session(session_id)
        if found is not None and found[1] <= self._clock():
            await self.store.revoke_session(session_id)
            return None
        return (found[0], session_id) if found else None

    async def live_sessions(self, session_ids: list[str]) -> set[str]:
        """Of ``session_ids``, those still valid (not logged out, revoked or expired)."""
        now = self._clock()
        found = await self.store.sessions(session_ids)
        return {session_id for session_id, row in found.items() if row is not None and row[1] > now}

    async def sweep(self) -> int:
        return await self.store.sweep_expired(self._clock())

    def csrf_token(self, session_id: str) -> str:
        return self._sign("csrf:" + session_id)

    def check_csrf(self, session_id: str, presented: str | None) -> None:
        if not presented or not hmac.compare_digest(_bytes(presented), _bytes(self.csrf_token(session_id))):
            raise Forbidden("missing or wrong CSRF token", code="csrf")

    def _sign(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]

    def _verified_session_id(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        session_id, signature = cookie.rsplit(".", 1)
        return session_id if hmac.compare_digest(_bytes(signature), _bytes(self._sign(session_id))) else None

    # Request helpers (the session middleware stores what it resolved in the scope)

    @staticmethod
    def operator_for(request: Connection) -> str | None:
        operator: str | None = request.scope.get("jaga.operator")  # set by the session middleware
        return operator

    def has_csrf(self, request: Connection) -> bool:
        """The request echoes its session's CSRF token (False without a session)."""
        session_id = request.scope.get("jaga.session")
        presented = request.headers.get(CSRF_HEADER)
        return bool(session_id and presented and
                    hmac.compare_digest(_bytes(presented), _bytes(self.csrf_token(session_id))))

    def require_operator(self, request: Connection, *, csrf: bool = False) -> str:
        operator = self.operator_for(request)
        if operator is None:
            raise NotAuthenticated("operator login required")
        if csrf:
            self.check_csrf(request.scope["jaga.session"], request.headers.get(CSRF_HEADER))
        return operator

    def close(self) -> None:
        self.passwords.close()
