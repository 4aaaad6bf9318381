"""Attendance reports: read the ledger for a day or a month, run the pure arithmetic."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any
from zoneinfo import ZoneInfo

from hub.core import attendance
from hub.core.attendance import Interval
from hub.core.registry import Station
from hub.core.schedule import Schedule
from hub.ledger.base import Ledger


class ReportsService:
    def __init__(self, ledger: Ledger, schedule: Schedule, full_coverage: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.ledger = ledger
        self.schedule = schedule
        self.full_coverage = full_coverage
        self.clock = clock
        self.tz = ZoneInfo(schedule.settings.timezone)

    async def _intervals_by_station(self, start: float, end: float) -> dict[str, list[Interval]]:
        grouped: dict[str, list[Interval]] = defaultdict(list)
        for interval in await self.ledger.intervals(start, end):
            grouped[interval.station].append(interval)
        return grouped

    def _rows(self, day: dt.date, stations: Iterable[Station], grouped: dict[str, list[Interval]],
              now: float) -> list[attendance.DailyRow]:
        return [attendance.daily(s, day, grouped.get(s.id, ()), self.schedule, now, self.full_coverage)
                for s in stations]

    async def daily(self, day: dt.date, stations: list[Station]) -> list[dict[str, Any]]:
        start, end = self.schedule.day_bounds(day)
        grouped = await self._intervals_by_station(start, end)
        rows = self._rows(day, stations, grouped, self.clock())
        return [{**row.as_dict(), "name": s.name, "kind": s.kind, "kecamatan": s.kecamatan}
                for row, s in zip(rows, stations, strict=True)]

    async def monthly(self, days: list[dt.date], stations: list[Station], group: str) -> list[dict[str, Any]]:
        now = self.clock()
        today = self.schedule.local_date(now)
        days = [d for d in days if d <= today]
        if not days:
            return []
        grouped = await self._intervals_by_station(self.schedule.day_bounds(days[0])[0],
                                                   self.schedule.day_bounds(days[-1])[1])
        rows = [row for day in days for row in self._rows(day, stations, grouped, now)]
        return attendance.monthly(rows, {s.id: s for s in stations}, group)

    async def activities(self, day: dt.date, stations: list[Station]) -> list[dict[str, Any]]:
        visible = {s.id: s for s in stations}
        start, end = self.schedule.day_bounds(day)
        result = []
        for item in await self.ledger.activities(start, end):
            station = visible.get(item["station"])
            if station is None:
                continue
            result.append({"id": station.id, "name": station.name, "title": item["title"],
                           "start": self._iso(item["start"]), "end": self._iso(item["end"]),
                           "live": item["end"] is None})
        return result

    def _iso(self, instant: float | None) -> str | None:
        return None if instant is None else dt.datetime.fromtimestamp(instant, self.tz).isoformat(timespec="seconds")
