"""The backend seam: what single-node and multi-node hubs differ in.

A backend is chosen once, from ``hub.backend``, by :mod:`hub.backends.factory`. It provides:

* a :class:`Bus` — publish/subscribe of *bytes* on named channels. The bytes published are
  the bytes every subscriber receives; nothing re-encodes them on the way.
* a :class:`PresenceStore` — the shared view of every station (wherever it is connected)
  and the global sequence number that orders watch events.
* a :class:`CredentialStore` — station token hashes, operator password hashes, operator
  sessions and the audit log, so every node accepts the same credentials.
* an attendance ledger (see :mod:`hub.ledger.base`);
* a router: the node registry and where a station's media is (see :mod:`hub.backends.nodes`).

Every queue is bounded. A subscriber that falls behind loses messages and is told so
(:attr:`Subscription.overflowed`); its owner resynchronises from the presence store.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any


class Subscription:
    """A bounded inbox of published frames for one local listener."""

    def __init__(self, channel: str, maxsize: int = 10_000) -> None:
        self.channel = channel
        self.overflowed = False
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize)

    def deliver(self, data: bytes) -> None:
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            self.overflowed = True

    def end(self) -> None:
        # Makes room for the end marker so a full inbox cannot block shutdown.
        while self._queue.full():
            self._queue.get_nowait()
        self._queue.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            data = await self._queue.get()
            if data is None:
                return
            yield data


class Bus(ABC):
    @abstractmethod
    async def publish(self, channel: str, data: bytes) -> None: ...

    @abstractmethod
    def subscribe(self, channel: str) -> Subscription: ...

    @abstractmethod
    def unsubscribe(self, subscription: Subscription) -> None: ...

    async def close(self) -> None:
        return None


class PresenceStore(ABC):
    """Station records (plain dicts) shared by every node, plus the event sequence."""

    @abstractmethod
    async def next_seq(self) -> int: ...

    @abstractmethod
    async def save(self, station: str, record: dict[str, Any]) -> None: ...

    @abstractmethod
    async def load_all(self) -> dict[str, dict[str, Any]]: ...

    async def claim(self, key: str, ttl_s: float) -> bool:
        """True for exactly one node per ``key`` within ``ttl_s`` (cluster-wide chores, such as
        announcing status changes of stations nobody holds). A single node always wins."""
        return True


class CredentialStore(ABC):
    @abstractmethod
    async def set_token_hash(self, station: str, token_hash: str) -> None: ...

    @abstractmethod
    async def token_hash(self, station: str) -> str | None: ...

    async def station_for_token_hash(self, token_hash: str) -> str | None:
        """The station a token belongs to (talk-back listeners send only their token)."""
        return None

    async def token_hashes(self, stations: list[str]) -> dict[str, str | None]:
        """Many at once (the hub re-checks connected stations' tokens); override to batch."""
        return {station: await self.token_hash(station) for station in stations}

    @abstractmethod
    async def set_operator(self, name: str, password_hash: str) -> None: ...

    @abstractmethod
    async def operator_hash(self, name: str) -> str | None: ...

    @abstractmethod
    async def operators(self) -> list[str]: ...

    @abstractmethod
    async def save_session(self, session_id: str, operator: str, expires: float) -> None: ...

    @abstractmethod
    async def session(self, session_id: str) -> tuple[str, float] | None: ...

    @abstractmethod
    async def revoke_session(self, session_id: str) -> None: ...

    @abstractmethod
    async def audit(self, at: float, actor: str, action: str, detail: str) -> None: ...

    @abstractmethod
    async def audit_log(self, limit: int = 200) -> list[dict[str, Any]]: ...

    async def close(self) -> None:
        return None
