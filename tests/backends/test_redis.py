"""What only a shared Redis has: several nodes on one store, and Redis going away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.backends.redis import RedisBus, RedisPresenceStore
from hub.backends.redis_link import RedisLink
from hub.backends.redis_questions import RedisQuestions
from hub.errors import LedgerUnavailable, Unavailable
from hub.ledger.redis import RedisLedger
from tests.backends.conftest import Backend
from tests.backends.test_bus import settled, take
from tests.backends.test_ledger import HISTORY, T0, move, write
from tests.backends.test_questions import question
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


@pytest.fixture
async def redis_backend(redis_url: str, tmp_path: Path) -> AsyncIterator[Backend]:
    kit = Backend("redis", tmp_path, redis_url)
    try:
        yield kit
    finally:
        await kit.close()


async def test_replaying_writes_doubles_nothing(redis_backend: Backend) -> None:
    ledger = redis_backend.ledger()
    await write(ledger, HISTORY)
    once = await ledger.intervals(0, 2e10), await ledger.activities(0, 2e10)
    for item in HISTORY:  # as if every reply had been lost and the buffer resent everything
        await ledger.apply(item)
    assert (await ledger.intervals(0, 2e10), await ledger.activities(0, 2e10)) == once


async def test_nodes_checkpoint_recover_and_close_only_their_own_intervals(redis_backend: Backend) -> None:
    a, b = redis_backend.ledger("node-a"), redis_backend.ledger("node-b")
    await a.apply(move("35.09.01", "online", T0, "hello"))
    await b.apply(move("opd.dinkes", "online", T0 + 1, "hello"))
    await a.checkpoint(T0 + 10)
    await b.checkpoint(T0 + 20)
    await a.checkpoint(T0 + 30)
    assert await b.recover("node-b") == 1
    await a.close_all(T0 + 5, "node_lost", "node-a")  # before its last checkpoint: at the given time
    assert {(i.station, i.end, i.end_reason) for i in await a.intervals(0, 2e10)} == {
        ("35.09.01", T0 + 5, "node_lost"), ("opd.dinkes", T0 + 20, "crash")}


async def test_a_station_moving_node_closes_the_old_nodes_interval(redis_backend: Backend) -> None:
    a, b = redis_backend.ledger("node-a"), redis_backend.ledger("node-b")
    await a.apply(move("35.09.01", "online", T0, "hello"))
    await b.apply(move("35.09.01", "online", T0 + 40, "hello"))
    await a.close_all(T0 + 90, "node_lost", "node-a")  # node A dies later: nothing of A is open
    assert [(i.start, i.end, i.end_reason) for i in await a.intervals(0, 2e10)] == [
        (T0, T0 + 40, "hello"), (T0 + 40, None, None)]


async def test_an_older_record_never_overwrites_a_newer_one(redis_backend: Backend) -> None:
    a, b = redis_backend.presence(), redis_backend.presence()
    await b.save("35.09.01", {"state": "online", "node": "b", "seq": 9})
    await a.save("35.09.01", {"state": "offline", "node": "a", "seq": 8})  # published later, numbered earlier
    assert (await a.load_all())["35.09.01"] == {"state": "online", "node": "b", "seq": 9}


async def test_events_cross_nodes_byte_for_byte(redis_backend: Backend) -> None:
    a, b = redis_backend.bus(), redis_backend.bus()
    on_b = b.subscribe("events")
    await settled(b)
    await a.publish("events", b"\x93\x01\x02\xc0")
    assert await take(on_b, 1) == [b"\x93\x01\x02\xc0"]


async def test_an_audit_log_from_before_paging_is_kept_in_order(redis_backend: Backend) -> None:
    """Older hubs kept the audit log as a plain list (``jaga:audit``); its entries move to
    the paged log, oldest first, before anything is read or written."""
    import json

    from hub.backends.redis_credentials import RedisCredentials

    store = redis_backend.credentials()
    assert isinstance(store, RedisCredentials)
    for i in range(3):  # LPUSH: newest first, as the old store wrote them
        await store.client.lpush(RedisCredentials.LEGACY_AUDIT,
                                 json.dumps({"at": 1000.0 + i, "actor": "budi", "action": "login", "detail": str(i)}))
    await store.audit(2000.0, "sari", "logout", "")
    log = await store.audit_log()
    assert [(e["actor"], e["detail"]) for e in log] == [("sari", ""), ("budi", "2"), ("budi", "1"), ("budi", "0")]
    assert [e["id"] for e in log] == sorted((e["id"] for e in log), reverse=True)
    assert not await store.client.exists(RedisCredentials.LEGACY_AUDIT)


# Redis going away (a server of the test's own, stopped and started again)


@pytest.fixture
async def outage(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", persistent=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_without_redis_a_node_serves_itself_and_raises_seq_on_return(outage: RedisServer) -> None:
    link = RedisLink(outage.url).hold()
    bus, ledger = RedisBus(link), RedisLedger(link, "node-a")
    store = RedisPresenceStore(link, bus)
    try:
        listener = bus.subscribe("events")
        await bus.settle()
        before = await store.next_seq()
        outage.stop()
        with pytest.raises(LedgerUnavailable):
            await ledger.apply(move("35.09.01", "online", T0, "hello"))
        assert not link.healthy
        provisional = [await store.next_seq() for _ in range(3)]
        assert provisional == [before + 1, before + 2, before + 3]
        await bus.publish("events", b"local only")
        assert await take(listener, 1) == [b"local only"]  # this node's own watchers still hear it

        outage.start()
        await store.raise_seq()
        await bus.resubscribe()
        link.restored()
        assert await store.next_seq() == before + 4
        await bus.publish("events", b"through redis")
        assert await take(listener, 1) == [b"through redis"]
        await ledger.apply(move("35.09.01", "online", T0, "hello"))
    finally:
        await bus.close()
        await ledger.close()
        await link.release()


async def test_the_bus_notices_a_dead_connection(outage: RedisServer) -> None:
    link = RedisLink(outage.url).hold()
    bus = RedisBus(link)
    try:
        listener = bus.subscribe("events")
        await bus.settle()
        outage.stop()
        await asyncio.wait_for(link.went_down.wait(), 5)  # no command needed: the reader sees it
        assert not link.healthy and not listener.overflowed  # the recovery resyncs, not the listener
    finally:
        await bus.close()
        await link.release()


async def test_questions_answer_503_while_redis_is_away_and_keep_what_was_asked(outage: RedisServer) -> None:
    """No local fallback for questions: one nobody else could see or moderate is worse than a retry."""
    link = RedisLink(outage.url).hold()
    store = RedisQuestions(link)
    try:
        await store.add(question())
        outage.stop()
        with pytest.raises(Unavailable):
            await store.vote("q1", "device-a")
        assert not link.healthy
        outage.start()
        link.restored()
        assert await store.get("q1") == question()  # the AOF kept it
        assert await store.vote("q1", "device-a") == 1
    finally:
        await store.close()
        await link.release()
