"""Recording index contract: round trip, lists newest first, open ones, retention helpers
(docs/recordings.md, "Index")."""

from __future__ import annotations

from dataclasses import replace

from hub.backends.base import Recording, RecordingStore
from tests.backends.conftest import Backend

NOW = 1_767_225_600.25  # 2026-01-01 00:00:00.25 UTC


def recording(id: str = "r1", station: str = "35.09.01", start: float = NOW, day: str = "2026-01-01",
              **fields: object) -> Recording:
    values: dict[str, object] = dict(id=id, station=station, title="Musyawarah Desa", start=start, end=None,
                                     state="recording", parts=(f"{station}/{day}/{id}/part-1.webm",), day=day)
    values.update(fields)
    return Recording(**values)  # type: ignore[arg-type]


async def ids(store: RecordingStore, **query: object) -> list[str]:
    return [r.id for r in await store.list(**query)]  # type: ignore[arg-type]


async def test_every_field_round_trips_verbatim(backend: Backend) -> None:
    store = backend.recordings()
    assert await store.get("r1") is None
    opened = recording(title='Rapat «Desa» <b>&</b> 🙂', reason="operator:budi", start=NOW + 0.1)
    await store.add(opened)
    assert await store.get("r1") == opened

    done = replace(opened, end=NOW + 3600.125, duration_s=3599.875, bytes=123_456_789, video_codec="video/VP8",
                   audio_codec="audio/opus", state="done", parts=(), path="35.09.01/2026-01-01/r1.webm",
                   visible=False, hidden_reason="wajah anak")
    await store.update(done)
    assert await store.get("r1") == done
    # Another instance (another node, the CLI) reads the same.
    assert await backend.recordings().get("r1") == done


async def test_update_of_a_missing_recording_does_nothing(backend: Backend) -> None:
    store = backend.recordings()
    await store.update(recording("ghost"))
    assert await store.get("ghost") is None
    assert await store.list() == []


async def test_lists_newest_first_by_station_day_and_before(backend: Backend) -> None:
    store = backend.recordings()
    await store.add(recording("a", start=NOW + 10))
    await store.add(recording("b", start=NOW + 20, station="35.09.02"))
    await store.add(recording("c", start=NOW + 86_400, day="2026-01-02"))
    await store.add(recording("d", start=NOW + 30))
    await store.add(recording("e", start=NOW + 30))  # a tie: greater id first

    assert await ids(store) == ["c", "e", "d", "b", "a"]
    assert await ids(store, station="35.09.01") == ["c", "e", "d", "a"]
    assert await ids(store, day="2026-01-01") == ["e", "d", "b", "a"]
    assert await ids(store, station="35.09.01", day="2026-01-01") == ["e", "d", "a"]
    assert await ids(store, before=NOW + 30) == ["b", "a"]
    assert await ids(store, limit=2) == ["c", "e"]
    assert await ids(store, limit=0) == []
    assert [r.id for r in await store.oldest(3)] == ["a", "b", "d"]


async def test_a_moved_day_or_station_leaves_its_old_lists(backend: Backend) -> None:
    store = backend.recordings()
    await store.add(recording("a"))
    await store.update(replace(recording("a"), day="2026-01-02", station="35.09.02"))
    assert await ids(store, day="2026-01-01") == []
    assert await ids(store, station="35.09.01") == []
    assert await ids(store, station="35.09.02", day="2026-01-02") == ["a"]


async def test_open_recordings_and_total_bytes_follow_state_and_size(backend: Backend) -> None:
    store = backend.recordings()
    await store.add(recording("a", bytes=100))
    await store.add(recording("b", start=NOW + 1, bytes=50, state="finishing"))
    await store.add(recording("c", start=NOW + 2, bytes=7, state="done", end=NOW + 3))
    assert [r.id for r in await store.open_recordings()] == ["a", "b"]
    assert await store.total_bytes() == 157

    await store.update(replace(recording("a"), state="done", bytes=1000, end=NOW + 5))
    await store.update(replace(recording("b", start=NOW + 1), state="failed", bytes=50))
    assert await store.open_recordings() == []
    assert await store.total_bytes() == 1057

    await store.delete("a")
    await store.delete("a")  # twice: nothing more
    assert await store.get("a") is None
    assert await ids(store) == ["c", "b"]
    assert await ids(store, station="35.09.01", day="2026-01-01") == ["c", "b"]
    assert await store.total_bytes() == 57
