"""Presence store contract: an increasing sequence and station records that round-trip."""

from __future__ import annotations

from typing import Any

from tests.backends.conftest import Backend

RECORD: dict[str, Any] = {"state": "live", "since": 1767232800.123456, "reason": "published", "status": "live",
          "activity": {"title": "Musyawarah Desa", "since": 1767232801.5}, "node": "node-1", "seq": 7}


async def test_sequence_strictly_increases(backend: Backend) -> None:
    store = backend.presence()
    numbers = [await store.next_seq() for _ in range(50)]
    assert numbers == sorted(set(numbers)) and numbers[0] >= 1


async def test_records_round_trip_exactly(backend: Backend) -> None:
    store = backend.presence()
    assert await store.load_all() == {}
    await store.save("35.09.01", RECORD)
    offline = {**RECORD, "state": "offline", "activity": None, "node": None, "seq": 8}
    await store.save("opd.dinkes", offline)
    assert await store.load_all() == {"35.09.01": RECORD, "opd.dinkes": offline}


async def test_a_newer_record_replaces_the_older(backend: Backend) -> None:
    store = backend.presence()
    await store.save("35.09.01", RECORD)
    newer = {**RECORD, "state": "offline", "seq": RECORD["seq"] + 5}
    await store.save("35.09.01", newer)
    assert (await store.load_all())["35.09.01"] == newer
