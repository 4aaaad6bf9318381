"""Several hub nodes on one (private) Redis: shared presence, node loss, Redis outages, reports.

Nodes run in-process (``start_hub``) except where a node must die for real (``kill -9`` of a
``jaga-hub serve`` process, :class:`HubProcess`). Node TTLs are short (1 s) so node loss is
quick to see.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.backends.redis_link import RedisLink
from hub.core.registry import parse_registry
from hub.core.schedule import Schedule
from hub.ledger.base import Ledger, LedgerWrite
from hub.ledger.redis import RedisLedger
from hub.ledger.sqlite import SqliteLedger
from hub.services.reports import ReportsService
from hub.settings import ScheduleSettings, Settings
from tests.kit import (
    TEST_REGISTRY,
    HubProcess,
    RunningHub,
    cluster_node,
    hub_settings,
    run_cli,
    start_hub,
    stop_hub,
    timeout,
    wait_until,
    write_config,
)
from tests.redis_server import RedisServer
from tests.wsclient import JSON, Client, heartbeat, presence_of, station

TTL_S = 1.0
OUTAGE_S = float(os.environ.get("JAGA_REDIS_OUTAGE_S", "20"))  # issue 7: Redis away for 20 s


pytestmark = pytest.mark.redis


def node(url: str, name: str) -> dict[str, Any]:
    """The [hub] keys of a cluster node."""
    return cluster_node(url, name, TTL_S)


def node_settings(tmp_path: Path, name: str, url: str) -> Settings:
    return hub_settings(tmp_path / name, hub=node(url, name))


async def start_node(tmp_path: Path, name: str, url: str) -> RunningHub:
    return await start_hub(node_settings(tmp_path, name, url))


async def ready(running: RunningHub) -> bool:
    async with httpx.AsyncClient(base_url=running.http) as http:
        return (await http.get("/readyz")).status_code == 200


async def not_ready(running: RunningHub) -> bool:
    return not await ready(running)


async def watch(running: RunningHub) -> Client:
    watcher = await Client.open(f"{running.ws}/ws/watch", JSON)
    assert (await watcher.recv())["t"] == "snapshot"
    return watcher


def state_in(snapshot: dict[str, Any], station_id: str) -> str:
    return str(next(s["state"] for s in snapshot["stations"] if s["id"] == station_id))


async def test_a_station_on_one_node_is_seen_on_the_other_within_a_second(nodes: Any) -> None:
    a, b = await nodes("node-a"), await nodes("node-b")
    watcher = await watch(b)
    client, _ = await station(a.ws, "35.09.01", await a.token("35.09.01"))  # the token is shared too
    await watcher.recv_until(presence_of("35.09.01", "online"), wait=1.0)
    async with httpx.AsyncClient(base_url=b.http) as http:
        row = (await http.get("/api/v1/stations/35.09.01")).json()
        assert row["state"] == "online"
        assert (await http.get("/readyz")).json()["checks"]["redis"] is True
    await client.close()
    await watcher.recv_until(presence_of("35.09.01", "offline"), wait=1.0)


async def test_the_newest_connection_wins_across_nodes(nodes: Any) -> None:
    a, b = await nodes("node-a"), await nodes("node-b")
    watcher = await watch(a)
    token = await a.token("35.09.01.2001")
    old, _ = await station(a.ws, "35.09.01.2001", token)
    await watcher.recv_until(presence_of("35.09.01.2001", "online"))
    new, _ = await station(b.ws, "35.09.01.2001", token)
    assert await old.closed_with() == 4409
    await new.send({"t": "ping"})
    assert (await new.recv())["t"] == "pong"
    # Node A forgot it without announcing anything: the shared record is node B's, online.
    records = await a.hub.presence_store.load_all()
    assert (records["35.09.01.2001"]["node"], records["35.09.01.2001"]["state"]) == ("node-b", "online")
    intervals = [i for i in await b.hub.ledger.inner.intervals(0, 2e10) if i.station == "35.09.01.2001"]
    assert [(i.state, i.end_reason) for i in intervals] == [("online", "hello"), ("online", None)]


async def test_the_router_names_the_node_where_a_station_is_live(nodes: Any) -> None:
    a, b = await nodes("node-a"), await nodes("node-b")
    client, _ = await station(a.ws, "opd.dinkes", await a.token("opd.dinkes"))
    assert await b.hub.router.owner_url("opd.dinkes") is None  # online, but publishing nothing
    await a.hub.stations.set_publishing("opd.dinkes", True)  # what the relay reports on WHIP

    async def points_at_a() -> bool:  # with port 0 the real URL is registered at the next heartbeat
        return bool(await b.hub.router.owner_url("opd.dinkes") == a.http)

    await wait_until(points_at_a, TTL_S, "B to route opd.dinkes to A")
    assert await a.hub.router.owner_url("opd.dinkes") is None  # here
    assert await b.hub.router.owner_url("35.09.02") is None  # nobody
    await client.close()


# A node killed for real


async def test_kill_9_of_a_node_takes_its_stations_offline_on_the_others(
        nodes: Any, tmp_path: Path, redis_url: str) -> None:
    b = await nodes("node-b")
    a = HubProcess(tmp_path / "node-a", hub=node(redis_url, "node-a"))
    await a.start()
    try:
        watcher = await watch(b)
        client, _ = await station(a.ws, "35.09.02", await b.token("35.09.02"))
        await watcher.recv_until(presence_of("35.09.02", "online"), wait=1.0)
        a.kill()
        killed_at = b.hub.clock()
        offline = await watcher.recv_until(presence_of("35.09.02", "offline"), wait=TTL_S + 1.5)
        assert offline["reason"] == "node_lost"
        assert b.hub.clock() - killed_at <= timeout(TTL_S + 1.5)
        intervals = [i for i in await b.hub.ledger.inner.intervals(0, 2e10) if i.station == "35.09.02"]
        assert intervals and all(i.end is not None for i in intervals)
        assert intervals[-1].end_reason == "node_lost" and intervals[-1].end <= killed_at
        client.abort()
    finally:
        a.kill()


# Redis going away and coming back


@pytest.fixture
async def persistent_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", persistent=True)  # the ledger must survive the restart
    server.start()
    try:
        yield server
    finally:
        server.stop()


def record_ledger_writes(monkeypatch: pytest.MonkeyPatch, running: RunningHub, writes: list[LedgerWrite]) -> None:
    """Every write a node's stations service makes: what the stations actually did."""
    apply = running.hub.ledger.apply

    async def recording(write: LedgerWrite) -> None:
        writes.append(write)
        await apply(write)

    monkeypatch.setattr(running.hub.ledger, "apply", recording)


async def test_a_redis_outage_loses_and_doubles_nothing(tmp_path: Path, persistent_redis: RedisServer,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    a = await start_node(tmp_path, "node-a", persistent_redis.url)
    b = await start_node(tmp_path, "node-b", persistent_redis.url)
    try:
        writes: list[LedgerWrite] = []
        record_ledger_writes(monkeypatch, a, writes)
        record_ledger_writes(monkeypatch, b, writes)
        on_a, on_b = await watch(a), await watch(b)
        token_1, token_2 = await a.token("35.09.01"), await a.token("opd.dinkes")
        first, _ = await station(a.ws, "35.09.01", token_1)
        second, _ = await station(b.ws, "opd.dinkes", token_2)
        await on_b.recv_until(presence_of("35.09.01", "online"))
        await on_a.recv_until(presence_of("opd.dinkes", "online"))

        persistent_redis.stop()
        for running in (a, b):
            await wait_until(partial(not_ready, running), 5, "the node to notice Redis is gone")
        # Each node keeps serving its own stations and watchers meanwhile.
        await first.close()
        await on_a.recv_until(presence_of("35.09.01", "offline"))
        again, _ = await station(a.ws, "35.09.01", token_1)  # the cached token still opens the door
        await on_a.recv_until(presence_of("35.09.01", "online"))
        beats = asyncio.create_task(heartbeat(again))
        await second.close()
        await on_b.recv_until(presence_of("opd.dinkes", "offline"))
        assert a.hub.ledger.pending and b.hub.ledger.pending
        await asyncio.sleep(OUTAGE_S)  # the outage itself lasts this long (the scenario, not a wait)
        assert a.hub.stations.table.get("35.09.01").state == "online"  # served throughout

        persistent_redis.start()
        for running in (a, b):
            await wait_until(partial(ready, running), 10, "the node to be ready again")
        # Node B's watcher is resynced with what happened on A meanwhile.
        snapshot = await on_b.recv_until(lambda m: m["t"] == "snapshot" and state_in(m, "35.09.01") == "online")
        assert state_in(snapshot, "opd.dinkes") == "offline"

        expected = SqliteLedger(tmp_path / "expected.db")
        for write in sorted(writes, key=lambda w: w.at):
            await expected.apply(write)
        assert await a.hub.ledger.inner.intervals(0, 2e10) == await expected.intervals(0, 2e10)
        assert await a.hub.ledger.inner.activities(0, 2e10) == await expected.activities(0, 2e10)
        await expected.close()
        beats.cancel()
        await again.close()
    finally:
        await stop_hub(b)
        await stop_hub(a)


# The same history, the same reports


def a_day_of_history(day: dt.date, schedule: Schedule, seed: int) -> list[LedgerWrite]:
    """Every station of the test registry, connecting, going live, dropping, over one day."""
    rng = random.Random(seed)
    start, end = schedule.day_bounds(day)
    writes = []
    for station_id in [s.id for s in parse_registry(TEST_REGISTRY)]:
        at = start + rng.uniform(0, 4 * 3600)
        state = "offline"
        while at < end:
            state = rng.choice([s for s in ("online", "live", "reconnecting", "offline") if s != state])
            writes.append(LedgerWrite("transition", station_id, state, at, rng.choice(["hello", "lost", "closed"])))
            if rng.random() < 0.2:
                title = rng.choice(["Musyawarah Desa", "Posyandu", None])
                writes.append(LedgerWrite("activity", station_id, title, at + 1.5, "start"))
            at += rng.expovariate(1 / 2400) + rng.random()
    return sorted(writes, key=lambda w: w.at)


async def test_the_same_history_gives_the_same_reports_on_sqlite_and_redis(tmp_path: Path, redis_url: str) -> None:
    schedule = Schedule(ScheduleSettings(national_holidays=False))
    stations = list(parse_registry(TEST_REGISTRY))
    month = [dt.date(2026, 2, d) for d in range(1, 29)]
    writes = [w for i, day in enumerate(month[:5]) for w in a_day_of_history(day, schedule, seed=i)]
    now = schedule.day_bounds(dt.date(2026, 3, 2))[0]
    link = RedisLink(redis_url).hold()
    ledgers: list[Ledger] = [SqliteLedger(tmp_path / "jaga.db", "n"), RedisLedger(link, "n")]
    try:
        reports = []
        for ledger in ledgers:
            for write in writes:
                await ledger.apply(write)
            service = ReportsService(ledger, schedule, 0.8, clock=lambda: now)
            daily = [await service.daily(day, stations) for day in month[:6]]
            monthly = {group: await service.monthly(month, stations, group)
                       for group in ("station", "kecamatan", "kind", "opd")}
            activities = [await service.activities(day, stations) for day in month[:5]]
            reports.append((daily, monthly, activities))
        assert reports[0] == reports[1]
        daily_rows = [row for day in reports[0][0] for row in day]
        assert any(row["live_s"] > 0 for row in daily_rows) and reports[0][2][2]  # the history is not empty
        assert {row["status"] for row in daily_rows} >= {"libur", "sebagian"}
    finally:
        for ledger in ledgers:
            await ledger.close()
        await link.release()


async def test_a_token_minted_by_the_cli_opens_every_node(nodes: Any, tmp_path: Path, redis_url: str) -> None:
    a = await nodes("node-a")
    config = write_config(tmp_path / "cli", hub=node(redis_url, "cli"))
    minted = run_cli(config, "stations", "token", "35.09.02.1001")
    assert minted.returncode == 0, minted.stderr
    client, welcome = await station(a.ws, "35.09.02.1001", minted.stdout.strip().splitlines()[-1])
    assert welcome["station"] == "35.09.02.1001"
    await client.close()


async def test_whep_on_another_node_redirects_to_the_owner_and_the_viewer_decodes(nodes: Any) -> None:
    from aiortc import RTCSessionDescription

    from hub.media.seams_peers import close_peer_connection, new_peer_connection
    from tests.media.peers import Viewer, make_offer, wait_for_state
    from tests.media.test_routes import publisher_offer

    a, b = await nodes("node-a"), await nodes("node-b")
    token = await a.token("35.09.02")
    publisher, offer = await publisher_offer()
    sdp = {"Content-Type": "application/sdp"}
    async with httpx.AsyncClient(base_url=a.http) as http:
        created = await http.post("/whip/35.09.02", content=offer, headers={"Authorization": f"Bearer {token}", **sdp})
    assert created.status_code == 201
    await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
    await wait_for_state(publisher, "connected")

    async def routed_to_a() -> bool:
        return bool(await b.hub.router.owner_url("35.09.02") == a.http)

    await wait_until(routed_to_a, 5, "B to know that A holds the stream")
    pc = new_peer_connection(())
    viewer = Viewer(pc)
    pc.addTransceiver("video", direction="recvonly")
    pc.on("track", viewer._consume)
    view_offer = await make_offer(pc)
    async with httpx.AsyncClient(base_url=b.http, follow_redirects=False) as http:
        redirected = await http.post("/whep/35.09.02", content=view_offer, headers=sdp)
        assert redirected.status_code == 307
        assert redirected.headers["location"] == f"{a.http}/whep/35.09.02"
        answer = await http.post(redirected.headers["location"], content=view_offer, headers=sdp)  # as WHEP clients do
    assert answer.status_code == 201
    await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
    await viewer.wait_for(pictures=5, pattern="A")
    assert a.hub.media.viewer_count("35.09.02") == 1
    await viewer.close()
    await close_peer_connection(publisher)


async def test_at_office_hours_one_node_announces_stations_nobody_holds(tmp_path: Path, redis_url: str) -> None:
    """08:00 WIB: offline stations turn `missing` for every watcher, announced once in the cluster."""
    wib = dt.timezone(dt.timedelta(hours=7))
    now = [dt.datetime(2026, 8, 18, 7, 59, 59, tzinfo=wib).timestamp()]
    hours = {"workdays": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00", "end": "15:00"}
    started = []
    for name in ("node-a", "node-b"):
        settings = node_settings(tmp_path, name, redis_url)
        settings = settings.replace(schedule=hours)
        started.append(await start_hub(settings, clock=lambda: now[0]))
    try:
        watcher = await watch(started[1])
        now[0] += 2  # 08:00:01
        seen: dict[str, int] = {}
        public = {s.id for s in parse_registry(TEST_REGISTRY) if s.public}

        def all_missing(message: dict[str, Any]) -> bool:
            """Counts each `missing` announcement; true once every public station had one."""
            if message["t"] == "presence" and message["status"] == "missing":
                seen[message["id"]] = seen.get(message["id"], 0) + 1
            return set(seen) >= public

        await watcher.recv_until(all_missing, wait=5)
        assert set(seen.values()) == {1}, seen
    finally:
        for running in reversed(started):
            await stop_hub(running)


async def test_an_addressed_station_listens_to_the_pendopo_through_another_node(nodes: Any) -> None:
    """Talk-back in a cluster: the operator talks on node A, the station asks node B (which
    finds the station by its token in Redis and redirects to A); talk.stop given on B ends
    the session on A."""
    from aiortc import RTCSessionDescription

    from hub.media.seams_peers import close_peer_connection
    from tests.media.test_talkback import (
        OPERATOR,
        PASSWORD,
        listen,
        listener_offer,
        operator_client,
        publish_pendopo,
    )

    a, b = await nodes("node-a"), await nodes("node-b")
    await a.hub.auth.add_operator(OPERATOR, PASSWORD)
    station_id = "35.09.02"
    token = await a.token(station_id)
    on_a, on_b = await operator_client(a.http), await operator_client(b.http)
    publisher, _ = await publish_pendopo(on_a)
    listener, offer = await listener_offer()
    try:
        async def routed_to_a() -> bool:
            return bool(await b.hub.router.owner_url("pendopo") == a.http)

        await wait_until(routed_to_a, 5, "B to know that A holds the Pendopo's stream")
        assert (await listen(b.http, token, offer))[0] == 403  # not addressed yet
        assert (await on_a.post(f"/api/v1/stations/{station_id}/talk", json={"active": True})).status_code == 200
        status, heard = await listen(b.http, token, offer)
        assert status == 201 and heard is not None
        assert heard.location.startswith(a.http)  # answered by the node that holds the stream
        await listener.setRemoteDescription(RTCSessionDescription(heard.sdp, "answer"))
        session_id = heard.location.rsplit("/", 1)[1]
        assert a.hub.media.session(session_id) is not None

        assert (await on_b.post(f"/api/v1/stations/{station_id}/talk", json={"active": False})).status_code == 200
        await wait_until(lambda: a.hub.media.session(session_id) is None, 5, "talk.stop on B to end A's session")
        assert (await listen(b.http, token, offer))[0] == 403
    finally:
        await on_a.aclose()
        await on_b.aclose()
        await close_peer_connection(listener)
        await close_peer_connection(publisher)
