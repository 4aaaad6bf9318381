"""Question store contract: questions, one vote per device, bans, slow mode (docs/questions.md)."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from hub.backends.base import QuestionStore
from hub.core.questions import Question
from tests.backends.conftest import Backend

# Real epoch times, far ahead: Redis forgets a ban by its own clock after ``until``, so a ban
# dated 1970 would be gone before the injected ``now`` could look at it.
NOW = 4_000_000_000.25


def question(id: str = "q1", station: str = "35.09.01", state: str = "pending", asked_at: float = NOW,
             **fields: object) -> Question:
    values: dict[str, object] = dict(
        id=id, station=station, text="Kapan jalan di Desa Sukorejo diperbaiki?", name="Siti", state=state,
        votes=0, asked_at=asked_at, device="d" * 64, address="203.0.113.7", activity="Musrenbang 2025",
        held="", decided_by="", decided_at=0.0)
    values.update(fields)
    return Question(**values)  # type: ignore[arg-type]


async def ids(store: QuestionStore, station: str | None, states: tuple[str, ...], limit: int = 500) -> list[str]:
    return [q.id for q in await store.list(station, states, limit)]


async def test_every_field_round_trips_verbatim(backend: Backend) -> None:
    store = backend.questions()
    asked = question(text='<script>alert("x")</script> & \'é\' — 日本語 🙂 a\u0301', name="<b>Bu Ñoño</b>",
                     asked_at=NOW + 0.1, votes=3, held="link", activity="Rapat «Desa»", address="2001:db8::1")
    assert await store.get("q1") is None
    await store.add(asked)
    assert await store.get("q1") == asked  # every field, bit for bit (0.1 survives as a float)

    decided = replace(asked, state="approved", decided_by="budi", decided_at=NOW + 60.125, held="")
    await store.update(decided)
    assert await store.get("q1") == decided


async def test_update_never_takes_back_a_vote(backend: Backend) -> None:
    """A moderator's update is built from a question read earlier; votes since then stay."""
    store = backend.questions()
    stale = question()
    await store.add(stale)
    assert await store.vote("q1", "device-a") == 1
    await store.update(replace(stale, state="approved", decided_by="budi", decided_at=NOW + 1))
    found = await store.get("q1")
    assert found is not None and (found.state, found.votes) == ("approved", 1)
    await store.update(question(id="never-asked"))  # an unknown id changes nothing
    assert await store.get("never-asked") is None


async def test_lists_by_station_and_states_newest_first_with_limit(backend: Backend) -> None:
    store = backend.questions()
    await store.add(question("a", asked_at=NOW + 1))
    await store.add(question("b", asked_at=NOW + 2, state="approved"))
    await store.add(question("c", asked_at=NOW + 3))
    await store.add(question("d", asked_at=NOW + 4, station="opd.dinkes"))
    await store.add(question("e", asked_at=NOW + 5, state="answered"))
    await store.add(question("f", asked_at=NOW + 3))  # same time as "c": greater id first

    assert await ids(store, "35.09.01", ("pending",)) == ["f", "c", "a"]
    assert await ids(store, "35.09.01", ("approved", "answered")) == ["e", "b"]
    assert await ids(store, None, ("pending",)) == ["d", "f", "c", "a"]
    assert await ids(store, None, ("pending", "approved", "answered"), limit=3) == ["e", "d", "f"]
    assert await ids(store, "35.09.01", ("rejected",)) == []
    assert await ids(store, "35.09.99", ("pending",)) == []
    assert await ids(store, None, ()) == []

    await store.update(replace(await store.get("c") or question(), state="rejected"))  # moves between lists
    assert await ids(store, "35.09.01", ("pending",)) == ["f", "a"]
    assert await ids(store, None, ("rejected",)) == ["c"]


async def test_count_pending_is_per_station(backend: Backend) -> None:
    store = backend.questions()
    assert await store.count_pending("35.09.01") == 0
    for n in range(3):
        await store.add(question(f"p{n}", asked_at=NOW + n))
    await store.add(question("other", station="opd.dinkes"))
    await store.add(question("ok", state="approved"))
    assert await store.count_pending("35.09.01") == 3
    await store.update(replace(question("p0", asked_at=NOW), state="approved"))
    assert await store.count_pending("35.09.01") == 2
    assert await store.count_pending("opd.dinkes") == 1


async def test_a_device_votes_once(backend: Backend) -> None:
    store = backend.questions()
    await store.add(question())
    await store.add(question("q2"))
    assert await store.vote("q1", "device-a") == 1
    assert await store.vote("q1", "device-a") is None
    assert await store.vote("q1", "device-b") == 2
    assert await store.vote("q2", "device-a") == 1  # a vote is per question
    assert await store.vote("nope", "device-a") is None  # no question, no vote
    found = await store.get("q1")
    assert found is not None and found.votes == 2


async def test_concurrent_votes_are_counted_exactly(backend: Backend) -> None:
    """Two store instances (two nodes, or two connections to the file) voting at once."""
    first, second = backend.questions(), backend.questions()
    await first.add(question())
    stores = [first, second]
    counts = await asyncio.gather(*(stores[n % 2].vote("q1", f"device-{n}") for n in range(50)))
    assert sorted(c for c in counts if c is not None) == list(range(1, 51))
    again = await asyncio.gather(*(stores[n % 2].vote("q1", "device-7") for n in range(10)))
    assert again == [None] * 10
    same = await asyncio.gather(*(stores[n % 2].vote("q1", "device-new") for n in range(10)))
    assert sorted(same, key=lambda c: c or 0) == [None] * 9 + [51]
    found = await second.get("q1")
    assert found is not None and found.votes == 51


async def test_bans_by_device_and_by_address_expire(backend: Backend) -> None:
    store = backend.questions()
    assert not await store.banned("dev-1", "198.51.100.1", NOW)
    await store.ban("device", "dev-1", NOW + 3600)
    await store.ban("address", "198.51.100.1", NOW + 600)
    assert await store.banned("dev-1", "192.0.2.9", NOW)  # the device, from anywhere
    assert await store.banned("dev-fresh", "198.51.100.1", NOW)  # a fresh cookie, same address
    assert not await store.banned("dev-2", "192.0.2.9", NOW)
    assert not await store.banned("dev-fresh", "198.51.100.1", NOW + 600)  # the address ban ended
    assert await store.banned("dev-1", "198.51.100.1", NOW + 3599)
    assert not await store.banned("dev-1", "198.51.100.1", NOW + 3600)
    # Kinds are separate: a device named like the address is not banned by the address ban.
    assert not await store.banned("198.51.100.1", "192.0.2.9", NOW)


async def test_a_shorter_ban_keeps_the_longer_one(backend: Backend) -> None:
    store = backend.questions()
    await store.ban("device", "dev-1", NOW + 3600)
    await store.ban("device", "dev-1", NOW + 60)  # a time-out after a ban
    assert await store.banned("dev-1", "", NOW + 120)
    await store.ban("device", "dev-1", NOW + 7200)
    assert await store.banned("dev-1", "", NOW + 7000)


async def test_slow_mode_is_per_station_and_defaults_to_none(backend: Backend) -> None:
    store = backend.questions()
    assert await store.slow_mode("35.09.01") is None
    await store.set_slow_mode("35.09.01", 30)
    await store.set_slow_mode("35.09.01", 12.5)
    await store.set_slow_mode("opd.dinkes", 0)  # explicitly off, not the default
    assert await store.slow_mode("35.09.01") == 12.5
    assert await store.slow_mode("opd.dinkes") == 0.0
    assert await store.slow_mode("35.09.02") is None


async def test_everything_survives_a_new_store(backend: Backend) -> None:
    """A restarted hub (SQLite) or another node (Redis) sees the same questions and rules."""
    store = backend.questions()
    await store.add(question(text="Ada <i>banjir</i>?"))
    await store.add(question("q2", state="approved", asked_at=NOW + 1))
    assert await store.vote("q2", "device-a") == 1
    await store.ban("address", "198.51.100.1", NOW + 600)
    await store.set_slow_mode("35.09.01", 45)
    await store.close()

    again = backend.questions()
    assert await again.get("q1") == question(text="Ada <i>banjir</i>?")
    assert await ids(again, "35.09.01", ("pending", "approved")) == ["q2", "q1"]
    assert await again.count_pending("35.09.01") == 1
    assert await again.vote("q2", "device-a") is None
    assert await again.vote("q2", "device-b") == 2
    assert await again.banned("", "198.51.100.1", NOW)
    assert await again.slow_mode("35.09.01") == 45.0
