"""The jejak service's file work: where pictures go, a restart, the disk floor, retention."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from hub.services.jejak import JejakService
from tests.kit import hub_settings

WIB = ZoneInfo("Asia/Jakarta")
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 32 + b"\xff\xd9"


class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


def wib(day: int, hour: int, minute: int, second: int = 0) -> float:
    return dt.datetime(2026, 3, day, hour, minute, second, tzinfo=WIB).timestamp()


def service(tmp_path: Path, clock: Clock, thumbnails: dict[str, tuple[bytes, float]], disk_low: bool = False,
            **recording: object) -> JejakService:
    settings = hub_settings(tmp_path, recording={"jejak_minutes": 5, **recording})
    return JejakService(settings, thumbnails, lambda: disk_low, clock)


async def test_pictures_go_under_station_day_jejak_and_a_restart_keeps_one_per_slot(tmp_path: Path) -> None:
    clock = Clock(wib(2, 8, 1, 5))
    thumbnails = {"35.09.01": (JPEG, wib(2, 8, 1))}
    first = service(tmp_path, clock, thumbnails)
    await first.tick()
    assert first.day("35.09.01", "2026-03-02") == ["08:01"]
    path = tmp_path / "var" / "recordings" / "35.09.01" / "2026-03-02" / "jejak" / "0801.jpg"
    assert path.read_bytes() == JPEG and first.file("35.09.01", "2026-03-02", "0801") == path
    assert not list(path.parent.glob(".*"))  # no temporary file left

    # A new process, the same slot: nothing added; the next slot: kept.
    thumbnails["35.09.01"] = (JPEG, wib(2, 8, 3))
    clock.at = wib(2, 8, 3, 1)
    second = service(tmp_path, clock, thumbnails)
    await second.tick()
    assert second.day("35.09.01", "2026-03-02") == ["08:01"]
    thumbnails["35.09.01"] = (JPEG, wib(2, 8, 6))
    clock.at = wib(2, 8, 6, 1)
    await second.tick()
    assert second.day("35.09.01", "2026-03-02") == ["08:01", "08:06"]


async def test_nothing_is_written_below_the_disk_floor(tmp_path: Path) -> None:
    clock = Clock(wib(2, 9, 0, 1))
    jejak = service(tmp_path, clock, {"35.09.01": (JPEG, wib(2, 9, 0))}, disk_low=True)
    await jejak.tick()
    assert jejak.day("35.09.01", "2026-03-02") == [] and jejak.saved == 0


async def test_retention_deletes_old_days_oldest_first_and_leaves_recordings_alone(tmp_path: Path) -> None:
    clock = Clock(wib(20, 12, 0))
    jejak = service(tmp_path, clock, {}, retention_days=10)
    for station, day in (("35.09.01", "2026-03-01"), ("35.09.02", "2026-03-05"), ("35.09.01", "2026-03-15")):
        path = jejak.path(station, day, "0800")
        path.parent.mkdir(parents=True)
        path.write_bytes(JPEG)
    recording = jejak.root / "35.09.02" / "2026-03-05" / "rec-1.webm"  # the recordings' own retention decides
    recording.write_bytes(b"webm")
    deleted = jejak.apply_retention(clock())
    assert [p.parent.name for p in deleted] == ["2026-03-01", "2026-03-05"]
    assert not (jejak.root / "35.09.01" / "2026-03-01").exists()
    assert recording.exists() and not (recording.parent / "jejak").exists()
    assert jejak.day("35.09.01", "2026-03-15") == ["08:00"]
