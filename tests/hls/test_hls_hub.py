"""HLS and LL-HLS from a real hub (issue 17, docs/http-api.md "HLS"): a test-pattern agent
publishes H.264 over WHIP; the hub packages it on the first request, answers blocking
playlist requests, serves parts and segments that FFmpeg reads as the publisher's H.264 with
AAC, says clearly why it cannot (VP8, private, not live, bad queries) and stops when idle."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from clients.agent import Agent
from tests.clients.helpers import agent_config, start_agent
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, wait_until
from tests.media.recording_checks import decodes_cleanly, probe

STATION = "35.09.01"
PRIVATE = "opd.bakesbangpol"
HLS = {"part_s": 0.5, "segment_s": 2.0, "idle_s": 3.0}


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path, hls=HLS, recording={"enabled": False}))
    try:
        yield running
    finally:
        await stop_hub(running)


async def live_agent(tmp_path: Path, hub: RunningHub, codec: str = "H264", station: str = STATION) -> Agent:
    agent = await start_agent(agent_config(tmp_path, hub, station, await hub.token(station), video={"codec": codec}))
    await agent.wait_until(lambda a: a.state == "live", 20)
    return agent


def uris(playlist: str) -> list[str]:
    return [line for line in playlist.splitlines() if line and not line.startswith("#")]


def tag_values(playlist: str, tag: str) -> list[str]:
    return [line.partition(":")[2] for line in playlist.splitlines() if line.startswith(tag + ":")]


async def test_low_latency_playlist_parts_and_segments_play_as_the_publishers_h264(hub: RunningHub,
                                                                                     tmp_path: Path) -> None:
    agent = await live_agent(tmp_path, hub)
    try:
        async with httpx.AsyncClient(base_url=f"{hub.http}/hls/{STATION}/", timeout=20) as http:
            first = await http.get("index.m3u8")
            assert first.status_code == 200, first.text
            assert first.headers["content-type"].startswith("application/vnd.apple.mpegurl")
            assert first.headers["access-control-allow-origin"] == "*"
            text = first.text
            assert "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES" in text
            assert tag_values(text, "#EXT-X-PART-INF") == ["PART-TARGET=0.500"]
            assert tag_values(text, "#EXT-X-PRELOAD-HINT")
            assert tag_values(text, "#EXT-X-PROGRAM-DATE-TIME")
            init_uri = re.search(r'#EXT-X-MAP:URI="([^"]+)"', text)
            assert init_uri is not None

            # Block for the segment after the live edge: answered once it is complete.
            media_sequence = int(tag_values(text, "#EXT-X-MEDIA-SEQUENCE")[0])
            wanted = media_sequence + len(uris(text)) + 1
            blocked = await http.get("index.m3u8", params={"_HLS_msn": wanted})
            assert blocked.status_code == 200
            assert "max-age=4" in blocked.headers["cache-control"]
            segments = uris(blocked.text)
            assert any(uri.endswith(f"/s{wanted}.m4s") for uri in segments), blocked.text

            # A part named by the preload hint is served when it exists.
            hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="([^"]+)"', blocked.text)
            assert hint is not None
            part = await http.get(hint.group(1))
            assert part.status_code == 200 and part.content[4:8] == b"moof"
            assert part.headers["cache-control"] == "public, max-age=31536000, immutable"

            init = await http.get(init_uri.group(1))
            assert init.status_code == 200 and init.content[4:8] == b"ftyp"
            again = await http.get(init_uri.group(1), headers={"If-None-Match": init.headers["etag"]})
            assert again.status_code == 304

            stream = tmp_path / "stream.mp4"
            body = init.content
            listed_s = sum(float(value.rstrip(",")) for value in tag_values(blocked.text, "#EXTINF")[-3:])
            for uri in segments[-3:]:
                segment = await http.get(uri)
                assert segment.status_code == 200
                body += segment.content
            stream.write_bytes(body)
    finally:
        await agent.stop()

    file = probe(stream)
    assert (file.video_codec, file.audio_codec) == ("h264", "aac"), file.raw["streams"]
    audio = next(stream for stream in file.raw["streams"] if stream["codec_type"] == "audio")
    assert (audio["channels"], audio["sample_rate"]) == (1, "48000")  # hls.audio_channels: an office's one microphone
    assert abs(file.duration_s - listed_s) < 0.3, (file.duration_s, listed_s)  # what the playlist says
    assert decodes_cleanly(stream) == ""


async def test_plain_playlist_lists_whole_segments_only(hub: RunningHub, tmp_path: Path) -> None:
    agent = await live_agent(tmp_path, hub)
    try:
        async with httpx.AsyncClient(base_url=f"{hub.http}/hls/{STATION}/", timeout=20) as http:
            await http.get("index.m3u8")  # starts packaging
            await wait_until_segments(http, 2)
            plain = await http.get("plain.m3u8")
    finally:
        await agent.stop()
    assert plain.status_code == 200
    assert "#EXT-X-PART" not in plain.text and "PRELOAD-HINT" not in plain.text
    assert "CAN-BLOCK-RELOAD" not in plain.text
    durations = [float(value.rstrip(",")) for value in tag_values(plain.text, "#EXTINF")]
    assert len(durations) >= 2 and all(0.5 <= d <= 2.5 for d in durations), durations
    assert plain.headers["cache-control"] == "public, max-age=1"


async def wait_until_segments(http: httpx.AsyncClient, count: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        playlist = await http.get("plain.m3u8")
        if playlist.status_code == 200 and len(uris(playlist.text)) >= count:
            return
        await http.get("index.m3u8", params={"_HLS_msn": 0})  # hold on: a bad request, answered at once
        await asyncio.sleep(0.5)  # polling a playlist is what an HLS player does
    raise TimeoutError(f"{count} segments")


async def test_what_cannot_be_packaged_is_told_clearly(hub: RunningHub, tmp_path: Path) -> None:
    async with httpx.AsyncClient(base_url=f"{hub.http}/hls/", timeout=20) as http:
        not_live = await http.get(f"{STATION}/index.m3u8")
        assert (not_live.status_code, not_live.json()["error"]["code"]) == (404, "not_live")
        unknown = await http.get("no.such/index.m3u8")
        private = await http.get(f"{PRIVATE}/index.m3u8")
        assert unknown.status_code == private.status_code == 404
        assert unknown.json()["error"]["code"] == private.json()["error"]["code"] == "not_found"

        agent = await live_agent(tmp_path, hub, codec="VP8")
        try:
            vp8 = await http.get(f"{STATION}/index.m3u8")
            assert (vp8.status_code, vp8.json()["error"]["code"]) == (409, "hls_needs_h264")
            assert "WebRTC" in vp8.json()["error"]["message"]
        finally:
            await agent.stop()


async def test_bad_blocking_requests_get_clear_errors(hub: RunningHub, tmp_path: Path) -> None:
    agent = await live_agent(tmp_path, hub)
    try:
        async with httpx.AsyncClient(base_url=f"{hub.http}/hls/{STATION}/", timeout=20) as http:
            text = (await http.get("index.m3u8")).text
            live_edge = int(tag_values(text, "#EXT-X-MEDIA-SEQUENCE")[0]) + len(uris(text))
            too_far = await http.get("index.m3u8", params={"_HLS_msn": live_edge + 10})
            assert (too_far.status_code, too_far.json()["error"]["code"]) == (400, "hls_too_far")
            not_a_number = await http.get("index.m3u8", params={"_HLS_msn": "abc"})
            assert (not_a_number.status_code, not_a_number.json()["error"]["code"]) == (400, "hls_bad_query")
            part_alone = await http.get("index.m3u8", params={"_HLS_part": 1})
            assert part_alone.status_code == 400
            gone_run = await http.get("feedbeef/p1.0.m4s")
            assert (gone_run.status_code, gone_run.json()["error"]["code"]) == (404, "hls_gone")
            run = re.search(r'#EXT-X-MAP:URI="([^/"]+)/', text).group(1)  # type: ignore[union-attr]
            for name in ("passwd", "p1.0.mp4", "s-1.m4s", "i0.m4s"):
                bad_name = await http.get(f"{run}/{name}")
                assert (bad_name.status_code, bad_name.json()["error"]["code"]) == (404, "not_found"), name
            # after all that, the stream goes on
            assert (await http.get("index.m3u8")).status_code == 200
    finally:
        await agent.stop()


async def test_packaging_starts_on_demand_and_stops_when_idle(hub: RunningHub, tmp_path: Path) -> None:
    agent = await live_agent(tmp_path, hub)
    try:
        assert hub.hub.hls.packaged == {}  # live, but nobody asked: nothing packaged
        async with httpx.AsyncClient(base_url=f"{hub.http}/hls/{STATION}/", timeout=20) as http:
            assert (await http.get("index.m3u8")).status_code == 200
        assert STATION in hub.hub.hls.packaged
        await wait_until(lambda: STATION not in hub.hub.hls.packaged, 10, "packaging to stop after idle_s")
        metrics = hub.hub.hls.metrics()
        assert metrics["started"] == 1 and metrics["cpu_seconds"] > 0
    finally:
        await agent.stop()


async def test_hls_switched_off_says_so(tmp_path: Path) -> None:
    running = await start_hub(hub_settings(tmp_path, hls={"enabled": False}, recording={"enabled": False}))
    try:
        async with httpx.AsyncClient(base_url=f"{running.http}/hls/", timeout=20) as http:
            off = await http.get(f"{STATION}/index.m3u8")
            private = await http.get(f"{PRIVATE}/index.m3u8")
        assert (off.status_code, off.json()["error"]["code"]) == (404, "hls_off")
        assert (private.status_code, private.json()["error"]["code"]) == (404, "not_found")  # still not told
    finally:
        await stop_hub(running)
