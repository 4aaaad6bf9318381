"""Jejak: which station thumbnails to keep as the day's evidence, and which days to let go. No I/O.

Theory of operation
-------------------
The day is cut into *slots* of ``minutes`` on the local clock (WIB: 08:00, 08:05, 08:10 … for
5 minutes). A station keeps **at most one picture per slot: the first thumbnail taken in it**,
saved as ``<YYYY-MM-DD>/jejak/<HHMM>.jpg`` where date and HHMM are the local time the
thumbnail was *taken* (not when it was saved), so the name says when the picture shows.

    save(station) ⇔ it has a thumbnail taken at ``at``
                    and slot(at) ≠ the slot of the last picture kept for it
                    and at > the last kept picture's time        (never the same picture again)
                    and now − at ≤ max_age_s                      (fresh: not a leftover)

The hub keeps a station's latest thumbnail in memory after the station went away; that
picture's slot already has its file, so it is never copied into later slots. Two pictures
kept for one station always lie in different slots, hence in different minutes: a file is
never overwritten. ``max_age_s`` (the slot's length) keeps a picture that waited too long
(a hub that was paused, a clock step) from being filed as evidence of a later time.

:meth:`JejakPlanner.remember` seeds what a previous process kept (the newest file of the day),
so a restarted hub does not add a second picture to a slot. Retention (:func:`expired_days`)
drops whole days, oldest first, once they are older than ``retention_days``.
Time never advances by itself: every method takes ``now``.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

NAME = re.compile(r"^([01][0-9]|2[0-3])([0-5][0-9])\.jpg$")  # HHMM.jpg
DAY = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


@dataclass(frozen=True)
class Keep:
    """One picture to save: ``station``'s thumbnail taken at ``at``, as ``day``/jejak/``hhmm``.jpg."""

    station: str
    at: float
    day: str  # YYYY-MM-DD, local
    hhmm: str  # "0805"

    @property
    def time(self) -> str:
        return f"{self.hhmm[:2]}:{self.hhmm[2:]}"


class JejakPlanner:
    def __init__(self, minutes: int, timezone: str = "Asia/Jakarta") -> None:
        if minutes < 1:
            raise ValueError("jejak minutes must be at least 1")
        self.minutes = minutes
        self.max_age_s = minutes * 60.0
        self.zone = ZoneInfo(timezone)
        self._kept: dict[str, tuple[tuple[str, int], float]] = {}  # station → (slot, at) of the last kept

    def slot(self, at: float) -> tuple[str, int]:
        """(local date, slot number in that day) of the instant ``at``."""
        local = dt.datetime.fromtimestamp(at, self.zone)
        return local.date().isoformat(), (local.hour * 60 + local.minute) // self.minutes

    def keep_for(self, station: str, at: float) -> Keep:
        local = dt.datetime.fromtimestamp(at, self.zone)
        return Keep(station, at, local.date().isoformat(), f"{local.hour:02d}{local.minute:02d}")

    def plan(self, thumbnails: Mapping[str, float], now: float) -> list[Keep]:
        """What to save now, given each station's latest thumbnail time. Call :meth:`kept`
        for each one saved (a failed write is tried again on the next call)."""
        keeps = []
        for station, at in thumbnails.items():
            if now - at > self.max_age_s or at > now + 1.0:  # stale, or from a clock that jumped back
                continue
            last = self._kept.get(station)
            if last is not None and (at <= last[1] or self.slot(at) == last[0]):
                continue
            keeps.append(self.keep_for(station, at))
        return keeps

    def kept(self, keep: Keep) -> None:
        self._kept[keep.station] = (self.slot(keep.at), keep.at)

    def remember(self, station: str, day: str, hhmm: str) -> None:
        """A picture a previous process kept (the day's newest file): its slot is taken."""
        if not NAME.match(f"{hhmm}.jpg"):
            return
        local = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(int(hhmm[:2]), int(hhmm[2:])),
                                    tzinfo=self.zone)
        at = local.timestamp()
        if station not in self._kept or self._kept[station][1] < at:
            self._kept[station] = (self.slot(at), at)

    def forget(self, station: str) -> None:
        self._kept.pop(station, None)


def expired_days(days: Iterable[str], today: str, retention_days: float) -> list[str]:
    """Days (YYYY-MM-DD) older than ``retention_days`` before ``today``, oldest first; names
    that are not dates are left alone."""
    cutoff = dt.date.fromisoformat(today) - dt.timedelta(days=retention_days)
    chosen = []
    for day in set(days):
        date = _date(day) if DAY.match(day) else None
        if date is not None and date < cutoff:
            chosen.append(day)
    return sorted(chosen)


def _date(text: str) -> dt.date | None:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        return None
