"""The attendance ledger: every presence transition, durably, as intervals.

A station's time is a sequence of intervals ``(station, state, start, end, end_reason)`` for
the states online, live and reconnecting; offline time is the gaps. A transition closes the
station's open interval and opens the next one in one write, which completes before the
transition is announced to anyone.

Crash safety: every ``checkpoint_s`` the hub stamps all open intervals with the current time.
On restart, intervals still open are closed at their last stamp (reason ``crash``), so a
crash loses at most one checkpoint period.

When the store cannot write (disk full, read-only, Redis gone), :class:`BufferedLedger`
keeps the writes in order in memory, reports itself unhealthy, and replays them on the next
checkpoint that succeeds: presence keeps working and nothing is lost or doubled.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

from hub.core.attendance import Interval
from hub.errors import LedgerUnavailable

__all__ = ["Ledger", "BufferedLedger", "Interval", "LedgerWrite"]


@dataclass(frozen=True)
class LedgerWrite:
    """One ordered write: an interval change or an activity change."""

    kind: str  # "transition" | "activity"
    station: str
    state: str | None  # next presence state (None/offline closes only); for activities, the title or None
    at: float
    reason: str


class Ledger(ABC):
    @abstractmethod
    async def apply(self, write: LedgerWrite) -> None:
        """Make one write durable or raise :class:`LedgerUnavailable`."""

    @abstractmethod
    async def checkpoint(self, now: float) -> None: ...

    @abstractmethod
    async def recover(self, node: str | None = None) -> int:
        """Close intervals left open by a crash at their last checkpoint; return how many."""

    @abstractmethod
    async def close_all(self, now: float, reason: str, node: str | None = None) -> None: ...

    @abstractmethod
    async def intervals(self, start: float, end: float) -> list[Interval]: ...

    @abstractmethod
    async def activities(self, start: float, end: float) -> list[dict[str, Any]]: ...

    async def close(self) -> None:
        return None


class BufferedLedger:
    """Wraps a ledger; keeps writes in order while the store is unavailable."""

    def __init__(self, inner: Ledger, limit: int = 1_000_000) -> None:
        self.inner = inner
        self.pending: deque[LedgerWrite] = deque()
        self.limit = limit
        self.last_error = ""

    @property
    def healthy(self) -> bool:
        return not self.pending

    async def apply(self, write: LedgerWrite) -> None:
        if self.pending:
            self._hold(write)
            return
        try:
            await self.inner.apply(write)
        except LedgerUnavailable as exc:
            self.last_error = str(exc)
            self._hold(write)

    def _hold(self, write: LedgerWrite) -> None:
        if len(self.pending) >= self.limit:
            raise LedgerUnavailable(f"ledger buffer full ({self.limit} writes): {self.last_error}")
        self.pending.append(write)

    async def flush(self) -> bool:
        while self.pending:
            try:
                await self.inner.apply(self.pending[0])
            except LedgerUnavailable as exc:
                self.last_error = str(exc)
                return False
            self.pending.popleft()
        self.last_error = ""
        return True

    async def checkpoint(self, now: float) -> bool:
        """Flush what is held, then stamp open intervals; False while the store is down."""
        if not await self.flush():
            return False
        try:
            await self.inner.checkpoint(now)
        except LedgerUnavailable as exc:
            self.last_error = str(exc)
            return False
        return True
