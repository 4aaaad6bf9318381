"""Office hours: windows, days off, overrides, expectation, next change, wall status."""

from __future__ import annotations

import datetime as dt

import msgpack
import pytest

from hub.core.registry import Station
from hub.core.schedule import Schedule, national_holidays, wall_status
from hub.errors import ConfigError
from hub.settings import ScheduleOverride, ScheduleSettings

WIB = dt.timezone(dt.timedelta(hours=7))
DESA = Station("35.09.01.2001", "Desa Ajung", "desa", "Ajung", True)
OPD = Station("opd.diskominfo", "Diskominfo", "opd", "Kaliwates", False)
KEC = Station("35.09.01", "Kecamatan Ajung", "kecamatan", "Ajung", True)


def wib(y: int, m: int, d: int, hh: int = 0, mm: int = 0, ss: float = 0) -> float:
    return dt.datetime(y, m, d, hh, mm, tzinfo=WIB).timestamp() + ss


def day(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@pytest.fixture
def schedule() -> Schedule:
    return Schedule(ScheduleSettings())


# -- windows and dates -------------------------------------------------------------------


def test_window_is_eight_to_fifteen_wib_in_utc_epoch(schedule: Schedule) -> None:
    window = schedule.window(DESA, day("2026-08-18"))
    assert window is not None
    start, end = window
    assert start == wib(2026, 8, 18, 8)
    assert end == wib(2026, 8, 18, 15)
    assert dt.datetime.fromtimestamp(start, dt.UTC).hour == 1  # 08:00 WIB = 01:00 UTC


def test_local_date_follows_wib_not_utc(schedule: Schedule) -> None:
    # 2026-08-18 23:30 UTC is already the 19th in Jakarta
    instant = dt.datetime(2026, 8, 18, 23, 30, tzinfo=dt.UTC).timestamp()
    assert schedule.local_date(instant) == day("2026-08-19")
    assert schedule.local_date(wib(2026, 8, 19, 0, 0)) == day("2026-08-19")
    assert schedule.local_date(wib(2026, 8, 19) - 0.001) == day("2026-08-18")


def test_day_bounds_are_local_midnights(schedule: Schedule) -> None:
    assert schedule.day_bounds(day("2026-08-18")) == (wib(2026, 8, 18), wib(2026, 8, 19))


# -- days off ---------------------------------------------------------------------------


def test_workday_has_no_reason(schedule: Schedule) -> None:
    assert schedule.day_off_reason(DESA, day("2026-08-18")) is None


def test_independence_day_is_off(schedule: Schedule) -> None:
    assert schedule.day_off_reason(DESA, day("2026-08-17")) == "Independence Day"
    assert schedule.window(DESA, day("2026-08-17")) is None
    assert not schedule.expected_on(DESA, wib(2026, 8, 17, 10))


def test_idul_fitri_2026_named_even_on_a_saturday(schedule: Schedule) -> None:
    # the package puts Eid al-Fitr 2026 on Sat 21 and Sun 22 March
    assert national_holidays(2026)[day("2026-03-21")] == "Eid al-Fitr"
    assert schedule.day_off_reason(DESA, day("2026-03-21")) == "Eid al-Fitr"
    assert schedule.day_off_reason(DESA, day("2026-03-22")) == "Eid al-Fitr Second Day"


def test_idul_fitri_off_for_a_station_that_works_saturdays() -> None:
    settings = ScheduleSettings(
        kinds={"desa": ScheduleOverride(workdays=("mon", "tue", "wed", "thu", "fri", "sat"))}
    )
    schedule = Schedule(settings)
    assert schedule.window(DESA, day("2026-03-14")) is not None  # an ordinary Saturday
    assert schedule.window(DESA, day("2026-03-21")) is None


def test_cuti_bersama_is_not_a_national_holiday(schedule: Schedule) -> None:
    # Fri 2026-03-20 is an Idul Fitri joint-leave day: not in the public category
    assert schedule.day_off_reason(DESA, day("2026-03-20")) is None


def test_weekend(schedule: Schedule) -> None:
    assert schedule.day_off_reason(DESA, day("2026-08-22")) == "weekend"
    assert schedule.day_off_reason(DESA, day("2026-08-23")) == "weekend"
    assert not schedule.expected_on(DESA, wib(2026, 8, 22, 10))


def test_extra_holiday_from_config() -> None:
    schedule = Schedule(ScheduleSettings(extra_holidays=("2026-12-24",)))
    assert schedule.day_off_reason(DESA, day("2026-12-24")) == "extra holiday"
    assert schedule.day_off_reason(DESA, day("2026-12-23")) is None
    assert schedule.day_off_reason(DESA, day("2026-12-25")) == "Christmas Day"


def test_national_holidays_can_be_switched_off() -> None:
    schedule = Schedule(ScheduleSettings(national_holidays=False, extra_holidays=("2026-08-17",)))
    assert schedule.day_off_reason(DESA, day("2026-08-17")) == "extra holiday"
    assert schedule.day_off_reason(DESA, day("2026-12-25")) is None


def test_holiday_cache_covers_each_year_separately() -> None:
    assert day("2025-08-17") in national_holidays(2025)
    assert all(d.year == 2027 for d in national_holidays(2027))


# -- overrides -------------------------------------------------------------------------


def overrides() -> Schedule:
    return Schedule(
        ScheduleSettings(
            grace_minutes=15,
            kinds={"opd": ScheduleOverride(start="07:30", end="16:00", grace_minutes=5)},
            stations={
                "opd.diskominfo": ScheduleOverride(start="09:00"),
                "35.09.01": ScheduleOverride(workdays=("mon", "tue", "wed", "thu", "fri", "sat")),
            },
        )
    )


def test_kind_override_applies_to_every_station_of_that_kind() -> None:
    other_opd = Station("opd.bappeda", "Bappeda", "opd", "Kaliwates", False)
    rules = overrides().rules(other_opd)
    assert (rules.start, rules.end, rules.grace_minutes) == (dt.time(7, 30), dt.time(16), 5)
    assert overrides().rules(DESA).start == dt.time(8)


def test_station_override_wins_field_by_field() -> None:
    rules = overrides().rules(OPD)
    assert rules.start == dt.time(9)  # station
    assert rules.end == dt.time(16)  # kind
    assert rules.grace_minutes == 5  # kind
    assert rules.workdays == ("mon", "tue", "wed", "thu", "fri")  # global
    assert overrides().window(OPD, day("2026-08-18")) == (wib(2026, 8, 18, 9), wib(2026, 8, 18, 16))


def test_station_override_of_workdays() -> None:
    schedule = overrides()
    assert schedule.window(KEC, day("2026-08-22")) == (wib(2026, 8, 22, 8), wib(2026, 8, 22, 15))
    assert schedule.window(DESA, day("2026-08-22")) is None


def test_empty_workdays_override_means_never_expected() -> None:
    schedule = Schedule(ScheduleSettings(stations={DESA.id: ScheduleOverride(workdays=())}))
    assert schedule.day_off_reason(DESA, day("2026-08-18")) == "weekend"


def test_grace_zero_override_is_not_inherited_over() -> None:
    schedule = Schedule(ScheduleSettings(stations={DESA.id: ScheduleOverride(grace_minutes=0)}))
    assert schedule.rules(DESA).grace_minutes == 0


def test_resolved_start_after_end_is_a_config_error() -> None:
    schedule = Schedule(
        ScheduleSettings(
            kinds={"desa": ScheduleOverride(end="12:00")},
            stations={DESA.id: ScheduleOverride(start="13:00")},
        )
    )
    with pytest.raises(ConfigError, match=DESA.id):
        schedule.check([KEC, DESA])


# -- expectation -----------------------------------------------------------------------


def test_expected_on_is_half_open_window(schedule: Schedule) -> None:
    assert not schedule.expected_on(DESA, wib(2026, 8, 18, 7, 59, 59.999))
    assert schedule.expected_on(DESA, wib(2026, 8, 18, 8))
    assert schedule.expected_on(DESA, wib(2026, 8, 18, 14, 59, 59.999))
    assert not schedule.expected_on(DESA, wib(2026, 8, 18, 15))
    assert not schedule.expected_on(DESA, wib(2026, 8, 18, 23))


def test_next_change_walks_the_boundaries(schedule: Schedule) -> None:
    now = wib(2026, 8, 18, 3)
    assert schedule.next_change(now) == wib(2026, 8, 18, 8)
    assert schedule.next_change(wib(2026, 8, 18, 8)) == wib(2026, 8, 18, 15)
    assert schedule.next_change(wib(2026, 8, 18, 12)) == wib(2026, 8, 18, 15)
    assert schedule.next_change(wib(2026, 8, 18, 15)) == wib(2026, 8, 19)
    assert schedule.next_change(wib(2026, 8, 18, 23, 59)) == wib(2026, 8, 19)


def test_next_change_includes_override_clocks() -> None:
    schedule = overrides()
    t = wib(2026, 8, 18, 6)
    seen = []
    for _ in range(6):
        t = schedule.next_change(t)
        seen.append(dt.datetime.fromtimestamp(t, WIB).strftime("%d %H:%M"))
    assert seen == ["18 07:30", "18 08:00", "18 09:00", "18 15:00", "18 16:00", "19 00:00"]


def test_expectation_only_flips_at_next_change() -> None:
    schedule = overrides()
    stations = [DESA, OPD, KEC]
    t = wib(2026, 8, 14, 0)  # Fri, through the weekend and Independence Day
    end = wib(2026, 8, 19, 0)
    while t < end:
        change = schedule.next_change(t)
        assert change > t
        before = [schedule.expected_on(s, t) for s in stations]
        for probe in (t + 1, (t + change) / 2, change - 0.001):
            assert [schedule.expected_on(s, probe) for s in stations] == before
        t = change


# -- describe --------------------------------------------------------------------------


def test_describe_today_and_days_off(schedule: Schedule) -> None:
    now = wib(2026, 8, 14, 10)  # Friday before Independence Day
    info = schedule.describe(DESA, now)
    assert info["timezone"] == "Asia/Jakarta"
    assert info["workdays"] == ["mon", "tue", "wed", "thu", "fri"]
    assert (info["start"], info["end"], info["grace_minutes"]) == ("08:00", "15:00", 15)
    assert info["now"] == now
    assert info["today"] == {
        "date": "2026-08-14",
        "window": [wib(2026, 8, 14, 8), wib(2026, 8, 14, 15)],
        "off": None,
    }
    off = {entry["date"]: entry["reason"] for entry in info["days_off"]}
    assert off["2026-08-15"] == "weekend"
    assert off["2026-08-17"] == "Independence Day"
    assert off["2026-08-25"] == "Prophet's Birthday"
    assert "2026-08-18" not in off
    assert max(off) < "2026-10-13"  # 60 days including today
    assert msgpack.unpackb(msgpack.packb(info)) == info


def test_describe_on_a_day_off(schedule: Schedule) -> None:
    info = schedule.describe(OPD, wib(2026, 8, 17, 9))
    assert info["today"]["window"] is None
    assert info["today"]["off"] == "Independence Day"
    assert info["days_off"][0] == {"date": "2026-08-17", "reason": "Independence Day"}


# -- wall status -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected", "status"),
    [
        ("live", True, "live"),
        ("live", False, "live"),
        ("online", True, "online"),
        ("online", False, "online"),
        ("reconnecting", True, "reconnecting"),
        ("reconnecting", False, "reconnecting"),
        ("offline", True, "missing"),
        ("offline", False, "off-hours"),
    ],
)
def test_wall_status(state: str, expected: bool, status: str) -> None:
    assert wall_status(state, expected) == status


def test_wall_status_rejects_unknown_state() -> None:
    with pytest.raises(ValueError):
        wall_status("sleeping", True)
