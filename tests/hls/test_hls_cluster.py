"""HLS on any node of a cluster (issue 17): a station published on node A is watched over HLS
on node B; B fetches from A once per URL however many viewers ask at once, keeps the
immutable parts for the next ones, and says so clearly when A cannot be reached."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.clients.helpers import agent_config, start_agent
from tests.kit import RunningHub, wait_until

STATION = "35.09.02"
HLS = {"hls": {"part_s": 0.5, "segment_s": 2.0}, "recording": {"enabled": False}}

pytestmark = pytest.mark.redis


async def test_a_viewer_on_another_node_gets_the_owners_hls_one_fetch_per_url(
        nodes: Callable[..., Awaitable[RunningHub]], tmp_path: Path) -> None:
    a = await nodes("node-a", **HLS)
    b = await nodes("node-b", **HLS)
    agent = await start_agent(agent_config(tmp_path, a, STATION, await a.token(STATION), video={"codec": "H264"}))
    try:
        await agent.wait_until(lambda x: x.state == "live", 20)

        async def routed_to_a() -> bool:
            return bool(await b.hub.router.owner_url(STATION) == a.http)

        await wait_until(routed_to_a, 5, "B to know that A holds the stream")
        async with httpx.AsyncClient(base_url=f"{b.http}/hls/{STATION}/", timeout=20) as http:
            playlist = await http.get("index.m3u8")
            assert playlist.status_code == 200, playlist.text
            assert STATION in a.hub.hls.packaged and b.hub.hls.packaged == {}  # packaged once, on A
            hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', playlist.text)
            assert hint is not None
            fetches_before = b.hub.hls.metrics()["remote_fetches"]
            parts = await asyncio.gather(*(http.get(hint.group(1)) for _ in range(20)))  # 20 viewers at once
            assert {p.status_code for p in parts} == {200}
            assert len({p.content for p in parts}) == 1 and parts[0].content[4:8] == b"moof"
            assert parts[0].headers["cache-control"] == "public, max-age=31536000, immutable"
            assert b.hub.hls.metrics()["remote_fetches"] - fetches_before == 1  # one request to A
            again = await http.get(hint.group(1))
            assert again.content == parts[0].content
            assert b.hub.hls.metrics()["remote_fetches"] - fetches_before == 1  # kept on B
            assert b.hub.hls.metrics()["remote_cache_hits"] >= 1
    finally:
        await agent.stop()
    # the station gone: B says what A says
    async with httpx.AsyncClient(base_url=f"{b.http}/hls/{STATION}/", timeout=20) as http:
        await wait_until(lambda: not a.hub.media.is_publishing(STATION), 10, "A to see the publisher gone")
        gone = await http.get("index.m3u8")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "not_live"


async def test_an_owner_that_does_not_answer_is_a_clear_503(nodes: Callable[..., Awaitable[RunningHub]],
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = await nodes("node-a", **HLS)
    b = await nodes("node-b", **HLS)
    agent = await start_agent(agent_config(tmp_path, a, STATION, await a.token(STATION), video={"codec": "H264"}))
    try:
        await agent.wait_until(lambda x: x.state == "live", 20)

        async def knows_owner() -> bool:
            return await b.hub.router.owner_url(STATION) is not None

        await wait_until(knows_owner, 5, "B to know the owner")

        async def unreachable(station_id: str) -> str:
            return "http://127.0.0.1:9"  # as if A's address stopped answering: nothing listens there

        monkeypatch.setattr(b.hub.hls, "_owner_url", unreachable)
        async with httpx.AsyncClient(base_url=f"{b.http}/hls/{STATION}/", timeout=20) as http:
            answer = await http.get("index.m3u8")
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "hls_owner_unreachable"
        assert "retry-after" in answer.headers
    finally:
        await agent.stop()
