"""A frozen or silent stream is not "live": the hub's media watchdog (docs/protocol.md).

A real hub, a real aiortc publisher whose tracks are paused and resumed, and what the API,
the watch socket and the ledger then say."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, wait_until
from tests.media.peers import Publisher
from tests.wsclient import Client, heartbeat, station

DESA = "35.09.01.2001"
STALL_S = 1.0
METRICS_TOKEN = "stall-metrics"


@pytest.fixture
async def stall_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path, media={"host_addresses": ["127.0.0.1"], "stall_s": STALL_S},
                                           hub={"metrics_token": METRICS_TOKEN}))
    try:
        yield running
    finally:
        await stop_hub(running)


async def api_station(http: httpx.AsyncClient, station_id: str) -> dict[str, Any]:
    stations = (await http.get("/api/v1/stations")).json()["stations"]
    return next(s for s in stations if s["id"] == station_id)


async def test_a_stall_ends_live_in_the_api_the_watchers_and_the_ledger(stall_hub: RunningHub) -> None:
    hub = stall_hub.hub
    agent, _ = await station(stall_hub.ws, DESA, await stall_hub.token(DESA))
    beating = asyncio.create_task(heartbeat(agent))
    watcher = await Client.open(f"{stall_hub.ws}/ws/watch", "jaga.v1.json")
    publisher = await Publisher.start(hub.media, DESA)
    try:
        async with httpx.AsyncClient(base_url=stall_hub.http) as http:
            async def state_and_media() -> tuple[str, str]:
                found = await api_station(http, DESA)
                return found["state"], found["media"]

            async def live_with_video() -> bool:  # wait_until wants a truth value: a tuple always is one
                return await state_and_media() == ("live", "video")

            await wait_until(lambda: hub.stations.table.get(DESA).state == "live", message="live")
            await wait_until(live_with_video, message="live with video")

            stalled_at = time.monotonic()
            publisher.pause("audio", "video")
            event = await watcher.recv_until(lambda m: m.get("t") == "presence" and m.get("id") == DESA
                                             and m.get("state") == "reconnecting", wait=10)
            noticed_after = time.monotonic() - stalled_at
            assert event["reason"] == "media_stalled" and event["media"] == ""
            assert noticed_after >= STALL_S  # not before the stall threshold...
            assert await state_and_media() == ("reconnecting", "")
            metrics = (await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
            assert 'jaga_stations_media{media="stalled"} 1.0' in metrics, metrics

            publisher.resume("audio", "video")
            event = await watcher.recv_until(lambda m: m.get("t") == "presence" and m.get("id") == DESA
                                             and m.get("state") == "live", wait=10)
            assert event["reason"] == "media_resumed"
            # audio (50 packets/s) may end the stall before the first video frame is back
            await wait_until(live_with_video, message="video again")

            # Only the video stops (an agent that stepped down): still live, media "audio".
            publisher.pause("video")
            event = await watcher.recv_until(lambda m: m.get("t") == "presence" and m.get("id") == DESA
                                             and m.get("media") == "audio", wait=10)
            assert event["state"] == "live"
            assert await state_and_media() == ("live", "audio")
            publisher.resume("video")
            await watcher.recv_until(lambda m: m.get("t") == "presence" and m.get("id") == DESA
                                     and m.get("media") == "video", wait=10)

        await hub.ledger.flush()
        intervals = [i for i in await hub.ledger.inner.intervals(0, time.time() + 60) if i.station == DESA]
        states = [(i.state, i.end_reason) for i in intervals]
        # live, then the stall once (reconnecting), then live again: the gap appears exactly once
        assert [s for s, _ in states if s in ("live", "reconnecting")][:3] == ["live", "reconnecting", "live"]
        assert states.count(("live", "media_stalled")) == 1
    finally:
        await publisher.close()
        beating.cancel()
        with contextlib.suppress(Exception):
            await watcher.close()
        with contextlib.suppress(Exception):
            await agent.close()
