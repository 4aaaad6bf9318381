"""The backend contract suite's one fixture: a ``Backend`` kit, once per backend.

Every test in ``tests/backends/`` that takes ``backend`` runs against the single-node parts
(memory bus and presence, SQLite credentials and ledger) and against Redis (a private
``redis-server``), with the same body. Redis-only behaviour (several nodes, outages) lives in
``test_redis.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hub.backends.base import Bus, CredentialStore, PresenceStore, QuestionStore, RecordingStore
from hub.ledger.base import Ledger

NODE = "node-1"


class Backend:
    """Makes each part of one backend and closes whatever it made."""

    def __init__(self, name: str, tmp_path: Path, url: str | None) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.url = url
        self._closers: list[Any] = []
        self._links: list[Any] = []

    def _link(self) -> Any:
        from hub.backends.redis_link import RedisLink

        link = RedisLink(self.url or "")
        link.hold()  # the kit's own hold, released in close()
        self._links.append(link)
        return link

    def bus(self) -> Bus:
        from hub.backends.memory import MemoryBus

        if self.name == "memory":
            bus: Bus = MemoryBus()
        else:
            from hub.backends.redis import RedisBus

            bus = RedisBus(self._link())
        self._closers.append(bus)
        return bus

    def presence(self) -> PresenceStore:
        if self.name == "memory":
            from hub.backends.memory import MemoryPresenceStore

            return MemoryPresenceStore()
        from hub.backends.redis import RedisPresenceStore

        return RedisPresenceStore(self._link())

    def credentials(self) -> CredentialStore:
        if self.name == "memory":
            from hub.backends.sqlite import SqliteCredentials

            store: CredentialStore = SqliteCredentials(self.tmp_path / "jaga.db")
        else:
            from hub.backends.redis_credentials import RedisCredentials

            store = RedisCredentials(self._link())
        self._closers.append(store)
        return store

    def ledger(self, node: str = NODE) -> Ledger:
        if self.name == "memory":
            from hub.ledger.sqlite import SqliteLedger

            ledger: Ledger = SqliteLedger(self.tmp_path / "jaga.db", node)
        else:
            from hub.ledger.redis import RedisLedger

            ledger = RedisLedger(self._link(), node)
        self._closers.append(ledger)
        return ledger

    def questions(self) -> QuestionStore:
        """A question store; another call is another instance on the same file or Redis."""
        if self.name == "memory":
            from hub.backends.sqlite_questions import SqliteQuestions

            store: QuestionStore = SqliteQuestions(self.tmp_path / "jaga.db")
        else:
            from hub.backends.redis_questions import RedisQuestions

            store = RedisQuestions(self._link())
        self._closers.append(store)
        return store

    def recordings(self) -> RecordingStore:
        """A recordings index; another call is another instance on the same file or Redis."""
        if self.name == "memory":
            from hub.backends.sqlite_recordings import SqliteRecordings

            store: RecordingStore = SqliteRecordings(self.tmp_path / "jaga.db")
        else:
            from hub.backends.redis_recordings import RedisRecordings

            store = RedisRecordings(self._link())
        self._closers.append(store)
        return store

    async def close(self) -> None:
        for part in reversed(self._closers):
            await part.close()
        for link in self._links:
            await link.release()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    kit = Backend(request.param, tmp_path, url)
    try:
        yield kit
    finally:
        await kit.close()
