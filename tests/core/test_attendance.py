"""Attendance arithmetic with an injected clock: daily rows, monthly roll-ups, CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core.attendance import (
    DAILY_COLUMNS,
    STATUSES,
    DailyRow,
    Interval,
    daily,
    month_days,
    monthly,
    monthly_columns,
    rows_to_csv,
    spreadsheet_safe,
)
from hub.core.registry import Station
from hub.core.schedule import Schedule
from hub.settings import ScheduleOverride, ScheduleSettings

WIB = dt.timezone(dt.timedelta(hours=7))
DESA = Station("35.09.01.2001", "Desa Ajung", "desa", "Ajung", True)
DESA2 = Station("35.09.01.2002", "Desa Klompangan", "desa", "Ajung", True)
KEC = Station("35.09.02", "Kecamatan Jenggawah", "kecamatan", "Jenggawah", True)
OPD = Station("opd.diskominfo", "Diskominfo", "opd", "Kaliwates", False)
OPD2 = Station("opd.bappeda", "Bappeda", "opd", "Kaliwates", False)
TUESDAY = dt.date(2026, 8, 18)
WINDOW_S = 7 * 3600.0
FULL = 0.8
SCHEDULE = Schedule(ScheduleSettings())


def at(hh: int, mm: int = 0, ss: float = 0, d: dt.date = TUESDAY) -> float:
    return dt.datetime(d.year, d.month, d.day, hh, mm, tzinfo=WIB).timestamp() + ss


def iv(state: str, start: float, end: float | None, reason: str | None = None,
       station: Station = DESA) -> Interval:
    return Interval(station.id, state, start, end, reason if end is not None else None)


def row(intervals: list[Interval], now: float | None = None, station: Station = DESA,
        day: dt.date = TUESDAY, schedule: Schedule = SCHEDULE) -> DailyRow:
    return daily(station, day, intervals, schedule, at(23, 59) if now is None else now, FULL)


# -- whole days --------------------------------------------------------------------------


def test_live_all_window_is_hadir() -> None:
    r = row([iv("live", at(8), at(15), "unpublished")])
    assert r.status == "hadir"
    assert (r.online_s, r.live_s, r.window_s, r.coverage) == (WINDOW_S, WINDOW_S, WINDOW_S, 1.0)
    assert (r.late_s, r.interruptions) == (0.0, 0)
    assert r.first_online == r.first_live == at(8)


def test_station_that_never_came() -> None:
    r = row([])
    assert r.status == "tidak hadir"
    assert (r.first_online, r.first_live) == (None, None)
    assert (r.online_s, r.live_s, r.coverage, r.late_s, r.interruptions) == (0, 0, 0, 0, 0)
    assert r.window_s == WINDOW_S


def test_online_before_window_then_live() -> None:
    r = row([
        iv("online", at(7, 50), at(8, 5), "live"),
        iv("live", at(8, 5), at(14, 30), "unpublished"),
        iv("online", at(14, 30), at(16), "closed"),
    ])
    assert r.first_online == at(7, 50)
    assert r.first_live == at(8, 5)
    assert r.online_s == WINDOW_S
    assert r.live_s == WINDOW_S - 300 - 1800
    assert r.late_s == 0 and r.interruptions == 0
    assert r.coverage == round((WINDOW_S - 2100) / WINDOW_S, 4)
    assert r.status == "hadir"


def test_online_but_never_live_is_sebagian() -> None:
    r = row([iv("online", at(8), at(15), "closed")])
    assert r.status == "sebagian"
    assert r.first_live is None and r.live_s == 0 and r.coverage == 0


def test_coverage_exactly_full_is_hadir() -> None:
    live_s = FULL * WINDOW_S  # 5 h 36 min
    r = row([
        iv("online", at(8), at(15), "closed"),
        iv("live", at(8), at(8) + live_s, "unpublished"),
    ])
    assert r.coverage == FULL
    assert r.status == "hadir"


# -- late arrival ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arrival", "late_s"),
    [(at(8), 0.0), (at(8, 10), 0.0), (at(8, 15), 0.0), (at(8, 15, 1), 901.0), (at(9, 30), 5400.0)],
)
def test_late_only_beyond_grace_and_then_in_full(arrival: float, late_s: float) -> None:
    r = row([iv("live", arrival, at(15), "closed")])
    assert r.late_s == late_s
    assert r.status == ("terlambat" if late_s else "hadir")


def test_late_uses_first_online_not_first_live() -> None:
    r = row([iv("online", at(8, 1), at(10), "live"), iv("live", at(10), at(15), "closed")])
    assert r.late_s == 0
    assert r.first_live == at(10)


def test_late_beats_sebagian() -> None:
    r = row([iv("online", at(11), at(12), "closed")])
    assert r.status == "terlambat"
    assert r.late_s == 3 * 3600


def test_online_before_window_through_start_is_on_time() -> None:
    r = row([iv("online", at(6), at(9), "closed")])
    assert r.late_s == 0
    assert r.first_online == at(6)


def test_reconnecting_at_window_start_is_not_arrival() -> None:
    r = row([
        iv("reconnecting", at(7, 59), at(8, 20), "online"),
        iv("online", at(8, 20), at(15), "closed"),
    ])
    assert r.late_s == 20 * 60
    assert r.first_online == at(8, 20)


def test_kind_grace_override() -> None:
    schedule = Schedule(ScheduleSettings(kinds={"opd": ScheduleOverride(grace_minutes=5)}))
    r = row([iv("live", at(8, 6), at(15), "closed", OPD)], station=OPD, schedule=schedule)
    assert r.late_s == 360
    r = row([iv("live", at(8, 6), at(15), "closed")], schedule=schedule)  # desa keeps 15
    assert r.late_s == 0


def test_station_window_override() -> None:
    schedule = Schedule(ScheduleSettings(
        kinds={"opd": ScheduleOverride(end="16:00")},
        stations={OPD.id: ScheduleOverride(start="09:00")},
    ))
    r = row([iv("live", at(8, 50), at(16), "closed", OPD)], station=OPD, schedule=schedule)
    assert r.window_s == WINDOW_S  # 09:00–16:00
    assert r.late_s == 0 and r.live_s == WINDOW_S and r.status == "hadir"
    other = row([iv("live", at(8, 50), at(16), "closed", OPD2)], station=OPD2, schedule=schedule)
    assert other.window_s == 8 * 3600  # 08:00–16:00: the kind's end, the global start
    assert other.late_s == 50 * 60 and other.status == "terlambat"


# -- window edges and day boundaries -----------------------------------------------------


def test_interval_crossing_local_midnight() -> None:
    overnight = [iv("online", at(22, d=TUESDAY - dt.timedelta(days=1)), at(9), "closed")]
    r = row(overnight)
    assert r.first_online == at(0)  # local midnight, not 22:00 the day before
    assert r.online_s == 3600
    assert r.late_s == 0
    assert r.interruptions == 1
    before = row(overnight, day=TUESDAY - dt.timedelta(days=1))  # Independence Day
    assert before.status == "libur"
    assert before.first_online == at(22, d=TUESDAY - dt.timedelta(days=1))


def test_midnight_is_wib_midnight_not_utc() -> None:
    # 23:30 UTC on the 17th is 06:30 WIB on the 18th: belongs to the 18th
    start = dt.datetime(2026, 8, 17, 23, 30, tzinfo=dt.UTC).timestamp()
    r = row([iv("online", start, at(8), "closed")])
    assert r.first_online == at(6, 30)


def test_interval_crossing_window_end() -> None:
    r = row([iv("live", at(14), at(16), "closed")])
    assert r.live_s == r.online_s == 3600
    assert r.interruptions == 0  # ended after the window
    assert r.status == "terlambat"


def test_interval_crossing_window_start_and_ending_inside() -> None:
    r = row([iv("online", at(7), at(9), "closed")])
    assert r.online_s == 3600
    assert r.interruptions == 1
    assert r.status == "sebagian"


def test_period_ending_exactly_at_window_edges_is_no_interruption() -> None:
    assert row([iv("online", at(7), at(8), "closed")]).interruptions == 0
    assert row([iv("online", at(8), at(15), "closed")]).interruptions == 0


def test_activity_outside_window_counts_only_for_first_times() -> None:
    r = row([iv("live", at(16), at(18), "closed")])
    assert r.first_online == r.first_live == at(16)
    assert r.online_s == 0 and r.status == "tidak hadir" and r.late_s == 0


# -- gaps, interruptions, reconnecting ---------------------------------------------------


def test_gaps_and_interruptions() -> None:
    r = row([
        iv("live", at(8), at(10), "crash"),
        iv("live", at(10, 30), at(12), "replaced"),
        iv("live", at(12), at(13), "timeout"),  # contiguous with the previous one
        iv("online", at(13, 5), at(15), "closed"),
    ])
    assert r.interruptions == 2  # 10:00 and 13:00
    assert r.online_s == WINDOW_S - 1800 - 300
    assert r.live_s == 4.5 * 3600


def test_online_to_live_with_clock_jitter_is_one_period() -> None:
    r = row([iv("online", at(8), at(9), "live"), iv("live", at(9, 0, 0.005), at(15), "closed")])
    assert r.interruptions == 0
    assert r.online_s == WINDOW_S - 0.005


def test_reconnecting_is_not_online() -> None:
    r = row([
        iv("online", at(8), at(11), "timeout"),
        iv("reconnecting", at(11), at(11, 0, 30), "online"),
        iv("online", at(11, 0, 30), at(15), "closed"),
    ])
    assert r.online_s == WINDOW_S - 30
    assert r.interruptions == 1


def test_only_reconnecting_is_tidak_hadir() -> None:
    r = row([iv("reconnecting", at(8), at(15), "timeout")])
    assert r.status == "tidak hadir" and r.first_online is None


def test_overlapping_intervals_count_once() -> None:
    r = row([
        iv("online", at(8), at(15), "closed"),
        iv("live", at(9), at(11), "replaced"),
        iv("live", at(10), at(12), "unpublished"),  # overlaps: a replaced connection
    ])
    assert r.online_s == WINDOW_S
    assert r.live_s == 3 * 3600


def test_other_stations_ignored() -> None:
    r = row([iv("live", at(8), at(15), "closed", DESA2)])
    assert r.status == "tidak hadir" and r.online_s == 0


# -- today, partially elapsed -----------------------------------------------------------


def test_open_interval_counts_up_to_now() -> None:
    r = row([iv("live", at(8), None)], now=at(10))
    assert r.window_s == 7200 and r.live_s == 7200 and r.coverage == 1.0
    assert r.interruptions == 0 and r.status == "hadir"


def test_closed_interval_before_now_is_an_interruption_open_one_is_not() -> None:
    r = row([iv("live", at(8), at(9, 59), "crash"), iv("online", at(10), None)], now=at(10, 30))
    assert r.interruptions == 1
    assert r.window_s == 2.5 * 3600
    assert r.online_s == 2.5 * 3600 - 60


def test_interval_ending_after_now_is_clipped() -> None:
    r = row([iv("live", at(8), at(12), "closed")], now=at(9))
    assert r.live_s == 3600 and r.window_s == 3600 and r.interruptions == 0


def test_interval_starting_after_now_is_ignored() -> None:
    r = row([iv("live", at(11), at(12), "closed")], now=at(10))
    assert r.first_live is None and r.status == "tidak hadir"


def test_before_window_opens_today() -> None:
    r = row([iv("online", at(6, 30), None)], now=at(7))
    assert r.window_s == 0 and r.online_s == 0 and r.coverage == 0
    assert r.first_online == at(6, 30)
    assert r.status == "tidak hadir"  # provisional; window_s == 0 marks "not started"


def test_inside_grace_with_nobody_yet() -> None:
    r = row([], now=at(8, 10))
    assert r.window_s == 600 and r.late_s == 0 and r.status == "tidak hadir"


def test_late_today_already_known() -> None:
    r = row([iv("online", at(8, 40), None)], now=at(9))
    assert r.late_s == 2400 and r.status == "terlambat" and r.window_s == 3600


def test_future_day_has_no_elapsed_window() -> None:
    r = row([], now=at(12), day=TUESDAY + dt.timedelta(days=1))
    assert r.window_s == 0 and r.status == "tidak hadir"


def test_past_day_counts_the_whole_window_even_with_a_still_open_interval() -> None:
    r = row([iv("live", at(8), None)], now=at(10, d=TUESDAY + dt.timedelta(days=2)))
    assert r.live_s == WINDOW_S and r.status == "hadir"


# -- days off --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "day",
    [dt.date(2026, 8, 17), dt.date(2026, 3, 21), dt.date(2026, 8, 22)],
    ids=["independence-day", "idul-fitri", "saturday"],
)
def test_days_off_are_libur(day: dt.date) -> None:
    r = row([iv("live", at(9, d=day), at(11, d=day), "closed")], day=day, now=at(23, d=day))
    assert r.status == "libur"
    assert r.first_live == at(9, d=day)  # still reported
    assert (r.online_s, r.live_s, r.window_s, r.coverage, r.late_s, r.interruptions) == (0,) * 6


def test_extra_holiday_is_libur() -> None:
    schedule = Schedule(ScheduleSettings(extra_holidays=(TUESDAY.isoformat(),)))
    assert row([], schedule=schedule).status == "libur"


# -- serialisation ---------------------------------------------------------------------


def test_as_dict_is_json_safe_with_wib_times() -> None:
    r = row([iv("online", at(8, 20, 30.5), at(9), "live"), iv("live", at(9), at(15), "closed")])
    d = r.as_dict()
    assert list(d) == DAILY_COLUMNS
    assert d["first_online"] == "2026-08-18T08:20:30.500000+07:00"
    assert d["first_live"] == "2026-08-18T09:00:00+07:00"
    assert d["late_s"] == 20 * 60 + 30.5  # exact seconds
    assert d["date"] == "2026-08-18" and d["status"] == "terlambat"
    assert json.loads(json.dumps(d)) == d
    assert row([]).as_dict()["first_online"] is None


# -- property: invariants for any interval soup ----------------------------------------

MINUTE = 60.0
DAY_START = at(0)


def minute_intervals() -> st.SearchStrategy[list[tuple[str, int, int | None]]]:
    span = st.tuples(
        st.sampled_from(["online", "live", "reconnecting"]),
        st.integers(-300, 1500),  # minutes from local midnight: spills into both neighbours
        st.one_of(st.none(), st.integers(1, 600)),
    )
    return st.lists(span, max_size=8)


@settings(max_examples=150, deadline=None)
@given(minute_intervals(), st.integers(0, 1800), st.randoms(use_true_random=False))
def test_invariants(
    spans: list[tuple[str, int, int | None]], now_min: int, rng: random.Random
) -> None:
    intervals = [
        iv(state, DAY_START + s * MINUTE, None if n is None else DAY_START + (s + n) * MINUTE, "x")
        for state, s, n in spans
    ]
    now = DAY_START + now_min * MINUTE
    r = row(intervals, now=now)
    assert 0 <= r.live_s <= r.online_s <= r.window_s <= WINDOW_S
    assert 0 <= r.coverage <= 1
    assert r.late_s == 0 or r.late_s > 15 * MINUTE
    assert r.status in STATUSES and r.status != "libur"
    shuffled = list(intervals)
    rng.shuffle(shuffled)
    assert row(shuffled, now=now) == r
    assert row(list(reversed(intervals)), now=now) == r

    # oracle: walk the minutes of the day
    def covered(minute: int, states: set[str]) -> bool:
        t = DAY_START + minute * MINUTE
        return any(
            i.state in states and i.start <= t < (now if i.end is None else min(i.end, now))
            for i in intervals
        )

    window = range(8 * 60, min(15 * 60, max(now_min, 8 * 60)))
    on_minutes = [m for m in window if covered(m, {"online", "live"})]
    assert r.online_s == len(on_minutes) * MINUTE
    assert r.live_s == sum(MINUTE for m in window if covered(m, {"live"}))
    # An interruption: an on-period (whole minutes here, so gaps are far above CONTIGUOUS_GAP_S)
    # ending strictly inside the window and before now; one still running at now is not.
    ends = [m for m in range(-300, 2102) if covered(m - 1, {"online", "live"}) and not covered(m, {"online", "live"})]
    assert r.interruptions == sum(1 for m in ends if 8 * 60 < m < 15 * 60 and m < now_min)
    first = next((m for m in range(24 * 60) if covered(m, {"online", "live"})), None)
    assert r.first_online == (None if first is None else DAY_START + first * MINUTE)
    if on_minutes and on_minutes[0] - 8 * 60 > 15:
        assert r.late_s == (on_minutes[0] - 8 * 60) * MINUTE
    else:
        assert r.late_s == 0


# -- months, roll-ups, CSV -------------------------------------------------------------


def test_month_days() -> None:
    days = month_days("2026-08")
    assert len(days) == 31 and days[0] == dt.date(2026, 8, 1) and days[-1] == dt.date(2026, 8, 31)
    assert len(month_days("2024-02")) == 29
    assert len(month_days("2026-02")) == 28


@pytest.mark.parametrize(
    "bad", ["2026-13", "2026-00", "2026-1", "26-01", "2026/01", " 2026-01", "2026-01-01", "", "x-y"]
)
def test_month_days_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        month_days(bad)


def make(station: Station, status: str, online: float = 0, live: float = 0, late: float = 0,
         interruptions: int = 0, window: float = WINDOW_S, date: str = "2026-08-18") -> DailyRow:
    cov = round(live / window, 4) if window else 0.0
    return DailyRow(
        station.id, date, status, None, None, online, live, cov, late, interruptions, window
    )


STATIONS = {s.id: s for s in (DESA, DESA2, KEC, OPD, OPD2)}
ROWS = [
    make(DESA, "hadir", WINDOW_S, WINDOW_S),
    make(DESA, "terlambat", 3600, 1800, late=1200, interruptions=2, date="2026-08-19"),
    make(DESA, "libur", window=0, date="2026-08-17"),
    make(DESA2, "tidak hadir"),
    make(DESA2, "sebagian", 7200, 3600, interruptions=1, date="2026-08-19"),
    make(KEC, "hadir", WINDOW_S, WINDOW_S),
    make(OPD, "sebagian", WINDOW_S, 0),
    make(OPD2, "tidak hadir", window=3600),  # today, partly elapsed
    make(OPD2, "tidak hadir", window=0, date="2026-08-19"),  # not started: not counted
    make(Station("opd.gone", "Gone", "opd", "X", False), "hadir", WINDOW_S, WINDOW_S),
]


def test_monthly_by_kecamatan_sums() -> None:
    out = {r["kecamatan"]: r for r in monthly(ROWS, STATIONS, "kecamatan")}
    assert list(out) == ["Ajung", "Jenggawah", "Kaliwates"]
    ajung = out["Ajung"]
    assert ajung["stations"] == 2
    assert ajung["days"] == 4  # libur left out
    counts = [ajung[k] for k in ("hadir", "terlambat", "sebagian", "tidak_hadir")]
    assert counts == [1, 1, 1, 1]
    assert ajung["online_s"] == WINDOW_S + 3600 + 7200
    assert ajung["live_s"] == WINDOW_S + 1800 + 3600
    assert ajung["late_s"] == 1200 and ajung["interruptions"] == 3
    assert ajung["coverage"] == round((WINDOW_S + 5400) / (4 * WINDOW_S), 4)
    kaliwates = out["Kaliwates"]
    assert kaliwates["stations"] == 2 and kaliwates["days"] == 2
    assert kaliwates["tidak_hadir"] == 1 and kaliwates["sebagian"] == 1
    assert kaliwates["coverage"] == 0.0


def test_monthly_by_kind() -> None:
    out = {r["kind"]: r for r in monthly(ROWS, STATIONS, "kind")}
    assert sorted(out) == ["desa", "kecamatan", "opd"]
    assert out["desa"]["stations"] == 2 and out["kecamatan"]["days"] == 1
    assert out["kecamatan"]["coverage"] == 1.0


def test_monthly_by_station_and_opd() -> None:
    by_station = monthly(ROWS, STATIONS, "station")
    assert [r["station"] for r in by_station] == sorted(STATIONS)  # unknown station skipped
    desa = next(r for r in by_station if r["station"] == DESA.id)
    assert desa["name"] == "Desa Ajung" and desa["days"] == 2 and desa["stations"] == 1
    opd = monthly(ROWS, STATIONS, "opd")
    assert [r["opd"] for r in opd] == ["opd.bappeda", "opd.diskominfo"]
    assert opd[0]["days"] == 1 and opd[0]["tidak_hadir"] == 1
    assert set(opd[0]) == set(monthly_columns("opd"))


def test_monthly_rejects_unknown_group() -> None:
    with pytest.raises(ValueError):
        monthly(ROWS, STATIONS, "desa")


def test_monthly_from_a_real_month() -> None:
    intervals = []
    for d in month_days("2026-08"):
        intervals.append(iv("live", at(8, 5, d=d), at(15, d=d), "closed"))
    now = at(12, d=dt.date(2026, 8, 31))
    rows = [daily(DESA, d, intervals, SCHEDULE, now, FULL) for d in month_days("2026-08")]
    [out] = monthly(rows, STATIONS, "station")
    # August 2026: 21 weekdays, minus Independence Day and Prophet's Birthday → 19 workdays
    assert out["days"] == 19 and out["hadir"] == 19
    assert out["live_s"] == 18 * (WINDOW_S - 300) + (4 * 3600 - 300)


def test_rows_to_csv() -> None:
    text = rows_to_csv(
        [{"a": 1, "b": None, "c": 'say "hi", ok'}, {"a": 2.5, "c": "x"}], ["a", "b", "c"]
    )
    assert text == 'a,b,c\r\n1,,"say ""hi"", ok"\r\n2.5,,x\r\n'
    assert list(csv.reader(io.StringIO(text)))[1] == ["1", "", 'say "hi", ok']


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x\",\"klik\")", "+1+2", "-2+3", "@SUM(A1)",
                                  "\tx", "\rx", "=", "'=already"])
def test_spreadsheet_safe_neutralises_formula_text(text: str) -> None:
    """OWASP CSV injection: a cell a spreadsheet would evaluate gets a leading quote."""
    assert spreadsheet_safe(text) == ("'" + text if text[0] in "=+-@\t\r" else text)


@pytest.mark.parametrize("value", ["Rapat desa", "", "2026-08-18T08:00:00+07:00", " =x", "a=b", -5, 2.5, 0, None])
def test_spreadsheet_safe_leaves_data_alone(value: object) -> None:
    # Numbers are written by us, not typed by a station: a negative number is no formula.
    assert spreadsheet_safe(value) == value


def test_rows_to_csv_neutralises_every_text_cell() -> None:
    text = rows_to_csv([{"title": '=HYPERLINK("http://evil","klik")', "name": "@x", "late_s": -1.5}],
                       ["title", "name", "late_s"])
    assert list(csv.reader(io.StringIO(text)))[1] == ["'=HYPERLINK(\"http://evil\",\"klik\")", "'@x", "-1.5"]


def test_daily_rows_to_csv() -> None:
    r = row([iv("live", at(8), at(15), "closed")]).as_dict()
    text = rows_to_csv([r], DAILY_COLUMNS)
    header, line = list(csv.reader(io.StringIO(text)))
    assert header == DAILY_COLUMNS
    assert line[:4] == [DESA.id, "2026-08-18", "hadir", "2026-08-18T08:00:00+07:00"]
