"""HLS through the shipped nginx cache (deploy/nginx/jaga.conf "HLS cache"): a real hub, a
real H.264 test-pattern agent, a real nginx. Many viewers asking for the same blocking
playlist or the same preload-hinted part at once make one request to the hub between them;
an immutable part is served from the cache the second time; an error is never kept, so a
station that goes live plays through the same nginx at once.

What the hub saw is read from its ``/metrics`` (``jaga_hls_requests_total``), straight from
the hub, not through nginx.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from clients.agent import Agent
from tests.clients.helpers import agent_config, start_agent
from tests.kit import timeout
from tests.proxy.conftest import Proxied
from tests.proxy.tls import Tls

STATION = "35.09.01"
HLS = {"part_s": 0.5, "segment_s": 2.0, "idle_s": 30.0}
METRICS_TOKEN = "hls-cache-test"
VIEWERS = 50
REQUESTS = re.compile(r'^jaga_hls_requests_total\{kind="([a-z]+)"\} ([0-9.e+]+)$', re.M)
HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+/p(\d+)\.(\d+)\.m4s)"')
PART = re.compile(r'#EXT-X-PART:[^\n]*URI="([^"]+)"')


async def start(proxied: Callable[..., Awaitable[Proxied]]) -> Proxied:
    return await proxied(hls=HLS, recording={"enabled": False}, hub={"metrics_token": METRICS_TOKEN})


async def hub_requests(deployment: Proxied) -> Counter[str]:
    """``jaga_hls_requests_total`` by kind, as the hub itself counts them."""
    async with httpx.AsyncClient(base_url=deployment.running.http, timeout=timeout(10)) as direct:
        response = await direct.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    response.raise_for_status()
    return Counter({kind: int(float(value)) for kind, value in REQUESTS.findall(response.text)})


def viewers(deployment: Proxied, tls: Tls) -> httpx.AsyncClient:
    """Through nginx, one connection per request in flight (no HTTP/2: like separate players)."""
    return httpx.AsyncClient(base_url=f"{deployment.url}/hls/{STATION}/", verify=tls.client_context(),
                             timeout=timeout(20), limits=httpx.Limits(max_connections=4 * VIEWERS))


async def go_live(deployment: Proxied, tmp_path: Path) -> Agent:
    running = deployment.running
    agent = await start_agent(agent_config(tmp_path, running, STATION, await running.token(STATION),
                                           video={"codec": "H264"}))
    await agent.wait_until(lambda a: a.state == "live", 20)
    return agent


async def test_viewers_asking_at_once_make_one_hub_request_and_parts_are_hits(
        proxied: Callable[..., Awaitable[Proxied]], tls: Tls, tmp_path: Path) -> None:
    deployment = await start(proxied)
    agent = await go_live(deployment, tmp_path)
    try:
        async with viewers(deployment, tls) as http:
            first = await http.get("index.m3u8")  # starts packaging; the hub answers when a part exists
            assert first.status_code == 200, first.text
            hint = HINT.search(first.text)
            assert hint is not None, first.text
            part_uri, msn, index = hint.group(1), int(hint.group(2)), int(hint.group(3))
            playlist_uri = f"index.m3u8?_HLS_msn={msn}&_HLS_part={index}"

            # (a) 50 players ask for the next playlist state and the hinted part, all at once:
            # both block in the hub until the part exists.
            before = await hub_requests(deployment)
            answers = await asyncio.gather(*(http.get(uri) for uri in [playlist_uri, part_uri] * VIEWERS))
            after = await hub_requests(deployment)
            playlists, parts = answers[0::2], answers[1::2]
            for name, group in (("playlist", playlists), ("part", parts)):
                assert {answer.status_code for answer in group} == {200}, [a.text for a in group if a.is_error]
                assert len({answer.content for answer in group}) == 1, f"{name}: different bodies"
                statuses = Counter(answer.headers["x-cache-status"] for answer in group)
                assert statuses["MISS"] <= 2 and statuses["HIT"] >= VIEWERS - 2, (name, statuses)
            assert playlists[0].headers["cache-control"] == "public, max-age=4"
            assert f"p{msn}.{index}.m4s" in playlists[0].text
            assert parts[0].content[4:8] == b"moof"
            # ≈ 1 hub request each, not 50 (2 at most: nginx may pass one more if the first is slow)
            assert 1 <= after["blocking"] - before["blocking"] <= 2, (before, after)
            assert 1 <= after["media"] - before["media"] <= 2, (before, after)
            assert after["playlist"] == before["playlist"]

            # (b) A part already listed, fetched twice: a miss, then a hit the hub never sees.
            listed_parts = PART.findall(playlists[0].text)
            listed = listed_parts[listed_parts.index(part_uri) - 1]  # not asked through nginx yet
            before = await hub_requests(deployment)
            once = await http.get(listed)
            middle = await hub_requests(deployment)
            twice = await http.get(listed)
            after = await hub_requests(deployment)
            assert (once.status_code, twice.status_code) == (200, 200)
            assert (once.headers["x-cache-status"], twice.headers["x-cache-status"]) == ("MISS", "HIT")
            assert once.content == twice.content and twice.headers["etag"] == once.headers["etag"]
            assert middle["media"] - before["media"] == 1 and after["media"] == middle["media"]
            # The hub's headers come through the cache; HSTS is still added.
            assert twice.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert twice.headers["access-control-allow-origin"] == "*"
            assert twice.headers["strict-transport-security"] == "max-age=31536000"
    finally:
        await agent.stop()
    assert "[crit]" not in deployment.nginx.log_text() and "[alert]" not in deployment.nginx.log_text()


async def test_errors_are_not_cached_so_a_station_plays_once_live(
        proxied: Callable[..., Awaitable[Proxied]], tls: Tls, tmp_path: Path) -> None:
    deployment = await start(proxied)
    async with viewers(deployment, tls) as http:
        for _ in range(2):
            not_live = await http.get("index.m3u8")
            assert (not_live.status_code, not_live.json()["error"]["code"]) == (404, "not_live")
            assert not_live.headers["cache-control"] == "no-store"
            assert not_live.headers["x-cache-status"] == "MISS"  # asked the hub again: nothing kept

        agent = await go_live(deployment, tmp_path)
        try:
            live = await http.get("index.m3u8")
            assert live.status_code == 200, live.text
            assert "#EXT-X-PRELOAD-HINT" in live.text
            assert live.headers["x-cache-status"] == "MISS"
        finally:
            await agent.stop()
