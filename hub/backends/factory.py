"""The one place that reads ``hub.backend``: single node or cluster, decided once from config.

Like LiveKit's ``CreateRouter``, :func:`build_backend` returns a local backend without Redis
and a shared one with it; the rest of the hub asks the :class:`Backend` it got (its parts, and
:attr:`Backend.shared`), never which kind it is.

* ``memory`` — an in-memory bus and presence store, credentials, ledger, questions and the recordings' index in the
  SQLite file under ``data_dir``, a :class:`LocalRouter`. Nothing is shared with another process.
* ``redis`` — bus, presence, credentials, ledger, questions and recordings on one :class:`RedisLink`, and a
  :class:`RedisRouter` (node registry, node loss, recovery, WHEP routing). Every node sees the
  same state; a station may move between nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.backends.base import Bus, CredentialStore, PresenceStore, QuestionStore, RecordingStore
from hub.backends.memory import MemoryBus, MemoryPresenceStore
from hub.backends.nodes import LocalRouter, RedisRouter, Router
from hub.backends.redis import RedisBus, RedisPresenceStore
from hub.backends.redis_credentials import RedisCredentials
from hub.backends.redis_link import RedisLink
from hub.backends.redis_questions import RedisQuestions
from hub.backends.redis_recordings import RedisRecordings
from hub.backends.sqlite import SqliteCredentials
from hub.backends.sqlite_questions import SqliteQuestions
from hub.backends.sqlite_recordings import SqliteRecordings
from hub.ledger.base import Ledger
from hub.ledger.redis import RedisLedger
from hub.ledger.sqlite import SqliteLedger
from hub.settings import Settings


@dataclass(frozen=True)
class Backend:
    """What a hub node keeps its state in and how it finds the other nodes."""

    bus: Bus
    presence: PresenceStore
    credentials: CredentialStore
    ledger: Ledger
    router: Router
    questions: QuestionStore  # citizens' questions, votes, bans, slow mode (docs/questions.md)
    recordings: RecordingStore  # the recordings' index (docs/recordings.md)
    # State is shared across nodes: a station may be held by another node, so a connection
    # here replaces one there, and only one node may announce the stations nobody holds.
    shared: bool


def _shared(settings: Settings) -> bool:
    return settings.hub.backend == "redis"  # the only read of the kind; settings validates it


def _database(settings: Settings) -> Path:
    return settings.data_path / "jaga.db"


def build_backend(settings: Settings, public_url: Callable[[], str],
                  clock: Callable[[], float] = time.time) -> Backend:
    """The parts of one node. ``public_url`` is read at every heartbeat (with ``--port 0`` the
    real port is known only once the server listens)."""
    if not _shared(settings):
        database = _database(settings)
        return Backend(MemoryBus(), MemoryPresenceStore(), SqliteCredentials(database),
                       SqliteLedger(database, settings.node_id), LocalRouter(), SqliteQuestions(database),
                       SqliteRecordings(database), shared=False)
    link = RedisLink(settings.hub.redis_url)  # one client for every part (see hub.backends.redis)
    bus = RedisBus(link)
    presence = RedisPresenceStore(link, bus)
    return Backend(bus, presence, RedisCredentials(link), RedisLedger(link, settings.node_id),
                   RedisRouter(bus, presence, settings.node_id, settings.hub.node_ttl_s, public_url, clock),
                   RedisQuestions(link), RedisRecordings(link), shared=True)


def build_credentials(settings: Settings) -> CredentialStore:
    """Just the credential store, with its own connection (the CLI's); close it when done."""
    if not _shared(settings):
        return SqliteCredentials(_database(settings))
    return RedisCredentials.from_url(settings.hub.redis_url)
