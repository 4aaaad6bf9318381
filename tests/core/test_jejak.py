"""The jejak planner: one picture per slot, the first taken in it, never the same picture again."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from hub.core.jejak import JejakPlanner, Keep, expired_days

WIB = ZoneInfo("Asia/Jakarta")


def wib(hour: int, minute: int, second: float = 0, day: int = 2) -> float:
    """A unix time at the given WIB clock on 2026-03-<day>."""
    return dt.datetime(2026, 3, day, hour, minute, int(second), tzinfo=WIB).timestamp() + second % 1


def run(planner: JejakPlanner, thumbnails: dict[str, float], now: float) -> list[Keep]:
    """Plan and mark every picture as saved (as the service does after a good write)."""
    keeps = planner.plan(thumbnails, now)
    for keep in keeps:
        planner.kept(keep)
    return keeps


def test_first_thumbnail_of_each_slot_is_kept_named_by_when_it_was_taken() -> None:
    planner = JejakPlanner(5)
    taken = wib(8, 0, 4)
    (keep,) = run(planner, {"s": taken}, now=taken + 0.5)
    assert (keep.day, keep.hhmm, keep.time, keep.at) == ("2026-03-02", "0800", "08:00", taken)
    # Newer thumbnails in the same slot are not kept …
    for second in (14, 24, 294):
        assert run(planner, {"s": wib(8, 0) + second}, now=wib(8, 0) + second + 1) == []
    # … the first one of the next slot is, with its own minute.
    (keep,) = run(planner, {"s": wib(8, 5, 4)}, now=wib(8, 5, 5))
    assert keep.hhmm == "0805"


def test_the_same_picture_is_not_kept_again_after_the_station_went_away() -> None:
    planner = JejakPlanner(5)
    last = wib(8, 3, 10)  # the station's last thumbnail, then it went offline
    assert len(run(planner, {"s": last}, now=last)) == 1
    for minute in (5, 10, 15, 20):  # the hub still holds that picture: nothing more is kept
        assert run(planner, {"s": last}, now=wib(8, minute, 1)) == []
    back = wib(8, 17, 30)  # it came back: its new picture is kept, named 08:17
    (keep,) = run(planner, {"s": back}, now=back + 1)
    assert keep.hhmm == "0817"


def test_a_stale_thumbnail_is_not_evidence_of_a_later_time() -> None:
    planner = JejakPlanner(5)
    assert planner.plan({"s": wib(8, 0)}, now=wib(8, 5, 1)) == []  # older than a slot
    assert planner.plan({"s": wib(8, 0)}, now=wib(8, 4, 59)) != []
    assert planner.plan({"s": wib(8, 10)}, now=wib(8, 0)) == []  # from the future: a clock step


def test_stations_are_independent_and_a_failed_write_is_tried_again() -> None:
    planner = JejakPlanner(5)
    now = wib(9, 0, 20)
    keeps = planner.plan({"a": wib(9, 0, 1), "b": wib(9, 0, 2)}, now)
    assert sorted(k.station for k in keeps) == ["a", "b"]
    planner.kept(keeps[0])  # the other's write failed: not marked kept
    again = planner.plan({"a": wib(9, 0, 1), "b": wib(9, 0, 2)}, now + 1)
    assert [k.station for k in again] == [keeps[1].station]


def test_slots_follow_the_local_clock_and_day() -> None:
    planner = JejakPlanner(15)
    assert planner.slot(wib(8, 14, 59)) == ("2026-03-02", 32)
    assert planner.slot(wib(8, 15)) == ("2026-03-02", 33)
    # 23:59 WIB and 00:01 WIB the next day: different days, different slots
    (late,) = run(planner, {"s": wib(23, 59, day=2)}, now=wib(23, 59, 30, day=2))
    (early,) = run(planner, {"s": wib(0, 1, day=3)}, now=wib(0, 1, 30, day=3))
    assert (late.day, late.hhmm, early.day, early.hhmm) == ("2026-03-02", "2359", "2026-03-03", "0001")


def test_a_restarted_hub_remembers_the_slot_a_previous_process_filled() -> None:
    planner = JejakPlanner(5)
    planner.remember("s", "2026-03-02", "0801")
    assert planner.plan({"s": wib(8, 3)}, now=wib(8, 3, 1)) == []  # same slot as 08:01
    assert [k.hhmm for k in planner.plan({"s": wib(8, 5, 2)}, now=wib(8, 5, 3))] == ["0805"]
    planner.remember("s", "2026-03-02", "9999")  # not a time: ignored
    assert planner.plan({"s": wib(8, 5, 2)}, now=wib(8, 5, 3)) != []


def test_one_minute_slots_never_name_two_pictures_alike() -> None:
    planner = JejakPlanner(1)
    names = []
    at = wib(10, 0)
    while at < wib(10, 10):  # a thumbnail every 7 s, the timer every second
        names += [k.hhmm for k in run(planner, {"s": at}, now=at + 0.9)]
        at += 7
    assert names == [f"10{m:02d}" for m in range(10)]


def test_minutes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        JejakPlanner(0)


def test_expired_days_oldest_first() -> None:
    days = ["2026-03-02", "2025-12-01", "2026-02-28", "not-a-day", "2026-13-40", "2026-02-01"]
    assert expired_days(days, today="2026-03-02", retention_days=20) == ["2025-12-01", "2026-02-01"]
    assert expired_days(days, today="2026-03-02", retention_days=365) == []
    assert expired_days(days, today="2026-03-02", retention_days=0) == ["2025-12-01", "2026-02-01", "2026-02-28"]
