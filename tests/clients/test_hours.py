"""Office hours on the agent, judged by the hub's clock (clients/hours.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clients.hours import OfficeHours, ServerClock, wants_media
from hub.core.registry import Station
from hub.core.schedule import Schedule
from hub.settings import ScheduleSettings

WIB = ZoneInfo("Asia/Jakarta")
STATION = Station("35.09.01.2001", "Desa Padomasan", "desa", "Jombang", True)


def at(year: int, month: int, day: int, hour: int, minute: int = 0, second: float = 0) -> float:
    return dt.datetime(year, month, day, hour, minute, tzinfo=WIB).timestamp() + second


def hours_at(now: float, **schedule: Any) -> OfficeHours:
    """What the hub would send in welcome.schedule at ``now`` (the real describe())."""
    settings = ScheduleSettings(national_holidays=False, **schedule)
    return OfficeHours.from_welcome(Schedule(settings).describe(STATION, now))


MONDAY = (2026, 3, 2)  # a Monday


def test_on_air_inside_window_only() -> None:
    hours = hours_at(at(*MONDAY, 7))
    assert not hours.on_air(at(*MONDAY, 7, 59, 59.9))
    assert hours.on_air(at(*MONDAY, 8))
    assert hours.on_air(at(*MONDAY, 14, 59, 59.9))
    assert not hours.on_air(at(*MONDAY, 15))  # half-open window


def test_next_edge_is_window_start_then_end_then_next_day() -> None:
    hours = hours_at(at(*MONDAY, 7))
    assert hours.next_edge(at(*MONDAY, 7)) == at(*MONDAY, 8)
    assert hours.next_edge(at(*MONDAY, 8)) == at(*MONDAY, 15)
    assert hours.next_edge(at(*MONDAY, 15)) == at(2026, 3, 3, 0)  # local midnight
    assert hours.next_edge(at(2026, 3, 3, 0)) == at(2026, 3, 3, 8)  # Tuesday computed from rules


def test_weekend_and_extra_holidays_are_off() -> None:
    friday = at(2026, 3, 6, 9)
    hours = hours_at(friday, extra_holidays=("2026-03-09",))
    assert hours.on_air(friday)
    assert not hours.on_air(at(2026, 3, 7, 9))  # Saturday
    assert not hours.on_air(at(2026, 3, 9, 9))  # the extra holiday (a Monday)
    assert hours.on_air(at(2026, 3, 10, 9))
    assert hours.day_off(dt.date(2026, 3, 9)) == "extra holiday"
    # From Friday 15:00 the next edges skip the whole weekend and the holiday, day by day.
    edge = hours.next_edge(at(2026, 3, 6, 15))
    assert edge == at(2026, 3, 7, 0)


def test_server_clock_offset_corrects_a_wrong_pc_clock() -> None:
    clock = ServerClock()
    # The PC is 2 hours behind; the hello round trip took 0.2 s.
    server = at(*MONDAY, 8, 0, 30.0)
    offset = clock.update(server, sent_at=server - 7200 - 0.1, received_at=server - 7200 + 0.1)
    assert offset == pytest.approx(7200.0)
    hours = hours_at(server)
    local_now = server - 7200  # 06:00:30 on the PC
    assert not hours.on_air(local_now)
    assert hours.on_air(clock.server_now(local_now))  # but the hub says 08:00:30


def test_wants_media_combines_always_on_and_schedule() -> None:
    hours = hours_at(at(*MONDAY, 7))
    assert not wants_media(None, at(*MONDAY, 9), always_on=False)  # no schedule heard yet
    assert wants_media(None, at(*MONDAY, 3), always_on=True)
    assert wants_media(hours, at(*MONDAY, 9), always_on=False)
    assert not wants_media(hours, at(*MONDAY, 16), always_on=False)


def test_malformed_schedule_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        OfficeHours.from_welcome({"timezone": "Asia/Jakarta"})


def test_describe_today_reads_in_local_time(tmp_path: Path) -> None:
    hours = hours_at(at(*MONDAY, 7))
    assert hours.describe_today(at(*MONDAY, 9)) == "2026-03-02: 08:00-15:00 Asia/Jakarta"
    assert "libur" in hours.describe_today(at(2026, 3, 7, 9))
