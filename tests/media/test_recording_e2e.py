"""An activity recorded end to end (issue 16, docs/recordings.md): a test-pattern agent
publishes over WHIP, runs an activity, and the public API lists one finished recording
whose file FFmpeg reads as the publisher's codecs, as long as the activity and at about the
bitrate the agent sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser

from tests.clients.helpers import agent_config, start_agent
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub
from tests.media.recording_checks import (
    RECORDING,
    bytes_sent,
    decodes_cleanly,
    download,
    ffprobe_path,
    finished_recording,
    probe,
    recordings_of,
)
from tests.web.browser import open_page, plays_and_seeks

STATION = "35.09.01"
ACTIVITY_S = 20.0


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    ffprobe_path()  # skip before starting anything
    running = await start_hub(hub_settings(tmp_path, recording=RECORDING))
    try:
        yield running
    finally:
        await stop_hub(running)


async def test_an_activity_becomes_one_playable_recording(hub: RunningHub, tmp_path: Path, browser: Browser) -> None:
    agent = await start_agent(agent_config(tmp_path, hub, STATION, await hub.token(STATION)))
    try:
        await agent.wait_until(lambda a: a.state == "live", 20)
        async with httpx.AsyncClient(base_url=hub.http) as http:
            sent_before, started = await bytes_sent(agent), time.monotonic()
            assert await agent.presence.send({"t": "activity.start", "title": "Musyawarah Desa"})
            await asyncio.sleep(ACTIVITY_S)  # the activity runs for this long: the thing measured
            sent, lasted = await bytes_sent(agent) - sent_before, time.monotonic() - started
            assert await agent.presence.send({"t": "activity.stop"})
            recording = await finished_recording(http, STATION)
            path = await download(http, recording["url"], tmp_path / "recording.mp4")
            assert [r["id"] for r in await recordings_of(http, STATION)] == [recording["id"]]
    finally:
        await agent.stop()

    assert recording["title"] == "Musyawarah Desa" and recording["station"] == STATION
    # The agent's default codec, H.264 (recorded as MP4); tests/media/test_recorder.py covers VP8 (WebM).
    assert "h264" in recording["video_codec"].lower() and "opus" in recording["audio_codec"].lower(), recording
    file = probe(path)
    assert (file.video_codec, file.audio_codec) == ("h264", "opus"), file.raw["streams"]
    # As long as the activity, less the wait for the first keyframe, give or take a second.
    assert lasted - 2.5 <= file.duration_s <= lasted + 1.5, (file.duration_s, lasted)
    assert abs(recording["duration_s"] - file.duration_s) <= 1.0, (recording["duration_s"], file.duration_s)
    assert recording["bytes"] == file.bytes
    # About what the agent sent (RTP payload, audio and video) over the same time: a remux
    # neither adds nor drops media; the container costs a little.
    sent_bps = 8 * sent / lasted
    print(f"activity {lasted:.1f} s, file {file.duration_s:.2f} s, {file.bitrate_bps / 1000:.0f} kbps in the file "
          f"vs {sent_bps / 1000:.0f} kbps sent")
    assert 0.7 <= file.bitrate_bps / sent_bps <= 1.3, (file.bitrate_bps, sent_bps)
    assert file.largest_video_gap() < 1.0, "frames all along: nothing lost on loopback"
    assert decodes_cleanly(path) == ""

    # Chromium plays what the recorder wrote (not only FFmpeg), and seeks in it over Range.
    page, log = await open_page(browser, f"{hub.http}/rekaman/{recording['id']}")
    landed = await plays_and_seeks(page, file.duration_s / 2)
    assert abs(landed - file.duration_s / 2) < 1.5, landed  # to a keyframe near the middle
    log.assert_clean()
