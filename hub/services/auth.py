"""Who is asking: station tokens, operator passwords, sessions, CSRF, login throttling.

* Station tokens are 256-bit random strings; only their SHA-256 is stored (a slow hash adds
  nothing to a secret with that much entropy) and they are compared in constant time.
* Operator passwords are stored with scrypt (n=2**14, r=8, p=1) and a per-password salt.
* A login creates a server-side session (so logout really ends it on every node). The cookie
  carries the session id and an HMAC of it; a second, script-readable cookie carries the
  CSRF token, which state-changing operator requests echo in ``X-CSRF-Token``.
* Wrong passwords are counted per username and per address; past the limit both are locked
  out for ``lockout_s``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from hub.backends.base import CredentialStore
from hub.errors import Forbidden, NotAuthenticated, RateLimited
from hub.settings import AuthSettings

SESSION_COOKIE = "jaga_session"
CSRF_COOKIE = "jaga_csrf"
CSRF_HEADER = "x-csrf-token"


class Connection(Protocol):
    """What the request helpers read of a request or WebSocket (starlette's fit; no import of it here)."""

    @property
    def scope(self) -> MutableMapping[str, Any]: ...

    @property
    def headers(self) -> Mapping[str, str]: ...


_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def mint_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return "sha256$" + hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored: str | None) -> bool:
    return stored is not None and hmac.compare_digest(hash_token(token), stored)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **_SCRYPT, salt=base64.b64encode(salt).decode(), digest=base64.b64encode(digest).decode()
    )


def password_matches(password: str, stored: str | None) -> bool:
    if stored is None:
        # Spend the same time as a real check so a missing user is not told apart.
        hashlib.scrypt(password.encode(), salt=b"0" * 16, dklen=32, **_SCRYPT)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=len(expected),
                                n=int(n), r=int(r), p=int(p))
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class LoginThrottle:
    """Counts wrong passwords per key (username, address); pure, with an injected clock."""

    def __init__(self, limit: int, lockout_s: float) -> None:
        self.limit = limit
        self.lockout_s = lockout_s
        self._failures: dict[str, _Failures] = {}

    def check(self, keys: list[str], now: float) -> None:
        for key in keys:
            entry = self._failures.get(key)
            if entry and entry.locked_until > now:
                raise RateLimited("too many wrong passwords; try again later", retry_after=entry.locked_until - now)

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            entry = self._failures.setdefault(key, _Failures())
            if entry.locked_until and entry.locked_until <= now:
                entry.count = 0
                entry.locked_until = 0.0
            entry.count += 1
            if entry.count >= self.limit:
                entry.locked_until = now + self.lockout_s

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)


class AuthService:
    def __init__(self, store: CredentialStore, settings: AuthSettings, secret: bytes,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.settings = settings
        self._secret = secret
        self._clock = clock
        self.throttle = LoginThrottle(settings.login_attempts, settings.lockout_s)

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
        await self.store.set_operator(name, hash_password(password))

    async def login(self, username: str, password: str, address: str) -> tuple[str, str]:
        """Return (session cookie value, csrf token) or raise NotAuthenticated / RateLimited."""
        now = self._clock()
        keys = [f"user:{username.lower()}", f"addr:{address}"]
        self.throttle.check(keys, now)
        if not password_matches(password, await self.store.operator_hash(username)):
            self.throttle.failed(keys, now)
            await self.store.audit(now, f"anon@{address}", "login.failed", username[:64])
            raise NotAuthenticated("wrong username or password")
        self.throttle.succeeded(keys)
        session_id = secrets.token_urlsafe(24)
        await self.store.save_session(session_id, username, now + self.settings.session_hours * 3600)
        await self.store.audit(now, username, "login", address)
        return f"{session_id}.{self._sign(session_id)}", self.csrf_token(session_id)

    async def logout(self, cookie: str | None) -> None:
        session_id = self._verified_session_id(cookie)
        if session_id:
            await self.store.revoke_session(session_id)

    async def resolve_session(self, cookie: str | None) -> tuple[str, str] | None:
        """(operator name, session id) for a valid, unexpired session cookie; else None."""
        session_id = self._verified_session_id(cookie)
        if not session_id:
            return None
        found = await self.store.session(session_id)
        if found is None or found[1] < self._clock():
            return None
        return found[0], session_id

    def csrf_token(self, session_id: str) -> str:
        return self._sign("csrf:" + session_id)

    def check_csrf(self, session_id: str, presented: str | None) -> None:
        if not presented or not hmac.compare_digest(presented, self.csrf_token(session_id)):
            raise Forbidden("missing or wrong CSRF token", code="csrf")

    def _sign(self, value: str) -> str:
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()[:32]

    def _verified_session_id(self, cookie: str | None) -> str | None:
        if not cookie or "." not in cookie:
            return None
        session_id, signature = cookie.rsplit(".", 1)
        return session_id if hmac.compare_digest(signature, self._sign(session_id)) else None

    # Request helpers (the session middleware stores what it resolved in the scope)

    @staticmethod
    def operator_for(request: Connection) -> str | None:
        operator: str | None = request.scope.get("jaga.operator")  # set by the session middleware
        return operator

    def require_operator(self, request: Connection, *, csrf: bool = False) -> str:
        operator = self.operator_for(request)
        if operator is None:
            raise NotAuthenticated("operator login required")
        if csrf:
            self.check_csrf(request.scope["jaga.session"], request.headers.get(CSRF_HEADER))
        return operator
