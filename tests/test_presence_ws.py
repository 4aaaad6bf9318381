"""Presence over real WebSockets: hello, heartbeats, timeouts, replacement, watchers."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.kit import RunningHub
from tests.wsclient import JSON, MSGPACK, Client, heartbeat, presence_of, station


async def test_hello_makes_station_online_for_api_and_watchers(hub: RunningHub) -> None:
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    snapshot = await watcher.recv()
    assert snapshot["t"] == "snapshot"
    assert {s["id"] for s in snapshot["stations"]} >= {"35.09.01", "opd.dinkes"}
    assert all(s["status"] == "missing" for s in snapshot["stations"])

    token = await hub.token("35.09.01")
    client, welcome = await station(hub.ws, "35.09.01", token)
    assert welcome["station"] == "35.09.01"
    assert welcome["heartbeat_s"] == 0.2
    assert welcome["schedule"]["timezone"] == "Asia/Jakarta"
    assert welcome["ice_servers"] == []

    delta = await watcher.recv_until(presence_of("35.09.01", "online"), wait=1.0)
    assert delta["seq"] > snapshot["seq"]
    assert delta["status"] == "online"
    async with httpx.AsyncClient(base_url=hub.http) as http:
        body = (await http.get("/api/v1/stations")).json()
    row = next(s for s in body["stations"] if s["id"] == "35.09.01")
    assert (row["state"], row["status"]) == ("online", "online")
    await client.close()
    closed = await watcher.recv_until(presence_of("35.09.01", "offline"))
    assert closed["reason"] == "closed"


async def test_killed_socket_goes_reconnecting_then_offline_and_ledger_holds_interval(hub: RunningHub) -> None:
    watcher = await Client.open(f"{hub.ws}/ws/watch", MSGPACK)
    await watcher.recv()
    client, _ = await station(hub.ws, "35.09.01.2001", await hub.token("35.09.01.2001"))
    await watcher.recv_until(presence_of("35.09.01.2001", "online"))
    client.abort()
    reconnecting = await watcher.recv_until(presence_of("35.09.01.2001", "reconnecting"))
    offline = await watcher.recv_until(presence_of("35.09.01.2001", "offline"), wait=5)
    assert offline["reason"] == "timeout"
    assert offline["since"] - reconnecting["since"] <= 1.0 + 0.5
    intervals = await hub.hub.ledger.inner.intervals(0, 2e9)
    mine = [i for i in intervals if i.station == "35.09.01.2001"]
    assert [i.state for i in mine] == ["online", "reconnecting"]
    assert all(i.end is not None for i in mine)
    assert mine[-1].end_reason == "timeout"


async def test_heartbeats_keep_station_online(hub: RunningHub) -> None:
    client, _ = await station(hub.ws, "35.09.02", await hub.token("35.09.02"))
    beats = asyncio.create_task(heartbeat(client))
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    await watcher.recv()
    try:
        # Ten heartbeat periods pass; a silent station would have gone reconnecting by now.
        pong = None
        for _ in range(10):
            await watcher.send({"t": "ping"})
            pong = await watcher.recv_until(lambda m: m["t"] == "pong")
        assert pong is not None
        assert hub.hub.stations.table.get("35.09.02").state == "online"
    finally:
        beats.cancel()


async def test_second_connection_replaces_first_with_4409(hub: RunningHub) -> None:
    token = await hub.token("35.09.01.2002")
    first, _ = await station(hub.ws, "35.09.01.2002", token)
    second, _ = await station(hub.ws, "35.09.01.2002", token)
    assert await first.closed_with() == 4409
    await second.send({"t": "ping"})
    assert (await second.recv())["t"] == "pong"
    assert hub.hub.stations.table.get("35.09.01.2002").state == "online"


async def test_watch_resume_with_since_sends_only_later_deltas(hub: RunningHub) -> None:
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    snapshot = await watcher.recv()
    client, _ = await station(hub.ws, "35.09.01", await hub.token("35.09.01"))
    online = await watcher.recv_until(presence_of("35.09.01", "online"))
    await client.send({"t": "activity.start", "title": "Musyawarah Desa"})
    activity = await watcher.recv_until(lambda m: m["t"] == "activity")
    await watcher.close()

    resumed = await Client.open(f"{hub.ws}/ws/watch?since={online['seq']}", JSON)
    first = await resumed.recv()
    assert first["t"] == "activity" and first["seq"] == activity["seq"]
    assert first["title"] == "Musyawarah Desa"

    stale = await Client.open(f"{hub.ws}/ws/watch?since=999999", JSON)
    assert (await stale.recv())["t"] == "snapshot"
    fresh = await Client.open(f"{hub.ws}/ws/watch?since={snapshot['seq']}", JSON)
    assert (await fresh.recv())["seq"] > snapshot["seq"]


async def test_public_watcher_never_sees_private_station(hub: RunningHub) -> None:
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    snapshot = await watcher.recv()
    assert "opd.bakesbangpol" not in {s["id"] for s in snapshot["stations"]}
    private, _ = await station(hub.ws, "opd.bakesbangpol", await hub.token("opd.bakesbangpol"))
    public, _ = await station(hub.ws, "opd.dinkes", await hub.token("opd.dinkes"))
    seen: list[dict[str, Any]] = []
    await watcher.recv_until(presence_of("opd.dinkes", "online"), into=seen)
    assert all(m.get("id") != "opd.bakesbangpol" for m in seen)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        ids = {s["id"] for s in (await http.get("/api/v1/stations")).json()["stations"]}
        assert "opd.bakesbangpol" not in ids
        assert (await http.get("/api/v1/stations/opd.bakesbangpol")).status_code == 404
    await private.close()
    await public.close()


async def test_the_same_kegiatan_announced_again_changes_nothing(hub: RunningHub) -> None:
    # The agent announces its kegiatan after every welcome; only a new title is a new one.
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    await watcher.recv()
    client, _ = await station(hub.ws, "35.09.01", await hub.token("35.09.01"))
    for title in ("Musyawarah Desa", "Musyawarah Desa", "Posyandu"):
        await client.send({"t": "activity.start", "title": title})
    events: list[dict[str, Any]] = []
    await watcher.recv_until(lambda m: m["t"] == "activity" and m["title"] == "Posyandu", into=events)
    assert [m["title"] for m in events if m["t"] == "activity"] == ["Musyawarah Desa", "Posyandu"]
    titles = [a["title"] for a in await hub.hub.ledger.inner.activities(0, 2e9) if a["station"] == "35.09.01"]
    assert titles == ["Musyawarah Desa", "Posyandu"]
