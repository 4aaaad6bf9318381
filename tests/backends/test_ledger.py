"""Ledger contract: the same writes give the same intervals and activities on every backend."""

from __future__ import annotations

from hub.core.attendance import Interval
from hub.ledger.base import Ledger, LedgerWrite
from tests.backends.conftest import Backend

T0 = 1767232800.0  # 2026-01-01 09:00 WIB
DAY = 86400.0


def move(station: str, state: str | None, at: float, reason: str) -> LedgerWrite:
    return LedgerWrite("transition", station, state, at, reason)


def activity(station: str, title: str | None, at: float) -> LedgerWrite:
    return LedgerWrite("activity", station, title, at, "stop" if title is None else "start")


HISTORY = [
    move("35.09.01", "online", T0, "hello"),
    move("35.09.01", "live", T0 + 60.125, "published"),
    activity("35.09.01", "Musyawarah Desa", T0 + 61.0),
    move("opd.dinkes", "online", T0 + 100.0, "hello"),
    move("35.09.01", "reconnecting", T0 + 3600.0, "lost"),
    activity("35.09.01", None, T0 + 3600.5),
    move("35.09.01", "online", T0 + 3630.0, "hello"),
    move("35.09.01", "offline", T0 + 7200.0, "closed"),
    move("opd.dinkes", None, T0 + 7300.0, "timeout"),
    move("35.09.02", "online", T0 + DAY + 5.0, "hello"),  # the next day, still open
    activity("35.09.02", "Posyandu", T0 + DAY + 10.0),
]


async def write(ledger: Ledger, writes: list[LedgerWrite]) -> None:
    for item in writes:
        await ledger.apply(item)


async def test_transitions_become_intervals(backend: Backend) -> None:
    ledger = backend.ledger()
    await write(ledger, HISTORY)
    assert await ledger.intervals(0, 2e10) == [
        Interval("35.09.01", "online", T0, T0 + 60.125, "published"),
        Interval("35.09.01", "live", T0 + 60.125, T0 + 3600.0, "lost"),
        Interval("opd.dinkes", "online", T0 + 100.0, T0 + 7300.0, "timeout"),
        Interval("35.09.01", "reconnecting", T0 + 3600.0, T0 + 3630.0, "hello"),
        Interval("35.09.01", "online", T0 + 3630.0, T0 + 7200.0, "closed"),
        Interval("35.09.02", "online", T0 + DAY + 5.0, None, None),
    ]
    assert await ledger.activities(0, 2e10) == [
        {"station": "35.09.01", "title": "Musyawarah Desa", "start": T0 + 61.0, "end": T0 + 3600.5},
        {"station": "35.09.02", "title": "Posyandu", "start": T0 + DAY + 10.0, "end": None},
    ]


async def test_a_window_returns_what_overlaps_it(backend: Backend) -> None:
    ledger = backend.ledger()
    await write(ledger, HISTORY)
    window = await ledger.intervals(T0 + 3000.0, T0 + 3615.0)
    assert [(i.station, i.state) for i in window] == [
        ("35.09.01", "live"), ("opd.dinkes", "online"), ("35.09.01", "reconnecting")]
    assert [i.state for i in await ledger.intervals(T0 + DAY, T0 + 2 * DAY)] == ["online"]  # the open one
    assert await ledger.intervals(T0 - DAY, T0) == []  # touching the start is not overlapping
    assert [a["title"] for a in await ledger.activities(T0 + DAY, T0 + 2 * DAY)] == ["Posyandu"]


async def test_a_long_interval_is_found_on_every_day_it_spans(backend: Backend) -> None:
    ledger = backend.ledger()
    await write(ledger, [move("35.09.01", "online", T0, "hello"), move("35.09.01", None, T0 + 3 * DAY, "closed")])
    for day in range(3):
        found = await ledger.intervals(T0 + day * DAY + 10, T0 + day * DAY + 20)
        assert [(i.start, i.end) for i in found] == [(T0, T0 + 3 * DAY)]


async def test_recover_closes_open_intervals_at_their_last_checkpoint(backend: Backend) -> None:
    ledger = backend.ledger()
    await write(ledger, [move("35.09.01", "online", T0, "hello"), activity("35.09.01", "Rapat", T0 + 1)])
    await ledger.checkpoint(T0 + 50.5)
    await ledger.checkpoint(T0 + 55.5)
    assert await ledger.recover("node-1") == 1
    assert await ledger.intervals(0, 2e10) == [Interval("35.09.01", "online", T0, T0 + 55.5, "crash")]
    assert (await ledger.activities(0, 2e10))[0]["end"] == T0 + 55.5
    assert await ledger.recover("node-1") == 0


async def test_close_all_ends_every_open_interval(backend: Backend) -> None:
    ledger = backend.ledger()
    await write(ledger, HISTORY)
    await ledger.close_all(T0 + DAY + 100.0, "shutdown", "node-1")
    last = (await ledger.intervals(0, 2e10))[-1]
    assert (last.end, last.end_reason) == (T0 + DAY + 100.0, "shutdown")
    assert all(a["end"] is not None for a in await ledger.activities(0, 2e10))


async def test_a_reopened_ledger_holds_the_same_history(backend: Backend) -> None:
    await write(backend.ledger(), HISTORY)
    assert len(await backend.ledger().intervals(0, 2e10)) == 6
