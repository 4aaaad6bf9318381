"""The ledger keeps every write, in order, through a store outage."""

from __future__ import annotations

from pathlib import Path

from hub.core.attendance import Interval
from hub.errors import LedgerUnavailable
from hub.ledger.base import BufferedLedger, LedgerWrite
from hub.ledger.sqlite import SqliteLedger


class FlakyLedger(SqliteLedger):
    """A real SQLite ledger whose disk can be 'full'."""

    full = False

    async def apply(self, write: LedgerWrite) -> None:
        if self.full:
            raise LedgerUnavailable("database or disk is full")
        await super().apply(write)

    async def checkpoint(self, now: float) -> None:
        if self.full:
            raise LedgerUnavailable("database or disk is full")
        await super().checkpoint(now)


async def test_writes_are_held_in_order_and_replayed_once(tmp_path: Path) -> None:
    inner = FlakyLedger(tmp_path / "jaga.db")
    ledger = BufferedLedger(inner)
    await ledger.apply(LedgerWrite("transition", "s", "online", 10, "hello"))
    inner.full = True
    await ledger.apply(LedgerWrite("transition", "s", "live", 20, "published"))
    await ledger.apply(LedgerWrite("transition", "s", None, 30, "closed"))
    assert not ledger.healthy and len(ledger.pending) == 2
    assert not await ledger.checkpoint(35)
    assert "disk is full" in ledger.last_error
    inner.full = False
    assert await ledger.checkpoint(40)
    assert ledger.healthy
    assert await inner.intervals(0, 100) == [
        Interval("s", "online", 10, 20, "published"),
        Interval("s", "live", 20, 30, "closed"),
    ]
