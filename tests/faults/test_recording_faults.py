"""Recordings under faults (issue 16, docs/recordings.md): the publisher's link drops for 10 s
in the middle of an activity, and the hub process is killed with SIGKILL during one.

* Link drop: the office's agent goes away (its WHIP session and its socket end) and a fresh
  agent of the same station comes back 10 s later, the activity still running on the hub (an
  activity ends only by ``activity.stop``). Still **one** recording, playable across the gap:
  the file covers the whole activity, with a hole where nothing was sent, frames before and
  after it, and FFmpeg decodes it all.
* ``kill -9``: a real ``jaga-hub serve`` killed mid-activity and started again. The recording is
  finished at the next start (or after ``resume_s``: the agent does not announce its activity
  again after a hub restart), never lost or doubled, and it plays up to within ~2 s of the kill.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx

from tests.clients.helpers import agent_config, start_agent
from tests.kit import HubProcess, hub_settings, start_hub, stop_hub, wait_until
from tests.media.recording_checks import (
    RECORDING,
    decodes_cleanly,
    download,
    ffprobe_path,
    finished_recording,
    probe,
    recordings_of,
)

STATION = "35.09.01.2001"
BEFORE_S, GAP_S, AFTER_S = 6.0, 10.0, 6.0
CRASH_RESUME_S = 3.0  # the restarted hub finishes the left recording this long after its last part


async def test_a_link_drop_mid_activity_leaves_one_recording_playable_across_the_gap(tmp_path: Path) -> None:
    ffprobe_path()
    hub = await start_hub(hub_settings(tmp_path, recording=RECORDING))
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION))
    agent = await start_agent(config)
    try:
        await agent.wait_until(lambda a: a.state == "live", 20)
        started = time.monotonic()
        assert await agent.presence.send({"t": "activity.start", "title": "Posyandu Balita"})
        await asyncio.sleep(BEFORE_S)  # recording before the drop
        dropped = time.monotonic()
        await agent.stop()  # the link goes: no media, no socket
        await asyncio.sleep(GAP_S)  # the outage itself
        agent = await start_agent(config)  # the office is back; the hub still has its activity
        await agent.wait_until(lambda a: a.state == "live", 20)
        back = time.monotonic()
        await asyncio.sleep(AFTER_S)
        assert await agent.presence.send({"t": "activity.stop"})
        lasted = time.monotonic() - started
        async with httpx.AsyncClient(base_url=hub.http) as http:
            recording = await finished_recording(http, STATION)
            path = await download(http, recording["url"], tmp_path / "recording.mp4")
            assert len(await recordings_of(http, STATION)) == 1
    finally:
        await agent.stop()
        await stop_hub(hub)

    file = probe(path)
    assert (file.video_codec, file.audio_codec) == ("h264", "opus")  # the agent's default codec
    # The gap is a gap in time, not a jump cut: the file is as long as the whole activity.
    assert lasted - 2.5 <= file.duration_s <= lasted + 1.5, (file.duration_s, lasted)
    drop_at, back_at = dropped - started, back - started
    assert any(t < drop_at - 1 for t in file.video_packets), "frames before the drop"
    assert any(t > back_at + 1 for t in file.video_packets), "frames after the return"
    hole = file.largest_video_gap()
    print(f"activity {lasted:.1f} s, file {file.duration_s:.2f} s, drop at {drop_at:.1f} s, back at {back_at:.1f} s, "
          f"hole in the video {hole:.2f} s")
    assert GAP_S - 1 <= hole <= back_at - drop_at + 2.5, (hole, drop_at, back_at)
    assert decodes_cleanly(path) == ""


async def test_kill_9_mid_activity_the_recording_plays_to_within_two_seconds_of_the_kill(tmp_path: Path) -> None:
    ffprobe_path()
    hub = HubProcess(tmp_path, recording={**RECORDING, "resume_s": CRASH_RESUME_S})
    await hub.start()
    agent = await start_agent(agent_config(tmp_path, hub.http, STATION, hub.token(STATION)))
    try:
        await agent.wait_until(lambda a: a.state == "live", 30)
        async with httpx.AsyncClient(base_url=hub.http) as http:
            assert await agent.presence.send({"t": "activity.start", "title": "Rapat Desa"})
            # The public sees only finished recordings: the part growing on disk shows it runs.
            parts = hub.home / "var" / "recordings" / STATION
            await wait_until(lambda: any(p.stat().st_size > 0 for p in parts.glob("*/*/part-*")), 10,
                             "a part being written", every=0.2)
            await asyncio.sleep(8.0)  # recording for a while
            killed_at = time.time()
            hub.kill()
            await hub.start()  # the same port: the agent comes back by itself
            await agent.wait_until(lambda a: a.state == "live", 30)
            recording = await finished_recording(http, STATION, wait=60)
            path = await download(http, recording["url"], tmp_path / "recording.mp4")
            assert [r["id"] for r in await recordings_of(http, STATION)] == [recording["id"]]  # not doubled
    finally:
        await agent.stop()
        hub.stop()

    file = probe(path)
    assert (file.video_codec, file.audio_codec) == ("h264", "opus")  # the agent's default codec
    recorded_before_kill = killed_at - recording["start"]
    print(f"recorded {recorded_before_kill:.2f} s before the kill; the file plays {file.duration_s:.2f} s, "
          f"last video packet at {max(file.video_packets):.2f} s")
    # Playable up to at most ~2 s before the kill (plus the first keyframe's wait at the start).
    assert file.duration_s >= recorded_before_kill - 2.5, (file.duration_s, recorded_before_kill)
    assert max(file.video_packets) >= recorded_before_kill - 2.5
    assert file.duration_s <= recorded_before_kill + 1.5, "nothing after the kill: the agent has no activity now"
    assert decodes_cleanly(path) == "", hub.log_text()[-3000:]
