"""Attendance arithmetic: presence intervals in, daily rows and monthly roll-ups out.

Theory of operation
-------------------
The ledger stores one :class:`Interval` per presence state a station was in (``online``,
``live`` or ``reconnecting``; offline time is not stored). Everything here is pure: the
caller passes the intervals, the :class:`~hub.core.schedule.Schedule` and ``now`` (UTC epoch
seconds), and gets numbers back.

Daily figures for one station on one local date (:func:`daily`):

* Intervals of other stations are ignored. An open interval (``end is None``) counts up to
  ``now``; every interval is also clipped at ``now``, so nothing in the future counts.
* *On* means ``online`` or ``live``. ``reconnecting`` is **not** on: missed heartbeats are
  not presence.
* ``first_online`` / ``first_live``: the first instant of the local date (midnight to
  midnight, any time of day, not only the window) the station was on / live. An interval
  carried over from the previous evening gives local midnight.
* The *window* is that date's office hours; for today it is counted only up to ``now``
  (``window_s`` is the elapsed part; 0 before the window opens or for a future date).
* ``online_s``: length of the union of on-intervals inside the elapsed window, so overlapping
  or duplicated intervals (a replaced connection) count once. ``live_s`` likewise for live.
  Hence ``live_s <= online_s <= window_s``.
* ``coverage = live_s / window_s`` rounded to 4 decimals, 0 when ``window_s`` is 0.
* ``late_s``: from window start to the first on-instant inside the window, reported only when
  it exceeds ``grace_minutes`` (then in full, from window start, not from the end of grace);
  0 when on time or never on.
* ``interruptions``: on-periods are the on-intervals merged when they touch or overlap, or are
  separated by at most :data:`CONTIGUOUS_GAP_S` (so ``online → live`` written as two rows with
  clock reads a few ms apart is one period). Each period that ends strictly inside the window
  (after its start, before its end) and before ``now`` is one interruption. A period still
  running at ``now`` is not.
* Seconds are floats rounded to the millisecond (only to drop float noise from epoch
  subtraction); they are never rounded to minutes.

Status, first match wins (exactly the five of DESIGN §3):

====================  ==============================================================
``libur``             the date is a day off for the station (weekend, holiday)
``tidak hadir``       ``online_s == 0``
``terlambat``         ``late_s > 0``
``sebagian``          ``coverage < full_coverage``
``hadir``             otherwise
====================  ==============================================================

Today's row is provisional until the window closes. In particular, before today's window
opens (and for a future date) there is no sixth "not started" status: the row says
``tidak hadir`` with ``window_s == 0``, which a UI can show as "belum mulai". Monthly
roll-ups skip such rows (see below), so they never count as absences.

Monthly roll-up (:func:`monthly`) over daily rows, grouped by ``station``, ``kecamatan``,
``kind`` or ``opd`` (one group per OPD-kind station, other kinds left out). Rows whose station
is not in the ``stations`` mapping are skipped. Per group: ``stations`` (distinct stations
seen), ``days`` (station-days counted: not ``libur`` and with a window that has started),
counts per status, summed ``online_s``, ``live_s``, ``late_s``, ``interruptions``, and
``coverage = live_s / summed window_s`` of the counted days. The group value sits under the
group's own name (``{"kecamatan": "Ajung", ...}``; ``station``/``opd`` groups also carry
``name``); :func:`monthly_columns` gives the column order for CSV.
"""

from __future__ import annotations

import calendar
import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from hub.core.registry import Station
from hub.core.schedule import Schedule

ON_STATES = frozenset({"online", "live"})
CONTIGUOUS_GAP_S = 1.0  # on-periods closer than this are one period for interruptions
STATUSES = ("hadir", "terlambat", "sebagian", "tidak hadir", "libur")
GROUPS = ("station", "kecamatan", "kind", "opd")
DAILY_COLUMNS = [
    "id", "date", "status", "first_online", "first_live",
    "online_s", "live_s", "coverage", "late_s", "interruptions", "window_s",
]
_MONTHLY_FIGURES = [
    "stations", "days", "hadir", "terlambat", "sebagian", "tidak_hadir",
    "online_s", "live_s", "coverage", "late_s", "interruptions",
]
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")

Span = tuple[float, float]


@dataclass(frozen=True)
class Interval:
    """One stored presence interval, UTC epoch seconds; ``end`` is None while open."""

    station: str
    state: str  # "online" | "live" | "reconnecting"
    start: float
    end: float | None
    end_reason: str | None  # "live", "unpublished", "closed", "timeout", "replaced", ...


@dataclass(frozen=True)
class DailyRow:
    id: str
    date: str  # ISO local date
    status: str
    first_online: float | None
    first_live: float | None
    online_s: float
    live_s: float
    coverage: float
    late_s: float
    interruptions: int
    window_s: float
    timezone: str = "Asia/Jakarta"  # how as_dict renders instants; not itself exported

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe: instants as ISO 8601 in the schedule's zone (``+07:00``), or None."""
        tz = ZoneInfo(self.timezone)
        return {
            "id": self.id,
            "date": self.date,
            "status": self.status,
            "first_online": _iso(self.first_online, tz),
            "first_live": _iso(self.first_live, tz),
            "online_s": self.online_s,
            "live_s": self.live_s,
            "coverage": self.coverage,
            "late_s": self.late_s,
            "interruptions": self.interruptions,
            "window_s": self.window_s,
        }


def daily(
    station: Station,
    day: dt.date,
    intervals: Iterable[Interval],
    schedule: Schedule,
    now: float,
    full_coverage: float,
) -> DailyRow:
    """The attendance row of ``station`` on local date ``day`` as known at ``now``."""
    on: list[Span] = []
    live: list[Span] = []
    for interval in intervals:
        if interval.station != station.id or interval.state not in ON_STATES:
            continue
        end = now if interval.end is None else min(interval.end, now)
        if end <= interval.start:
            continue
        on.append((interval.start, end))
        if interval.state == "live":
            live.append((interval.start, end))
    on_exact = _merge(on, 0.0)
    day_start, day_end = schedule.day_bounds(day)
    first_online = _first(on_exact, day_start, day_end)
    first_live = _first(_merge(live, 0.0), day_start, day_end)

    window = schedule.window(station, day)
    if window is None:
        return DailyRow(
            station.id, day.isoformat(), "libur", first_online, first_live,
            0.0, 0.0, 0.0, 0.0, 0, 0.0, schedule.settings.timezone,
        )
    window_start, window_end = window
    elapsed_end = min(window_end, max(now, window_start))
    window_s = elapsed_end - window_start
    online_s = _measure(on, window_start, elapsed_end)
    # live spans are a subset of on spans; min() only guards against float summation order
    live_s = min(_measure(live, window_start, elapsed_end), online_s)
    coverage = min(1.0, round(live_s / window_s, 4)) if window_s > 0 else 0.0

    late_s = 0.0
    arrival = _first(on_exact, window_start, elapsed_end)
    grace_s = schedule.rules(station).grace_minutes * 60
    if arrival is not None and arrival - window_start > grace_s:
        late_s = arrival - window_start

    interruptions = sum(
        1
        for _, end in _merge(on, CONTIGUOUS_GAP_S)
        if window_start < end < window_end and end < now
    )

    if online_s == 0:
        status = "tidak hadir"
    elif late_s > 0:
        status = "terlambat"
    elif coverage < full_coverage:
        status = "sebagian"
    else:
        status = "hadir"
    return DailyRow(
        id=station.id,
        date=day.isoformat(),
        status=status,
        first_online=first_online,
        first_live=first_live,
        online_s=_seconds(online_s),
        live_s=_seconds(live_s),
        coverage=coverage,
        late_s=_seconds(late_s),
        interruptions=interruptions,
        window_s=_seconds(window_s),
        timezone=schedule.settings.timezone,
    )


def monthly(
    rows: Iterable[DailyRow], stations: Mapping[str, Station], group: str
) -> list[dict[str, Any]]:
    """Roll daily rows up per group; output sorted by the group value."""
    if group not in GROUPS:
        raise ValueError(f"group must be one of {', '.join(GROUPS)}, not {group!r}")
    totals: dict[str, dict[str, Any]] = {}
    members: dict[str, set[str]] = {}
    window_total: dict[str, float] = {}
    for row in rows:
        station = stations.get(row.id)
        if station is None or (group == "opd" and station.kind != "opd"):
            continue
        key = {"kecamatan": station.kecamatan, "kind": station.kind}.get(group, station.id)
        out = totals.get(key)
        if out is None:
            out = {group: key}
            if group in ("station", "opd"):
                out["name"] = station.name
            out.update({name: 0 for name in _MONTHLY_FIGURES})
            out.update(online_s=0.0, live_s=0.0, coverage=0.0, late_s=0.0)
            totals[key], members[key], window_total[key] = out, set(), 0.0
        members[key].add(row.id)
        if row.status == "libur" or row.window_s <= 0:
            continue
        out["days"] += 1
        out[row.status.replace(" ", "_")] += 1
        out["online_s"] += row.online_s
        out["live_s"] += row.live_s
        out["late_s"] += row.late_s
        out["interruptions"] += row.interruptions
        window_total[key] += row.window_s
    result = []
    for key in sorted(totals):
        out = totals[key]
        out["stations"] = len(members[key])
        for name in ("online_s", "live_s", "late_s"):
            out[name] = _seconds(out[name])
        total = window_total[key]
        out["coverage"] = min(1.0, round(out["live_s"] / total, 4)) if total > 0 else 0.0
        result.append(out)
    return result


def monthly_columns(group: str) -> list[str]:
    """CSV column order for :func:`monthly` output of ``group``."""
    head = [group, "name"] if group in ("station", "opd") else [group]
    return head + _MONTHLY_FIGURES


def month_days(month: str) -> list[dt.date]:
    """Every date of a ``YYYY-MM`` month; ValueError on anything else."""
    match = _MONTH.match(month) if isinstance(month, str) else None
    if match is None:
        raise ValueError(f"month must be YYYY-MM, not {month!r}")
    year, number = int(match.group(1)), int(match.group(2))
    if not (1 <= number <= 12 and year >= 1):
        raise ValueError(f"month must be YYYY-MM, not {month!r}")
    count = calendar.monthrange(year, number)[1]
    return [dt.date(year, number, d) for d in range(1, count + 1)]


# What makes a spreadsheet read a cell as a formula (OWASP "CSV Injection"); tab and CR too,
# because some spreadsheets strip them and then see the "=" behind.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> Any:
    """``value`` as a cell a spreadsheet shows as text: a string that begins like a formula
    gets a leading ``'`` (OWASP's advice). Station names and activity titles are typed by
    whoever runs a station, and our CSV is public open data opened in Excel or LibreOffice,
    where ``=HYPERLINK(...)`` would run. Numbers pass through: we write them, and a negative
    number is no formula. Only for CSV: JSON is data, not a spreadsheet, and stays as typed."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def rows_to_csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """RFC 4180 CSV (CRLF, quoted where needed) with a header row; None or missing → empty;
    every text cell passed through :func:`spreadsheet_safe`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row.get(c) is None else spreadsheet_safe(row.get(c)) for c in columns])
    return out.getvalue()


# -- interval arithmetic ---------------------------------------------------------------------


def _merge(spans: Iterable[Span], gap: float) -> list[Span]:
    """Sorted, disjoint spans; spans at most ``gap`` apart are joined."""
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start - merged[-1][1] <= gap:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _measure(spans: Iterable[Span], low: float, high: float) -> float:
    """Length of the union of ``spans`` inside ``[low, high]``."""
    clipped = [(max(s, low), min(e, high)) for s, e in spans if min(e, high) > max(s, low)]
    return sum(end - start for start, end in _merge(clipped, 0.0))


def _first(periods: list[Span], low: float, high: float) -> float | None:
    """The first instant in ``[low, high)`` covered by sorted ``periods``."""
    for start, end in periods:
        if end > low and start < high:
            return max(start, low)
    return None


def _seconds(value: float) -> float:
    return round(value, 3)


def _iso(instant: float | None, tz: dt.tzinfo) -> str | None:
    return None if instant is None else dt.datetime.fromtimestamp(instant, tz).isoformat()
