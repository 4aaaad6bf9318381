"""The backend seam: what single-node and multi-node hubs differ in.

A backend is chosen once, from ``hub.backend``, by :mod:`hub.backends.factory`. It provides:

* a :class:`Bus` — publish/subscribe of *bytes* on named channels. The bytes published are
  the bytes every subscriber receives; nothing re-encodes them on the way.
* a :class:`PresenceStore` — the shared view of every station (wherever it is connected)
  and the global sequence number that orders watch events.
* a :class:`CredentialStore` — station token hashes, operator password hashes, operator
  sessions and the audit log, so every node accepts the same credentials.
* an attendance ledger (see :mod:`hub.ledger.base`);
* a router: the node registry and where a station's media is (see :mod:`hub.backends.nodes`);
* a :class:`QuestionStore` — citizens' questions, votes, bans and slow mode (docs/questions.md);
* a :class:`RecordingStore` — the index of recordings (docs/recordings.md).

Every queue is bounded. A subscriber that falls behind loses messages and is told so
(:attr:`Subscription.overflowed`); its owner resynchronises from the presence store.
"""

from __future__ import annotations

import asyncio
import builtins
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from hub.core.questions import Question


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

    @abstractmethod
    async def station_for_token_hash(self, token_hash: str) -> str | None:
        """The station whose *current* token this is (talk-back listeners send only their
        token). Abstract on purpose: a default of None once made every talk-back listener
        of a Redis cluster a 401."""

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

    async def sessions(self, session_ids: list[str]) -> dict[str, tuple[str, float] | None]:
        """Many at once (the hub re-checks the sessions its sockets use); override to batch."""
        return {session_id: await self.session(session_id) for session_id in session_ids}

    @abstractmethod
    async def revoke_operator_sessions(self, name: str) -> int:
        """End every session of operator ``name`` (on every node); how many there were."""

    @abstractmethod
    async def remove_operator(self, name: str) -> bool:
        """Remove the operator and end their sessions; False if there was no such operator."""

    @abstractmethod
    async def sweep_expired(self, now: float) -> int:
        """Delete sessions that expired by ``now`` (and stale login counters); how many sessions."""

    # Login throttling (the policy is hub.core.login_throttle; the store only counts and
    # remembers, so every node and a restarted hub see the same numbers). Keys are opaque.

    @abstractmethod
    async def count_login_attempt(self, key: str, now: float, window_s: float) -> int:
        """Count one attempt under ``key`` and return the count in its window, atomically (two
        nodes counting at once get different numbers). The window opens at the first attempt
        and lasts ``window_s``, fixed (later attempts do not extend it)."""

    @abstractmethod
    async def lock_login(self, key: str, until: float, now: float) -> None:
        """Lock ``key`` until ``until`` (a longer lock already there is kept)."""

    @abstractmethod
    async def login_locks(self, keys: list[str], now: float) -> dict[str, float]:
        """Of ``keys``, those locked at ``now``, with the time their lock ends."""

    @abstractmethod
    async def clear_login(self, key: str) -> None:
        """Forget the count and lock of ``key`` (a successful login from that address)."""

    @abstractmethod
    async def audit(self, at: float, actor: str, action: str, detail: str) -> None: ...

    @abstractmethod
    async def audit_log(self, limit: int = 200, before: int | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` entries ``{id, at, actor, action, detail}``, newest first, only those
        with an ``id`` below ``before`` when given. Ids grow with every entry, so paging with
        ``before`` = the last id seen walks the whole log even while entries are added."""

    async def close(self) -> None:
        return None


class QuestionStore(ABC):
    """Questions (:class:`hub.core.questions.Question`), one vote per device, bans and per
    station slow mode, shared by every node. The store keeps; the rules are in
    :mod:`hub.core.questions` and :class:`hub.services.questions.QuestionsService`."""

    @abstractmethod
    async def add(self, q: Question) -> None: ...

    @abstractmethod
    async def get(self, question_id: str) -> Question | None: ...

    @abstractmethod
    async def update(self, q: Question) -> None:
        """Store ``q`` over the question with its id (nothing if there is none). Every field but
        ``votes``, which only :meth:`vote` changes: ``q`` was read before the moderator acted,
        and writing its count back would take away the votes cast meanwhile."""

    @abstractmethod
    async def list(self, station: str | None, states: Sequence[str],
                   limit: int = 500) -> builtins.list[Question]:
        """Questions in ``states`` (of ``station``, or of all when None), newest first."""

    @abstractmethod
    async def count_pending(self, station: str) -> int: ...

    @abstractmethod
    async def vote(self, question_id: str, device: str) -> int | None:
        """Count ``device``'s vote, atomically; the new vote count, or None if this device
        already voted for this question (or there is no such question)."""

    @abstractmethod
    async def ban(self, kind: str, value: str, until: float) -> None:
        """Ban a sender (``kind`` "device" or "address") until ``until`` (unix seconds)."""

    @abstractmethod
    async def banned(self, device: str, address: str, now: float) -> bool:
        """Whether ``device`` or ``address`` is under a ban at ``now``."""

    @abstractmethod
    async def set_slow_mode(self, station: str, seconds: float) -> None: ...

    @abstractmethod
    async def slow_mode(self, station: str) -> float | None:
        """The station's slow mode in seconds; None = never set (the configured default)."""

    async def close(self) -> None:
        return None


RECORDING_STATES = ("recording", "finishing", "done", "failed")
OPEN_STATES = ("recording", "finishing")


@dataclass(frozen=True)
class Recording:
    """One recording of one activity (docs/recordings.md). Times are unix seconds; paths are
    relative to ``[recording] dir``."""

    id: str
    station: str
    title: str
    start: float
    end: float | None  # None while open
    duration_s: float = 0.0
    bytes: int = 0
    video_codec: str = ""
    audio_codec: str = ""
    state: str = "recording"  # "recording" | "finishing" | "done" | "failed"
    visible: bool = True  # public stations' recordings are public unless hidden
    hidden_reason: str = ""
    reason: str = "activity"  # why it was recorded: "activity" | "operator:<name>"
    parts: tuple[str, ...] = ()  # the part files (until finished)
    path: str = ""  # the finished file, "" before
    day: str = ""  # YYYY-MM-DD of ``start`` in the hub's timezone (set by the service)


class RecordingStore(ABC):
    """The recordings' index, shared by every node. Lists are newest first (``start``, then
    ``id``, both descending, so both backends order ties alike)."""

    @abstractmethod
    async def add(self, r: Recording) -> None: ...

    @abstractmethod
    async def update(self, r: Recording) -> None:
        """Store ``r`` over the recording with its id (nothing if there is none)."""

    @abstractmethod
    async def get(self, recording_id: str) -> Recording | None: ...

    @abstractmethod
    async def list(self, station: str | None = None, day: str | None = None, limit: int = 500,
                   before: float | None = None) -> builtins.list[Recording]:
        """Recordings (of ``station``, of ``day``), newest first, only those that started
        before ``before`` when given (paging: pass the last ``start`` seen)."""

    @abstractmethod
    async def oldest(self, limit: int = 500) -> builtins.list[Recording]:
        """The ``limit`` oldest recordings, oldest first (retention)."""

    @abstractmethod
    async def open_recordings(self) -> builtins.list[Recording]:
        """Those in state ``recording`` or ``finishing`` (crash recovery)."""

    @abstractmethod
    async def delete(self, recording_id: str) -> None:
        """Retention only (the service audits it)."""

    @abstractmethod
    async def total_bytes(self) -> int: ...

    async def close(self) -> None:
        return None
