"""Operator password hashes, and the bounded thread pool that computes them off the event loop.

A hash is ``scrypt$<n>$<r>$<p>$<salt>$<digest>`` (base64), so every stored hash says how it
was made: hashes from before a cost change keep verifying, and :func:`needs_rehash` tells the
login to store a new one. The cost is OWASP's current advice for scrypt (n=2**17, r=8, p=1):
128 MiB and about 0.4 s of one core per hash, which is why hashing never runs on the event
loop (it would stall every WebSocket and every forwarded packet for that long) but in
:class:`PasswordHasher`'s few threads (hashlib releases the GIL while it works).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, TypeVar

from hub.errors import Unavailable

SCRYPT: Final = {"n": 2**17, "r": 8, "p": 1}
# OpenSSL refuses scrypt above maxmem (32 MiB by default); n=2**17, r=8 needs 128 * r * n =
# 128 MiB, plus a little. Older hashes needed less and fit too.
MAX_MEM = 128 * SCRYPT["r"] * SCRYPT["n"] + 2**20
_DUMMY_SALT = b"0" * 16
T = TypeVar("T")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int = 32) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=MAX_MEM)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, **SCRYPT)
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **SCRYPT, salt=base64.b64encode(salt).decode(), digest=base64.b64encode(digest).decode()
    )


def password_matches(password: str, stored: str | None) -> bool:
    if stored is None:
        # Spend the same time as a real check so a missing user is not told apart.
        _scrypt(password, _DUMMY_SALT, **SCRYPT)
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        if scheme != "scrypt" or 128 * int(r) * int(n) > MAX_MEM:
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p), dklen=len(expected))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


def needs_rehash(stored: str) -> bool:
    """True for a hash made with other (older) parameters than :data:`SCRYPT`."""
    parts = stored.split("$")
    return len(parts) != 6 or parts[0] != "scrypt" or parts[1:4] != [str(SCRYPT[k]) for k in ("n", "r", "p")]


class PasswordHasher:
    """Hashes and checks passwords in ``workers`` threads, with at most ``queue`` more waiting.

    A login flood cannot queue unbounded work (or memory: each hash holds 128 MiB while it
    runs): past ``workers + queue`` calls in flight, :meth:`matches` and :meth:`hash` raise
    :class:`Unavailable` (503 + Retry-After) at once.
    """

    def __init__(self, workers: int, queue: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="jaga-password")
        self.capacity = workers + queue
        self.in_flight = 0

    async def matches(self, password: str, stored: str | None) -> bool:
        return await self._run(lambda: password_matches(password, stored))

    async def hash(self, password: str) -> str:
        return await self._run(lambda: hash_password(password))

    async def _run(self, work: Callable[[], T]) -> T:
        if self.in_flight >= self.capacity:
            raise Unavailable("too many logins at once; try again shortly", retry_after=1.0, code="busy")
        running = asyncio.get_running_loop().run_in_executor(self._executor, work)
        self.in_flight += 1
        running.add_done_callback(self._finished)
        # Shielded: a request that goes away leaves its hash running to the end in the pool,
        # and in_flight counts it until then, so cancelled logins cannot overfill the pool.
        return await asyncio.shield(running)

    def _finished(self, done: asyncio.Future[Any]) -> None:
        self.in_flight -= 1
        if not done.cancelled():
            done.exception()  # retrieved here too: its request may be gone

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
