"""The questions service against the real SQLite store, with a clock the test turns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hub.backends.memory import MemoryBus, MemoryPresenceStore
from hub.backends.sqlite import SqliteCredentials
from hub.backends.sqlite_questions import SqliteQuestions
from hub.core import proof
from hub.core.registry import parse_registry
from hub.core.schedule import Schedule
from hub.errors import ClientError
from hub.services.metrics import Metrics
from hub.services.questions import QuestionsService
from hub.services.watchers import Watcher, WatchService
from hub.settings import QuestionsSettings, ScheduleSettings
from jaga import wire
from tests.kit import TEST_REGISTRY, wait_until

STATION = "35.09.01.2001"
OTHER = "35.09.01.2002"
PRIVATE = "opd.bakesbangpol"
SECRET = b"k" * 32
DIFFICULTY = 4


class Clock:
    def __init__(self) -> None:
        self.now = 1_787_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Peer:
    sent: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)


@dataclass
class World:
    service: QuestionsService
    clock: Clock
    credentials: SqliteCredentials
    operator: list[dict[str, Any]]
    public: list[dict[str, Any]]
    agent: Peer

    async def ask(self, text: str = "Kapan jalan desa diperbaiki?", name: str = "", device: str = "dev-a",
                  address: str = "10.0.0.1", station: str = STATION) -> Any:
        challenge = await self.service.challenge(station)
        nonce = proof.solve(challenge["token"], challenge["difficulty"])
        return await self.service.ask(station, text, name, {"token": challenge["token"], "nonce": nonce},
                                      device, address)

    async def audit(self) -> list[tuple[str, str, str]]:
        return [(e["actor"], e["action"], e["detail"]) for e in await self.credentials.audit_log()]


def refused(exc: pytest.ExceptionInfo[ClientError]) -> tuple[int, str]:
    return exc.value.http_status, exc.value.code


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    clock = Clock()
    registry = parse_registry(TEST_REGISTRY)
    bus = MemoryBus()
    watchers = WatchService(registry, Schedule(ScheduleSettings()), MemoryPresenceStore(), bus, Metrics(),
                            history=16, backlog=16, viewers=lambda _: 0, thumb_at=lambda _: None, clock=clock)
    watchers.view[STATION] = {"activity": {"title": "Musyawarah Desa", "since": clock.now}}
    agent = Peer()
    stations = SimpleNamespace(sessions={1: SimpleNamespace(station=registry.get(STATION), peer=agent),
                                         2: SimpleNamespace(station=registry.get(OTHER), peer=Peer())})
    credentials = SqliteCredentials(tmp_path / "jaga.db")
    store = SqliteQuestions(tmp_path / "jaga.db")
    settings = QuestionsSettings(difficulty=DIFFICULTY, per_address_per_min=6, per_device_per_min=2,
                                 held_words=("bodoh",), station_moderation=(STATION,), max_pending=20)
    service = QuestionsService(settings, registry, store, bus, credentials, MemoryPresenceStore(), SECRET,
                               watchers=watchers, stations=stations, clock=clock)  # type: ignore[arg-type]
    operator: list[dict[str, Any]] = []
    public: list[dict[str, Any]] = []
    for into, is_operator, codec in ((operator, True, wire.MSGPACK), (public, False, wire.JSON)):
        async def send(message: dict[str, Any], into: list[dict[str, Any]] = into) -> None:
            frame: bytes | str = message["bytes"] if "bytes" in message else message["text"]
            decoded = wire.decode_msgpack(frame) if isinstance(frame, bytes) else wire.decode_json(frame)
            if decoded["t"] == "question":
                into.append(decoded["q"])
        watchers.attach(Watcher(send, wire.CODECS[codec], is_operator, 16), None)
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0)  # run() subscribes
    try:
        yield World(service, clock, credentials, operator, public, agent)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()
        await credentials.close()


async def test_ask_is_pending_then_approved_is_public(world: World) -> None:
    q = await world.ask(name="Siti")
    assert (q.state, q.name, q.activity, q.device, q.address) == ("pending", "Siti", "Musyawarah Desa",
                                                                     "dev-a", "10.0.0.1")
    assert await world.service.public(STATION) == []
    await wait_until(lambda: world.operator, message="operators see the pending question")
    assert world.operator[-1]["state"] == "pending" and world.operator[-1]["activity"] == "Musyawarah Desa"
    pending = await world.service.queue(["pending"])
    assert [item["id"] for item in pending] == [q.id] and pending[0]["station"] == STATION

    approved = await world.service.moderate(q.id, "approve", "budi")
    assert (approved.state, approved.decided_by) == ("approved", "budi")
    shown = await world.service.public(STATION)
    assert shown == [{"id": q.id, "text": q.text, "name": "Siti", "votes": 0, "state": "approved",
                      "asked_at": q.asked_at, "activity": "Musyawarah Desa"}]
    await wait_until(lambda: world.public and world.agent.sent, message="public and agent hear it")
    assert world.public == [shown[0]]
    assert world.agent.sent == [{"t": "question", "q": shown[0]}]
    assert world.operator[-1]["decided_by"] == "budi"
    assert ("budi", "question.approve") in [(a, b) for a, b, _ in await world.audit()]


async def test_pending_and_rejected_never_reach_the_public(world: World) -> None:
    first = await world.ask("Pertanyaan satu")
    second = await world.ask("Pertanyaan dua", device="dev-b")
    await world.service.moderate(first.id, "reject", "budi")
    await world.service.moderate(second.id, "approve", "budi")
    await world.service.moderate(second.id, "reject", "budi")  # was shown: pages must drop it
    await wait_until(lambda: len(world.operator) == 5)
    await wait_until(lambda: len(world.public) == 2)
    assert [(q["id"], q["state"]) for q in world.public] == [(second.id, "approved"), (second.id, "rejected")]
    assert all("device" not in q and "held" not in q for q in world.public)
    assert len(world.agent.sent) == 2


async def test_votes_order_the_public_list_once_per_device(world: World) -> None:
    a = await world.ask("Pertanyaan A", device="d1")
    world.clock.now += 1
    b = await world.ask("Pertanyaan B", device="d2")
    for q in (a, b):
        await world.service.moderate(q.id, "approve", "budi")
    assert [q["id"] for q in await world.service.public(STATION)] == [a.id, b.id]  # older first
    assert await world.service.vote(STATION, b.id, "d3", "10.0.0.9") == 1
    assert [q["id"] for q in await world.service.public(STATION)] == [b.id, a.id]
    with pytest.raises(ClientError) as again:
        await world.service.vote(STATION, b.id, "d3", "10.0.0.9")
    assert refused(again) == (409, "already_voted")
    with pytest.raises(ClientError) as elsewhere:
        await world.service.vote(OTHER, b.id, "d4", "10.0.0.9")
    assert refused(elsewhere)[0] == 404
    await world.service.moderate(b.id, "answered", "budi")
    assert [q["id"] for q in await world.service.public(STATION)] == [a.id, b.id]  # answered moves down
    await wait_until(lambda: any(q["votes"] == 1 for q in world.public))


async def test_voting_on_a_pending_question_is_404(world: World) -> None:
    q = await world.ask()
    with pytest.raises(ClientError) as exc:
        await world.service.vote(STATION, q.id, "d9", "10.0.0.9")
    assert refused(exc)[0] == 404


async def test_duplicate_within_the_window(world: World) -> None:
    await world.ask("Kapan jalan diperbaiki?")
    with pytest.raises(ClientError) as exc:
        await world.ask("kapan JALAN diperbaiki", device="dev-b", address="10.0.0.2")
    assert refused(exc) == (409, "duplicate")
    await world.ask("Kapan jalan diperbaiki?", station=OTHER, device="dev-c", address="10.0.0.3")  # elsewhere: fine
    world.clock.now += 601
    await world.ask("Kapan jalan diperbaiki?", device="dev-d", address="10.0.0.4")


async def test_per_device_and_per_address_limits(world: World) -> None:
    await world.ask("satu")
    await world.ask("dua")
    with pytest.raises(ClientError) as device:
        await world.ask("tiga", address="10.0.0.2")
    assert refused(device) == (429, "rate_limited") and device.value.retry_after > 0  # type: ignore[attr-defined]
    for i in range(4):  # the address has room for six, fresh cookies each
        await world.ask(f"cookie {i}", device=f"fresh-{i}")
    with pytest.raises(ClientError) as address:
        await world.ask("tujuh", device="fresh-x")
    assert refused(address) == (429, "rate_limited")
    world.clock.now += 61
    await world.ask("lagi", device="fresh-y")


async def test_slow_mode_per_station(world: World) -> None:
    await world.service.set_slow_mode(STATION, 30, "budi")
    await world.ask("satu")
    with pytest.raises(ClientError) as exc:
        await world.ask("dua")
    assert refused(exc) == (429, "slow_mode")
    assert 0 < exc.value.retry_after <= 30  # type: ignore[attr-defined]
    await world.ask("di stasiun lain", station=OTHER, device="dev-z")  # per station
    world.clock.now += 31
    await world.ask("dua")
    assert ("budi", "question.slow_mode", f"{STATION} 30s") in await world.audit()


async def test_ban_by_device_then_by_address_with_a_fresh_cookie(world: World) -> None:
    q = await world.ask("spam spam")
    banned = await world.service.moderate(q.id, "ban", "budi")
    assert banned.state == "rejected"
    with pytest.raises(ClientError) as same:
        await world.ask("lagi", address="10.9.9.9")  # same cookie, another address
    assert refused(same) == (403, "banned")
    with pytest.raises(ClientError) as fresh:
        await world.ask("lagi", device="fresh-cookie")  # fresh cookie, same address
    assert refused(fresh) == (403, "banned")
    world.clock.now += 601  # ban_address_s over: the address is free, the device is not
    await world.ask("warga lain", device="neighbour")
    with pytest.raises(ClientError) as still:
        await world.ask("lagi", address="10.9.9.8")
    assert refused(still) == (403, "banned")
    assert any(action == "question.ban" and q.id in detail for _, action, detail in await world.audit())


async def test_timeout_expires(world: World) -> None:
    q = await world.ask("ribut")
    await world.service.moderate(q.id, "timeout", "budi", minutes=5)
    with pytest.raises(ClientError) as exc:
        await world.ask("ribut lagi")
    assert refused(exc) == (403, "banned")
    world.clock.now += 5 * 60 + 1
    await world.ask("ribut lagi")
    assert ("budi", "question.timeout") in [(a, b) for a, b, _ in await world.audit()]


async def test_a_proof_is_accepted_once(world: World) -> None:
    challenge = await world.service.challenge(STATION)
    given = {"token": challenge["token"], "nonce": proof.solve(challenge["token"], DIFFICULTY)}
    await world.service.ask(STATION, "satu", "", given, "dev-a", "10.0.0.1")
    with pytest.raises(ClientError) as exc:
        await world.service.ask(STATION, "dua", "", given, "dev-b", "10.0.0.2")
    assert refused(exc) == (400, "proof")
    with pytest.raises(ClientError) as bare:
        await world.service.ask(STATION, "tiga", "", {}, "dev-c", "10.0.0.3")
    assert refused(bare) == (400, "proof")
    world.clock.now += 301
    fresh = await world.service.challenge(STATION)
    world.clock.now += 1
    old_expired = {"token": challenge["token"], "nonce": given["nonce"]}
    with pytest.raises(ClientError) as expired:
        await world.service.ask(STATION, "empat", "", old_expired, "dev-d", "10.0.0.4")
    assert refused(expired) == (400, "proof")
    assert fresh["difficulty"] == DIFFICULTY


async def test_text_rules_and_private_stations(world: World) -> None:
    with pytest.raises(ClientError) as reserved:
        await world.ask(name="B u p a t \u0456")
    assert refused(reserved) == (400, "reserved_name")
    with pytest.raises(ClientError) as long:
        await world.ask("x" * 281)
    assert refused(long) == (400, "too_long")
    with pytest.raises(ClientError) as private:
        await world.service.challenge(PRIVATE)
    assert refused(private)[0] == 404
    with pytest.raises(ClientError) as listing:
        await world.service.public(PRIVATE)
    assert refused(listing)[0] == 404
    held = await world.ask("Dasar bodoh, lihat www.contoh.id")
    assert held.held == "word:bodoh" and held.state == "pending"
    markup = await world.ask("<img src=x onerror=alert(1)>", device="dev-m")
    assert markup.text == "<img src=x onerror=alert(1)>"  # kept as typed; pages use textContent


async def test_moderation_rules(world: World) -> None:
    q = await world.ask()
    with pytest.raises(ClientError) as early:
        await world.service.moderate(q.id, "answered", "budi")
    assert refused(early) == (400, "bad_action")
    with pytest.raises(ClientError) as unknown:
        await world.service.moderate("nope", "approve", "budi")
    assert refused(unknown)[0] == 404
    with pytest.raises(ClientError) as other_station:
        await world.service.moderate(q.id, "approve", f"station:{OTHER}")
    assert refused(other_station)[0] == 403
    own = await world.service.moderate(q.id, "approve", f"station:{STATION}")
    assert own.decided_by == f"station:{STATION}"
    with pytest.raises(ClientError) as bad_state:
        await world.service.queue(["nonsense"])
    assert refused(bad_state)[0] == 400


async def test_queue_full(world: World) -> None:
    for i in range(20):
        world.clock.now += 61  # past every limit
        await world.ask(f"pertanyaan {i}", device=f"d{i}")
    world.clock.now += 61
    with pytest.raises(ClientError) as exc:
        await world.ask("satu lagi", device="late")
    assert refused(exc) == (503, "queue_full")
