"""Office hours on the agent: when to be on air, judged by the hub's clock.

Theory of operation
-------------------
Village PCs often have wrong clocks (dead CMOS battery, wrong zone). The hub's time is the
truth: :class:`ServerClock` keeps ``offset = server_time - local_time`` from each
``welcome`` (the local time taken as the midpoint of the hello round trip), and
``server_now(local_now)`` applies it. The offset survives disconnections: an agent that
lost its hub keeps following the schedule it last heard.

:class:`OfficeHours` is the ``welcome.schedule`` map (``hub.core.schedule.describe``) as
plain data: timezone, workdays, ``start``/``end`` clock times, ``days_off`` (60 days ahead)
and ``today`` with its window as UTC epoch seconds. The window for a date is ``today.window``
when the date is the hub's today, else computed from the rules: days off and non-workdays
have none. ``on_air(now)`` is "inside ``[start, end)`` of today's window";
``next_edge(now)`` is the next instant ``on_air`` may flip (a window start or end, or local
midnight), so the agent can sleep until then and re-evaluate.

Pure: every function takes instants as arguments; nothing reads a clock.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass
class ServerClock:
    offset: float = 0.0  # server minus local, seconds
    known: bool = False

    def update(self, server_time: float, sent_at: float, received_at: float) -> float:
        """Record a welcome's ``server_time``; ``sent_at``/``received_at`` bracket the hello."""
        self.offset = server_time - (sent_at + received_at) / 2
        self.known = True
        return self.offset

    def server_now(self, local_now: float) -> float:
        return local_now + self.offset


def _clock(text: str) -> dt.time:
    hours, minutes = text.split(":")
    return dt.time(int(hours), int(minutes))


@dataclass(frozen=True)
class OfficeHours:
    timezone: str
    workdays: tuple[str, ...]
    start: dt.time
    end: dt.time
    days_off: dict[dt.date, str] = field(default_factory=dict)
    today: dt.date | None = None
    today_window: tuple[float, float] | None = None

    @classmethod
    def from_welcome(cls, schedule: dict[str, Any]) -> OfficeHours:
        """Parse ``welcome.schedule``; ValueError (with the field) when it is malformed."""
        try:
            today = schedule.get("today") or {}
            window = today.get("window")
            return cls(
                timezone=str(schedule["timezone"]),
                workdays=tuple(schedule["workdays"]),
                start=_clock(schedule["start"]),
                end=_clock(schedule["end"]),
                days_off={dt.date.fromisoformat(d["date"]): str(d.get("reason", "")) for d in
                          schedule.get("days_off", [])},
                today=dt.date.fromisoformat(today["date"]) if today.get("date") else None,
                today_window=(float(window[0]), float(window[1])) if window else None,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ValueError(f"welcome.schedule is malformed: {exc!r}") from None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_date(self, instant: float) -> dt.date:
        return dt.datetime.fromtimestamp(instant, self.tz).date()

    def day_off(self, day: dt.date) -> str | None:
        if day in self.days_off:
            return self.days_off[day]
        if WEEKDAYS[day.weekday()] not in self.workdays:
            return "weekend"
        return None

    def window(self, day: dt.date) -> tuple[float, float] | None:
        if day == self.today:
            return self.today_window
        if self.day_off(day) is not None:
            return None
        tz = self.tz
        return (dt.datetime.combine(day, self.start, tzinfo=tz).timestamp(),
                dt.datetime.combine(day, self.end, tzinfo=tz).timestamp())

    def on_air(self, now: float) -> bool:
        window = self.window(self.local_date(now))
        return window is not None and window[0] <= now < window[1]

    def next_edge(self, now: float) -> float:
        """The first instant after ``now`` at which :meth:`on_air` may change."""
        day = self.local_date(now)
        tz = self.tz
        candidates = []
        for offset in (0, 1):
            candidate_day = day + dt.timedelta(days=offset)
            window = self.window(candidate_day)
            if window:
                candidates += list(window)
            candidates.append(dt.datetime.combine(candidate_day + dt.timedelta(days=1), dt.time(0),
                                                  tzinfo=tz).timestamp())
        return min(c for c in candidates if c > now)

    def describe_today(self, now: float) -> str:
        """Human text for logs and ``check``: today's window in local time, or why none."""
        day = self.local_date(now)
        window = self.window(day)
        if window is None:
            return f"{day.isoformat()}: libur ({self.day_off(day) or 'day off'})"
        tz = self.tz
        start, end = (dt.datetime.fromtimestamp(t, tz).strftime("%H:%M") for t in window)
        return f"{day.isoformat()}: {start}-{end} {self.timezone}"


def wants_media(hours: OfficeHours | None, server_now: float, always_on: bool) -> bool:
    """Whether the agent should publish now: always-on, or inside a known window."""
    if always_on:
        return True
    return hours is not None and hours.on_air(server_now)
