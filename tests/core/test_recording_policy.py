"""The recordings' rules: when to record, resume, retention, the disk floor (no I/O)."""

from __future__ import annotations

from hub.core.recording_policy import (
    DAY_S,
    Action,
    ActivityKey,
    DiskFloor,
    FloorChange,
    Held,
    Kept,
    StationFacts,
    decide,
    expired,
    may_resume,
    wanted,
)

KINDS = ("desa", "kecamatan")
MEETING = ActivityKey("Musyawarah Desa", 100.0)


def act(facts: StationFacts, held: Held | None = None, *, disk_low: bool = False, now: float = 200.0,
        enabled: bool = True) -> Action:
    return decide(facts, held, kinds=KINDS, enabled=enabled, disk_low=disk_low, now=now, resume_s=120.0)


def test_an_activity_of_a_recorded_kind_is_wanted_an_override_wins() -> None:
    assert wanted(StationFacts("desa", MEETING, live=False), KINDS)
    assert not wanted(StationFacts("opd", MEETING, live=True), KINDS)
    assert not wanted(StationFacts("desa", None, live=True), KINDS)
    assert wanted(StationFacts("opd", None, live=True, override=True), KINDS)
    assert not wanted(StationFacts("desa", MEETING, live=True, override=False), KINDS)
    assert not wanted(StationFacts("desa", MEETING, live=True, override=True), KINDS, enabled=False)


def test_start_needs_the_stream_and_disk() -> None:
    assert act(StationFacts("desa", MEETING, live=True)) == Action.START
    assert act(StationFacts("desa", MEETING, live=False)) == Action.NONE
    assert act(StationFacts("desa", MEETING, live=True), disk_low=True) == Action.NONE
    assert act(StationFacts("opd", MEETING, live=True)) == Action.NONE


def test_a_held_recording_pauses_continues_and_finishes() -> None:
    writing = Held(MEETING, writing=True)
    assert act(StationFacts("desa", MEETING, live=True), writing) == Action.NONE
    assert act(StationFacts("desa", MEETING, live=False), writing) == Action.PAUSE
    assert act(StationFacts("desa", MEETING, live=True), writing, disk_low=True) == Action.PAUSE
    assert act(StationFacts("desa", None, live=True), writing) == Action.FINISH  # activity.stop
    assert act(StationFacts("desa", MEETING, live=True, override=False), writing) == Action.FINISH

    away = Held(MEETING, writing=False, away_since=150.0)
    assert act(StationFacts("desa", MEETING, live=True), away, now=260.0) == Action.NEW_PART
    assert act(StationFacts("desa", MEETING, live=False), away, now=270.0) == Action.NONE  # 120 s: still waits
    assert act(StationFacts("desa", MEETING, live=False), away, now=270.5) == Action.FINISH
    # A low disk waits for the disk, however long.
    paused = Held(MEETING, writing=False)
    assert act(StationFacts("desa", MEETING, live=True), paused, disk_low=True, now=10_000.0) == Action.NONE
    assert act(StationFacts("desa", MEETING, live=True), paused, now=10_000.0) == Action.NEW_PART


def test_another_activity_is_another_recording() -> None:
    other = ActivityKey("Rapat RT", 300.0)
    assert act(StationFacts("desa", other, live=True), Held(MEETING, writing=True)) == Action.RESTART
    assert act(StationFacts("desa", other, live=False), Held(MEETING, writing=False)) == Action.FINISH
    # An operator's recording without an activity ends when one starts; the activity's begins.
    assert act(StationFacts("desa", MEETING, live=True), Held(None, writing=True)) == Action.RESTART
    # Rekam during an activity of a kind not recorded: the same key, kept.
    assert act(StationFacts("opd", MEETING, live=True, override=True), Held(MEETING, writing=True)) == Action.NONE


def test_resume_after_restart_is_same_title_within_resume_s() -> None:
    assert may_resume("Musyawarah Desa", 1000.0, "Musyawarah Desa", 1120.0, 120.0)
    assert not may_resume("Musyawarah Desa", 1000.0, "Musyawarah Desa", 1120.5, 120.0)
    assert not may_resume("Musyawarah Desa", 1000.0, "Rapat RT", 1001.0, 120.0)


def test_retention_deletes_old_finished_recordings_oldest_first() -> None:
    now = 400 * DAY_S
    kept = [Kept("new", now - DAY_S, 10, True), Kept("old", now - 366 * DAY_S, 10, True),
            Kept("older", now - 390 * DAY_S, 10, True), Kept("open", now - 399 * DAY_S, 10, False)]
    assert expired(kept, now, 365, 0) == ["older", "old"]
    assert expired(kept, now, 1000, 25) == ["older", "old"]  # 40 → 20 ≤ 25; the open one stays
    assert expired(kept, now, 1000, 0) == []
    # The oldest few of many: the total comes from the store.
    assert expired(kept[:2], now, 1000, 100, total_bytes=105) == ["old"]


def test_the_disk_floor_has_hysteresis() -> None:
    floor = DiskFloor(1000)
    assert floor.observe(5000, 1.0) == FloorChange.NONE and not floor.low
    assert floor.observe(999, 2.0) == FloorChange.LOW and floor.low and floor.since == 2.0
    assert floor.observe(500, 3.0) == FloorChange.NONE
    assert floor.observe(1050, 4.0) == FloorChange.NONE  # above the floor, not above the margin
    assert floor.observe(1100, 5.0) == FloorChange.RECOVERED and not floor.low
    assert DiskFloor(0).observe(0, 1.0) == FloorChange.NONE  # 0: no floor
