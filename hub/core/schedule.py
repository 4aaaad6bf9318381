"""Office hours: when a station is expected on, and the wall status that follows.

Theory of operation
-------------------
All instants are float UTC epoch seconds; every method takes them as arguments (an injected
clock), so nothing here reads the time or does I/O. Dates are ``datetime.date`` values in the
schedule's timezone (``Asia/Jakarta`` by default: WIB, UTC+7, no DST; any IANA zone works).

Rules for one station (:meth:`Schedule.rules`), each field resolved on its own::

    station override (schedule.stations[id])  >  kind override (schedule.kinds[kind])  >  global

so a station override that sets only ``start`` keeps the kind's (or global) ``end``, workdays
and grace. A resolved ``start`` not before ``end`` is a :class:`~hub.errors.ConfigError`; call
:meth:`Schedule.check` with the registry at start-up to find those early.

A local date is a day off for a station (:meth:`Schedule.day_off_reason`) when, checked in
this order, it is

1. an Indonesian national holiday → the holiday's name (English, as the ``holidays`` package
   gives it, e.g. ``"Independence Day"``); only when ``national_holidays`` is true;
2. one of ``extra_holidays`` → ``"extra holiday"``;
3. not one of the station's workdays → ``"weekend"``.

A holiday on a Saturday therefore reports its name, not ``"weekend"``.

National holidays are ``holidays.country_holidays("ID")`` with its default ``public``
category: the gazetted *libur nasional* (2026: New Year, Isra' Mi'raj, Lunar New Year,
Nyepi, Idul Fitri ×2, Good Friday, Easter, Labour Day, Ascension, Idul Adha, Vesak,
Pancasila, Islamic New Year, Independence Day, Maulid, Christmas). *Cuti bersama* (the
package's ``government`` category, e.g. 2026-03-20/23/24 around Idul Fitri) are **not**
included: they are decreed each year, may change, and village offices do not all observe
them; list the ones that apply in ``extra_holidays``. Islamic dates are the package's
estimates until it ships the official decree. Building one year's calendar takes ~0.1 s, so
each year is built once per process (a memoised pure function, not shared mutable state).

A station is *expected on* at an instant when its local date is a workday that is no day off
and the instant lies in the half-open window ``[start, end)`` of that date. The wall status
(:func:`wall_status`) combines that with presence::

    live → live    online → online    reconnecting → reconnecting
    offline & expected → missing      offline & not expected → off-hours

:meth:`Schedule.next_change` gives the next instant at which ``expected_on`` may flip for any
station (any configured start or end clock time, or local midnight), so the hub can sleep
until then and re-evaluate wall statuses exactly on the boundary.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import holidays

from hub.core.registry import Station
from hub.errors import ConfigError
from hub.settings import WEEKDAYS, ScheduleSettings, parse_clock

DAYS_OFF_AHEAD = 60  # days listed in ``describe()["days_off"]``, today included
_MIDNIGHT = dt.time(0, 0)


@dataclass(frozen=True)
class StationRules:
    """The resolved office hours of one station."""

    workdays: tuple[str, ...]
    start: dt.time
    end: dt.time
    grace_minutes: int


@functools.lru_cache(maxsize=64)
def national_holidays(year: int) -> dict[dt.date, str]:
    """Indonesian public holidays of one year, date → name (several names joined by "; ")."""
    calendar = holidays.country_holidays("ID", years=year)
    return {day: name for day, name in calendar.items() if day.year == year}


class Schedule:
    """Office hours for every station, built once from :class:`ScheduleSettings`."""

    def __init__(self, settings: ScheduleSettings) -> None:
        self.settings = settings
        self.tz = ZoneInfo(settings.timezone)
        self._extra = {dt.date.fromisoformat(day) for day in settings.extra_holidays}
        self._rules: dict[tuple[str, str], StationRules] = {}
        sources = [settings.start, settings.end]
        for override in (*settings.kinds.values(), *settings.stations.values()):
            sources += [clock for clock in (override.start, override.end) if clock]
        clocks = {parse_clock(clock, "schedule") for clock in sources} | {_MIDNIGHT}
        self._boundaries = sorted(clocks)

    # -- rules ---------------------------------------------------------------------------

    def rules(self, station: Station) -> StationRules:
        """The station's resolved rules; ConfigError when its start is not before its end."""
        key = (station.id, station.kind)
        cached = self._rules.get(key)
        if cached is not None:
            return cached
        s = self.settings
        layers = [s.stations.get(station.id), s.kinds.get(station.kind)]

        def pick(name: str, default: Any) -> Any:
            for layer in layers:
                value = getattr(layer, name) if layer is not None else None
                if value is not None:
                    return value
            return default

        start_text, end_text = pick("start", s.start), pick("end", s.end)
        rules = StationRules(
            workdays=tuple(pick("workdays", s.workdays)),
            start=parse_clock(start_text, f"schedule for {station.id}: start"),
            end=parse_clock(end_text, f"schedule for {station.id}: end"),
            grace_minutes=pick("grace_minutes", s.grace_minutes),
        )
        if rules.start >= rules.end:
            raise ConfigError(
                f"schedule for {station.id}: start {start_text} must be before end {end_text}"
            )
        self._rules[key] = rules
        return rules

    def check(self, stations: Iterable[Station]) -> None:
        """Resolve every station's rules now, so a bad combination fails at start-up."""
        for station in stations:
            self.rules(station)

    # -- dates and windows -----------------------------------------------------------------

    def local_date(self, instant: float) -> dt.date:
        return dt.datetime.fromtimestamp(instant, self.tz).date()

    def at(self, day: dt.date, clock: dt.time) -> float:
        """The UTC epoch of a local wall-clock time on a local date."""
        return dt.datetime.combine(day, clock, tzinfo=self.tz).timestamp()

    def day_bounds(self, day: dt.date) -> tuple[float, float]:
        """UTC epoch of local midnight starting ``day`` and of the next local midnight."""
        return self.at(day, _MIDNIGHT), self.at(day + dt.timedelta(days=1), _MIDNIGHT)

    def day_off_reason(self, station: Station, day: dt.date) -> str | None:
        if self.settings.national_holidays:
            name = national_holidays(day.year).get(day)
            if name:
                return name
        if day in self._extra:
            return "extra holiday"
        if WEEKDAYS[day.weekday()] not in self.rules(station).workdays:
            return "weekend"
        return None

    def window(self, station: Station, day: dt.date) -> tuple[float, float] | None:
        """UTC epoch ``(start, end)`` of the office-hours window; None on a day off."""
        if self.day_off_reason(station, day) is not None:
            return None
        rules = self.rules(station)
        return self.at(day, rules.start), self.at(day, rules.end)

    def expected_on(self, station: Station, instant: float) -> bool:
        window = self.window(station, self.local_date(instant))
        return window is not None and window[0] <= instant < window[1]

    def next_change(self, instant: float) -> float:
        """The first instant after ``instant`` at which any station's expectation may flip."""
        day = self.local_date(instant)
        for candidate_day in (day, day + dt.timedelta(days=1)):
            for clock in self._boundaries:
                at = self.at(candidate_day, clock)
                if at > instant:
                    return at
        raise AssertionError("unreachable: the next local midnight is always later")

    def describe(self, station: Station, now: float) -> dict[str, Any]:
        """The station's schedule as plain data for ``welcome.schedule``.

        Windows are UTC epoch seconds, so an agent whose own clock is wrong can still go live
        on time by comparing them with the hub's ``now`` (also included).
        """
        rules = self.rules(station)
        today = self.local_date(now)
        window = self.window(station, today)
        days_off = []
        for offset in range(DAYS_OFF_AHEAD):
            day = today + dt.timedelta(days=offset)
            reason = self.day_off_reason(station, day)
            if reason is not None:
                days_off.append({"date": day.isoformat(), "reason": reason})
        return {
            "timezone": self.settings.timezone,
            "workdays": list(rules.workdays),
            "start": rules.start.strftime("%H:%M"),
            "end": rules.end.strftime("%H:%M"),
            "grace_minutes": rules.grace_minutes,
            "now": now,
            "today": {
                "date": today.isoformat(),
                "window": list(window) if window is not None else None,
                "off": self.day_off_reason(station, today),
            },
            "days_off": days_off,
        }


_WALL = {"live": "live", "online": "online", "reconnecting": "reconnecting"}


def wall_status(state: str, expected: bool) -> str:
    """Presence state × expectation → wall status (DESIGN §3); ValueError on an unknown state."""
    if state in _WALL:
        return _WALL[state]
    if state == "offline":
        return "missing" if expected else "off-hours"
    raise ValueError(f"unknown presence state {state!r}")
