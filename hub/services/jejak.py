"""Jejak: the stations' thumbnails kept as the day's evidence (docs/recordings.md).

The rules (which picture, named how, which days expire) are :mod:`hub.core.jejak`; this
service only feeds it the hub's latest thumbnails (``StationsService.thumbnails``) on the
hub's timer and does the file work: ``<dir>/<station>/<YYYY-MM-DD>/jejak/<HHMM>.jpg``,
written to a temporary name and renamed (a crash never leaves half a JPEG), in a worker
thread (a slow disk must not stall the event loop). While the recordings' disk floor is low
(``recording.min_free_bytes`` of free space in the same folder, measured by
:class:`~hub.services.recordings.RecordingsService`) nothing is written. Days older than
``recording.retention_days`` are deleted, oldest first, once an hour and at start.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from zoneinfo import ZoneInfo

from hub.core.jejak import DAY, NAME, JejakPlanner, Keep, expired_days
from hub.settings import Settings

log = logging.getLogger("jaga.jejak")

RETENTION_EVERY_S = 3600.0


class JejakService:
    def __init__(self, settings: Settings, thumbnails: Mapping[str, tuple[bytes, float]],
                 disk_low: Callable[[], bool], clock: Callable[[], float] = time.time) -> None:
        recording = settings.recording
        self.root = settings.resolve(recording.dir)
        # Whole minutes: pictures are named by their minute, so slots must not split one.
        self.minutes = max(1, round(recording.jejak_minutes)) if recording.jejak_minutes > 0 else 0
        self.retention_days = recording.retention_days
        self.disk_low = disk_low
        self.timezone = settings.schedule.timezone
        self.planner = JejakPlanner(self.minutes, self.timezone) if self.minutes > 0 else None
        self.thumbnails = thumbnails
        self.clock = clock
        self.saved = 0
        self.errors = 0
        self._seeded: set[tuple[str, str]] = set()  # (station, day) whose existing files were read
        self._next_retention = 0.0

    @property
    def enabled(self) -> bool:
        return self.planner is not None

    # -- the timer ---------------------------------------------------------------------------

    async def tick(self) -> None:
        """Save what the planner asks for; now and then, apply retention. Cheap when idle."""
        if self.planner is None:
            return
        now = self.clock()
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_EVERY_S
            await asyncio.to_thread(self.apply_retention, now)
        latest = {station: at for station, (_, at) in self.thumbnails.items()}
        keeps = self.planner.plan(latest, now)
        if not keeps:
            return
        keeps = [k for k in keeps if self._seed(k)]  # a previous process may have filled the slot
        if keeps and self.disk_low():
            return
        for keep in keeps:
            found = self.thumbnails.get(keep.station)
            if found is None or found[1] != keep.at:
                continue  # replaced since planning: the next tick plans the newer one
            try:
                await asyncio.to_thread(self._write, self.path(keep.station, keep.day, keep.hhmm), found[0])
            except OSError as exc:
                self.errors += 1
                log.error("jejak of %s not saved: %s", keep.station, exc)
                continue
            self.planner.kept(keep)
            self.saved += 1

    def _seed(self, keep: Keep) -> bool:
        """Before the first save of a station's day, remember the newest file already there;
        then whether ``keep`` is still to be saved."""
        assert self.planner is not None
        if (keep.station, keep.day) not in self._seeded:
            self._seeded.add((keep.station, keep.day))
            names = self.day(keep.station, keep.day)
            if names:
                self.planner.remember(keep.station, keep.day, names[-1].replace(":", ""))
                return bool(self.planner.plan({keep.station: keep.at}, keep.at))
        return True

    @staticmethod
    def _write(path: Path, jpeg: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.part")
        partial.write_bytes(jpeg)
        os.replace(partial, path)

    # -- reading (the HTTP routes) --------------------------------------------------------

    def path(self, station: str, day: str, hhmm: str) -> Path:
        return self.root / station / day / "jejak" / f"{hhmm}.jpg"

    def day(self, station: str, day: str) -> list[str]:
        """The day's pictures of ``station`` as "HH:MM", in order."""
        if not DAY.match(day):
            return []
        try:
            names = os.listdir(self.root / station / day / "jejak")
        except OSError:
            return []
        return sorted(f"{m[1]}:{m[2]}" for m in map(NAME.match, names) if m)

    def file(self, station: str, day: str, hhmm: str) -> Path | None:
        """The JPEG of one picture, or None (also for names that are not a day and HHMM)."""
        if not DAY.match(day) or not NAME.match(f"{hhmm}.jpg"):
            return None
        path = self.path(station, day, hhmm)
        return path if path.is_file() else None

    # -- retention ----------------------------------------------------------------------

    def apply_retention(self, now: float) -> list[Path]:
        """Delete days older than ``retention_days`` (the jejak folder, then the day's folder
        when nothing else is left in it), oldest first. Returns the jejak folders deleted."""
        if not self.root.is_dir():
            return []
        today = dt.datetime.fromtimestamp(now, ZoneInfo(self.timezone)).date().isoformat()
        by_day: dict[str, list[Path]] = {}
        for station in sorted(os.listdir(self.root)):
            station_dir = self.root / station
            if not station_dir.is_dir():
                continue
            for day in os.listdir(station_dir):
                if (station_dir / day / "jejak").is_dir():
                    by_day.setdefault(day, []).append(station_dir / day)
        deleted = []
        for day in expired_days(by_day, today, self.retention_days):
            for day_dir in by_day[day]:
                shutil.rmtree(day_dir / "jejak", ignore_errors=True)
                deleted.append(day_dir / "jejak")
                try:
                    day_dir.rmdir()  # only when empty: the recordings' files follow their own index
                except OSError:
                    pass
                self._seeded.discard((day_dir.parent.name, day))
        if deleted:
            log.info("jejak retention: deleted %d day folders older than %g days", len(deleted), self.retention_days)
        return deleted

