"""The recordings service with a clock the test turns, the real SQLite index and a fake
recorder (the seam ``RecorderKit``): every transition of docs/recordings.md."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from hub.backends.base import Recording
from hub.backends.sqlite import SqliteCredentials
from hub.backends.sqlite_recordings import SqliteRecordings
from hub.core.recording_policy import DAY_S
from hub.core.registry import parse_registry
from hub.errors import NotFound, ProtocolViolation
from hub.services.recordings import RecordingsService
from hub.settings import RecordingSettings
from tests.kit import TEST_REGISTRY

DESA = "35.09.01.2001"
OPD = "opd.dinkes"
VP8 = {"video": "video/VP8", "audio": "audio/opus"}
H264 = {"video": "video/H264", "audio": "audio/opus"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_786_950_000.0  # 2026-08-17 10:40 in Asia/Jakarta

    def __call__(self) -> float:
        return self.now


@dataclass
class Stream:
    codec: dict[str, str] = field(default_factory=lambda: dict(VP8))

    def codecs(self) -> dict[str, str]:
        return self.codec


@dataclass
class FakeRecorder:
    stream: Stream
    path: Path
    start_time_s: float
    on_error: Any
    clock: Clock
    running: bool = False
    cpu_s: float = 0.25

    def start(self) -> None:
        self.running = True
        self.path.write_bytes(b"x" * 100)
        os.utime(self.path, (self.clock(), self.clock()))  # written "now", by the test's clock

    def stop(self) -> float:
        self.running = False
        return self.start_time_s + 1


@dataclass
class FakeFinished:
    path: Path
    duration_s: float
    bytes: int
    video_codec: str
    audio_codec: str


class FakeKit:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.recorders: list[FakeRecorder] = []
        self.finished: list[tuple[list[Path], Path]] = []
        self.fail = False

    def recorder(self, stream: Any, part_path: Path, start_time_s: float, on_error: Any) -> FakeRecorder:
        recorder = FakeRecorder(stream, part_path, start_time_s, on_error, self.clock)
        self.recorders.append(recorder)
        return recorder

    def finish(self, parts: list[Path], out: Path) -> FakeFinished:
        if self.fail:
            raise ValueError("no keyframe in any part")
        self.finished.append((list(parts), out))
        data = b"".join(p.read_bytes() for p in parts)
        out.write_bytes(data)
        return FakeFinished(out, 60.0 * len(parts), len(data), "video/VP8", "audio/opus")


class World:
    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.tmp_path = tmp_path
        self.clock = Clock()
        self.kit = FakeKit(self.clock)
        self.streams: dict[str, Stream] = {}
        self.store = SqliteRecordings(tmp_path / "jaga.db")
        self.credentials = SqliteCredentials(tmp_path / "jaga.db")
        self.settings = RecordingSettings(**{"kinds": ("desa", "kecamatan"), "min_free_bytes": 0, **settings})
        self.root = tmp_path / "recordings"
        self.service = self.new_service()

    def new_service(self) -> RecordingsService:
        return RecordingsService(self.settings, self.root, parse_registry(TEST_REGISTRY), self.store,
                                 self.credentials, self.streams.get, kit=self.kit, clock=self.clock)

    async def publish(self, station: str, codecs: dict[str, str] = VP8, service: Any = None) -> None:
        self.streams[station] = Stream(dict(codecs))
        await (service or self.service).publishing_changed(station, True)

    async def unpublish(self, station: str) -> None:
        self.streams.pop(station, None)
        await self.service.publishing_changed(station, False)

    async def activity(self, station: str, title: str | None, service: Any = None) -> None:
        value = {"title": title, "since": self.clock.now} if title else None
        await (service or self.service).activity_changed(station, value)

    async def only(self) -> Recording:
        found = await self.store.list()
        assert len(found) == 1, found
        return found[0]

    async def actions(self) -> list[tuple[str, str, str]]:
        return [(e["actor"], e["action"], e["detail"]) for e in reversed(await self.credentials.audit_log())]


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path)
    try:
        yield w
    finally:
        await w.service.stop()
        await w.store.close()
        await w.credentials.close()


async def test_an_activity_is_recorded_and_finished_into_one_file(world: World) -> None:
    await world.publish(DESA)
    assert await world.store.list() == []  # live, no activity: nothing
    await world.activity(DESA, "Musyawarah Desa")
    started = await world.only()
    assert (started.station, started.title, started.state, started.reason) == (DESA, "Musyawarah Desa",
                                                                                 "recording", "activity")
    assert started.day == "2026-08-17" and started.end is None
    assert started.parts == (f"{DESA}/2026-08-17/{started.id}/part-1.webm",)
    assert world.kit.recorders[0].running and world.kit.recorders[0].start_time_s == 0.0
    assert world.service.station_status(DESA)["recording"] is True

    world.clock.now += 60
    await world.activity(DESA, None)
    assert not world.kit.recorders[0].running  # the part closes at once …
    await world.service.finished()  # … the file is made in the worker thread
    done = await world.only()
    assert done.state == "done" and done.end == world.clock.now and done.parts == ()
    assert done.path == f"{DESA}/2026-08-17/{done.id}.webm"
    assert (world.root / done.path).read_bytes() == b"x" * 100
    assert (done.duration_s, done.bytes, done.video_codec, done.audio_codec) == (60.0, 100, "video/VP8",
                                                                               "audio/opus")
    assert not (world.root / DESA / "2026-08-17" / done.id).exists()  # parts and their folder gone
    assert world.service.metrics()["bytes"] == 100


async def test_recording_waits_for_the_publisher_and_h264_makes_mp4(world: World) -> None:
    await world.activity(DESA, "Rapat")
    assert await world.store.list() == []
    await world.publish(DESA, H264)
    assert (await world.only()).parts[0].endswith("/part-1.mp4")


async def test_only_recorded_kinds_and_not_when_disabled(tmp_path: Path) -> None:
    w = World(tmp_path, enabled=False)
    await w.publish(DESA)
    await w.activity(DESA, "Rapat")
    await w.publish(OPD)
    assert await w.store.list() == []
    await w.store.close()
    await w.credentials.close()


async def test_a_kind_not_recorded_is_not_recorded(world: World) -> None:
    await world.publish(OPD)
    await world.activity(OPD, "Rapat Dinas")
    assert await world.store.list() == []


async def test_a_publisher_change_is_a_new_part_of_the_same_recording(world: World) -> None:
    await world.publish(DESA)
    await world.activity(DESA, "Musyawarah Desa")
    world.clock.now += 30
    await world.unpublish(DESA)  # the link dropped
    assert not world.kit.recorders[0].running
    assert (await world.only()).state == "recording"
    world.clock.now += 10
    await world.service.tick()
    await world.publish(DESA)  # back within resume_s
    second = world.kit.recorders[1]
    assert second.running and second.start_time_s == 40.0  # wall time since the start: a 10 s gap
    recording = await world.only()
    assert [Path(p).name for p in recording.parts] == ["part-1.webm", "part-2.webm"]

    # A take-over reported as a new stream (publishing again without a stop) closes the part too.
    await world.publish(DESA)
    assert not second.running and world.kit.recorders[2].running
    await world.activity(DESA, None)
    await world.service.finished()
    [(parts, out)] = world.kit.finished
    assert [p.name for p in parts] == ["part-1.webm", "part-2.webm", "part-3.webm"]
    assert (await world.only()).state == "done"


async def test_a_publisher_away_past_resume_s_finishes_the_recording(world: World) -> None:
    await world.publish(DESA)
    await world.activity(DESA, "Musyawarah Desa")
    await world.unpublish(DESA)
    world.clock.now += 120
    await world.service.tick()
    assert (await world.only()).state == "recording"
    world.clock.now += 1
    await world.service.tick()
    await world.service.finished()
    assert (await world.only()).state == "done"
    # Back later, the activity still running: a new recording.
    await world.publish(DESA)
    assert [r.state for r in await world.store.list()] == ["recording", "done"]


async def test_another_activity_is_another_recording(world: World) -> None:
    await world.publish(DESA)
    await world.activity(DESA, "Rapat pagi")
    world.clock.now += 5
    await world.activity(DESA, "Rapat siang")
    await world.service.finished()
    assert [(r.title, r.state) for r in await world.store.list()] == [("Rapat siang", "recording"),
                                                                       ("Rapat pagi", "done")]


async def test_operator_rekam_records_any_station_until_stopped_audited(world: World) -> None:
    await world.publish(OPD)
    status = await world.service.set_recording(OPD, True, "budi")
    assert status["recording"] is True
    recording = await world.only()
    assert (recording.title, recording.reason) == ("Rekaman operator", "operator:budi")
    world.clock.now += 30
    await world.service.set_recording(OPD, False, "budi")
    await world.service.finished()
    assert (await world.only()).state == "done"
    assert await world.actions() == [("budi", "recording.start", OPD), ("budi", "recording.stop", OPD)]
    with pytest.raises(NotFound):
        await world.service.set_recording("35.99.99", True, "budi")


async def test_operator_stop_holds_until_the_activity_changes(world: World) -> None:
    await world.publish(DESA)
    await world.activity(DESA, "Rapat")
    await world.service.set_recording(DESA, False, "budi")
    await world.service.tick()
    await world.service.finished()
    assert [r.state for r in await world.store.list()] == ["done"]
    world.clock.now += 5
    await world.activity(DESA, "Rapat berikutnya")  # the override ends: recorded again
    assert [r.state for r in await world.store.list()] == ["recording", "done"]


async def test_rekam_without_activity_gives_way_to_the_activitys_recording(world: World) -> None:
    await world.publish(DESA)
    await world.service.set_recording(DESA, True, "budi")
    world.clock.now += 5
    await world.activity(DESA, "Musyawarah Desa")
    await world.service.finished()
    assert [(r.title, r.reason, r.state) for r in await world.store.list()] == [
        ("Musyawarah Desa", "activity", "recording"), ("Rekaman operator", "operator:budi", "done")]


async def test_restart_continues_the_same_recording_within_resume_s(world: World) -> None:
    await world.publish(DESA)
    await world.activity(DESA, "Musyawarah Desa")
    first = await world.only()
    # kill -9: the old service is simply gone (its part is on disk, the index says recording).
    world.clock.now += 20
    restarted = world.new_service()
    await restarted.start()
    assert (await world.only()).state == "recording"
    await world.publish(DESA, service=restarted)
    await world.activity(DESA, "Musyawarah Desa", service=restarted)  # the station announces it again
    continued = await world.only()
    assert continued.id == first.id and len(continued.parts) == 2
    assert world.kit.recorders[-1].start_time_s == 20.0
    await restarted.activity_changed(DESA, None)
    await restarted.finished()
    assert (await world.only()).state == "done"
    await restarted.stop()


async def test_restart_finishes_what_nobody_continues(world: World) -> None:
    await world.publish(OPD)
    await world.service.set_recording(OPD, True, "budi")  # its part last written 530 s before the restart
    world.clock.now += 500
    await world.publish(DESA)
    await world.activity(DESA, "Musyawarah Desa")  # its part 30 s before: waits for resume_s
    world.clock.now += 30
    restarted = world.new_service()
    await restarted.start()
    await restarted.finished()
    assert [r.state for r in await world.store.list(station=OPD)] == ["done"]
    assert [r.state for r in await world.store.list(station=DESA)] == ["recording"]
    world.clock.now += 91  # 121 s after its part was last written
    await restarted.tick()
    await restarted.finished()
    done = (await world.store.list(station=DESA))[0]
    assert done.state == "done" and done.end == world.clock.now - 121
    await restarted.stop()


async def test_restart_with_another_title_finishes_the_old_one(world: World) -> None:
    await world.publish(DESA)
    await world.activity(DESA, "Rapat pagi")
    world.clock.now += 5
    restarted = world.new_service()
    await restarted.start()
    await world.publish(DESA, service=restarted)
    await world.activity(DESA, "Rapat siang", service=restarted)
    await restarted.finished()
    assert [(r.title, r.state) for r in await world.store.list()] == [("Rapat siang", "recording"),
                                                                       ("Rapat pagi", "done")]
    await restarted.stop()


async def test_a_clean_stop_leaves_the_recording_open_for_the_next_start(world: World) -> None:
    await world.publish(DESA)
    await world.activity(DESA, "Rapat")
    await world.service.stop()
    assert not world.kit.recorders[0].running
    assert (await world.only()).state == "recording"
    await world.activity(DESA, None)  # after stop: nothing more happens
    assert (await world.only()).state == "recording"


async def test_a_recording_that_cannot_be_finished_is_failed_and_keeps_its_parts(world: World) -> None:
    world.kit.fail = True
    await world.publish(DESA)
    await world.activity(DESA, "Rapat")
    await world.activity(DESA, None)
    await world.service.finished()
    failed = await world.only()
    assert failed.state == "failed" and (world.root / failed.parts[0]).exists()
    assert world.service.metrics()["errors"] == 1


async def test_a_write_error_ends_the_part_and_is_counted(world: World) -> None:
    await world.publish(DESA)
    await world.activity(DESA, "Rapat")
    recorder = world.kit.recorders[0]
    recorder.on_error(OSError(28, "No space left on device"))
    assert not recorder.running and world.service.metrics()["errors"] == 1
    await world.service.tick()
    assert len(world.kit.recorders) == 1  # not at once again …
    world.clock.now += 31
    await world.service.tick()
    assert len(world.kit.recorders) == 2  # … but after a while, in the same recording
    assert len((await world.only()).parts) == 2


async def test_the_disk_floor_stops_recording_raises_the_alarm_and_resumes(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    service = world.service
    service.floor.min_free_bytes = 1000
    free = {"bytes": 5000}
    monkeypatch.setattr(shutil, "disk_usage", lambda path: type("U", (), {"free": free["bytes"]})())
    await world.publish(DESA)
    await world.activity(DESA, "Rapat")
    await service.tick()
    assert (await service.status())["alarm"] is None

    free["bytes"] = 900
    world.clock.now += 5
    await service.tick()
    assert not world.kit.recorders[0].running
    status = await service.status()
    assert status["alarm"]["kind"] == "disk_low" and status["alarm"]["free_bytes"] == 900
    assert service.metrics()["disk_free"] == 900 and service.metrics()["active"] == 0
    assert service.metrics()["cpu_s"] == 0.25  # the stopped recorder's own CPU, kept
    world.clock.now += 500  # however long: the recording waits for the disk
    await service.tick()
    assert (await world.only()).state == "recording"

    free["bytes"] = 1100
    world.clock.now += 5
    await service.tick()
    assert (await service.status())["alarm"] is None
    assert world.kit.recorders[-1].running and len((await world.only()).parts) == 2


async def test_retention_deletes_oldest_first_files_too_audited(tmp_path: Path) -> None:
    w = World(tmp_path, retention_days=30, max_bytes=250)
    now = w.clock.now
    for name, age_days, size, state in (("a", 40, 100, "done"), ("b", 20, 100, "done"), ("c", 10, 100, "done"),
                                        ("d", 50, 100, "recording")):
        path = f"{DESA}/x/{name}.webm"
        (w.root / path).parent.mkdir(parents=True, exist_ok=True)
        (w.root / path).write_bytes(b"x")
        await w.store.add(Recording(id=name, station=DESA, title="Rapat", start=now - age_days * DAY_S,
                                    end=now, bytes=size, state=state, path=path, day="2026-01-01"))
    deleted = await w.service.sweep_retention(now)
    assert deleted == ["a", "b"]  # a: older than 30 days; b: 400 → 200 bytes ≤ 250 (d is open: kept)
    assert [r.id for r in await w.store.list()] == ["c", "d"]
    assert not (w.root / f"{DESA}/x/a.webm").exists() and (w.root / f"{DESA}/x/c.webm").exists()
    assert [a for _, a, _ in await w.actions()] == ["recording.delete", "recording.delete"]
    await w.store.close()
    await w.credentials.close()


async def test_hide_needs_a_reason_and_show_and_hide_are_audited(world: World) -> None:
    await world.store.add(Recording(id="r1", station=DESA, title="Rapat", start=world.clock.now, end=None))
    with pytest.raises(ProtocolViolation):
        await world.service.hide("r1", "  ", "budi")
    hidden = await world.service.hide("r1", "wajah anak", "budi")
    assert (hidden.visible, hidden.hidden_reason) == (False, "wajah anak")
    assert await world.store.get("r1") == hidden
    shown = await world.service.show("r1", "sari")
    assert shown == replace(hidden, visible=True, hidden_reason="")
    assert await world.actions() == [("budi", "recording.hide", f"r1 {DESA}: wajah anak"),
                                     ("sari", "recording.show", f"r1 {DESA}")]
    with pytest.raises(NotFound):
        await world.service.show("nope", "sari")


async def test_changes_queued_by_the_stations_service_apply_in_order(world: World) -> None:
    import asyncio

    runner = asyncio.create_task(world.service.run())
    try:
        world.streams[DESA] = Stream()
        world.service.notify_publishing(DESA, True)
        world.service.notify_activity(DESA, {"title": "Rapat", "since": world.clock.now})
        world.service.notify_activity(DESA, None)
        await world.service.settled()
        await world.service.finished()
        assert (await world.only()).state == "done"
    finally:
        runner.cancel()
