"""The weak link for real: a viewer in a network lab's namespace behind a lossy downlink
(3 % loss, 150 ms each way), beside a viewer on loopback, both watching a ~500 kbps VP8 clip
with a 96 kbps Opus tone. At 1 Mbps the stream fits: the viewer keeps its video (its genuine
receiver reports and NACKs stay under the thresholds: ~3 % loss, repaired by RTX). At the
700 kbps of issue 15 it does not (~640 kbps of media plus retransmissions and keyframe bursts
overflow the link's queue: video at ~6 fps, audio losing a fifth): the hub switches that
viewer to audio only, and the loopback viewer keeps its video. When the link is back to
1 Mbps, so is the video, after the back-off. Signalling goes over HTTP on the host; only
the media crosses the impaired link."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection

from bench.media_peers import ClipTrack, clip_kbps, load_clip
from hub.media.congestion import CongestionPolicy
from hub.media.seams_peers import close_peer_connection
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout, wait_until
from tests.media.lab_viewer import CountingViewer
from tests.media.peers import whip_publish
from tests.netlab import Lab, LinkSpec, lab_available, lab_unavailable_reason

pytestmark = pytest.mark.skipif(not lab_available(), reason=lab_unavailable_reason() or "lab available")

STATION = "35.09.01"
SDP = {"Content-Type": "application/sdp"}
UP = LinkSpec(delay_ms=150)
FITS = LinkSpec(rate_kbps=1000, loss=0.03, delay_ms=150)
PHONE = LinkSpec(rate_kbps=700, loss=0.03, delay_ms=150)  # issue 15's phone: this stream does not fit
# The deployed thresholds; only the waits are shorter, so the test takes seconds.
POLICY = CongestionPolicy(backoff_s=5.0, probe_s=4.0)
FPS = 15


class LabViewer:
    """:mod:`tests.media.lab_viewer` in the lab's namespace; its counts as they come."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.counts: dict[str, Any] = {"video": 0, "audio": 0, "state": "new"}
        self.changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, lab: Lab, http: httpx.AsyncClient) -> tuple[LabViewer, str]:
        process = await lab.spawn([sys.executable, "-m", "tests.media.lab_viewer", "--address", lab.inside_address],
                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        viewer = cls(process)
        assert process.stdout is not None and process.stdin is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout(20))
        created = await http.post(f"/whep/{STATION}", content=json.loads(line)["offer"], headers=SDP)
        assert created.status_code == 201, created.text
        process.stdin.write(json.dumps({"answer": created.text}).encode() + b"\n")
        await process.stdin.drain()
        viewer._reader = asyncio.ensure_future(viewer._read())
        return viewer, created.headers["location"]

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.counts = json.loads(line)
            self.changed.set()

    async def wait_for(self, message: str, video: int = 0, audio: int = 0, seconds: float = 15) -> None:
        await wait_until(lambda: self.counts["video"] >= video and self.counts["audio"] >= audio, seconds,
                         f"the lab viewer's {message} ({self.counts})", changed=self.changed)

    async def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        await asyncio.wait_for(self.process.wait(), timeout(10))
        if self._reader is not None:
            await self._reader


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with Lab(up=UP, down=FITS) as running:
        yield running


@pytest.fixture
async def hub(tmp_path: Path, lab: Lab) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path, media={"host_addresses": ["127.0.0.1", lab.host_address]}))
    running.hub.media.set_congestion_policy(POLICY)
    try:
        yield running
    finally:
        await stop_hub(running)


async def publish_clip(http: httpx.AsyncClient, token: str) -> RTCPeerConnection:
    clip = load_clip()
    assert 400 < clip_kbps(clip) < 600  # what the link rates above were chosen for
    return await whip_publish(http, STATION, token, ClipTrack(clip))


async def loopback_viewer(http: httpx.AsyncClient) -> CountingViewer:
    viewer = CountingViewer()
    created = await http.post(f"/whep/{STATION}", content=await viewer.offer(("127.0.0.1",)), headers=SDP)
    assert created.status_code == 201, created.text
    await viewer.answer(created.text)
    return viewer


async def test_a_lossy_link_keeps_video_while_it_fits_and_falls_back_to_audio_when_it_does_not(
        lab: Lab, hub: RunningHub) -> None:
    token = await hub.token(STATION)
    async with httpx.AsyncClient(base_url=hub.http, timeout=timeout(10)) as http:
        publisher = await publish_clip(http, token)
        other = await loopback_viewer(http)
        phone, url = await LabViewer.start(lab, http)

        async def status() -> dict[str, Any]:
            answer = await http.get(url)
            assert answer.status_code == 200, answer.text
            body: dict[str, Any] = answer.json()
            return body

        async def video_is(video: str, probing: bool = False) -> bool:
            now = await status()
            return bool(now["video"] == video and now["probing"] == probing)

        try:
            await phone.wait_for("first frames", video=FPS, audio=50)

            # 1 Mbps, 3 % loss, 300 ms round trip: the stream fits; NACK/RTX repair the loss.
            start = phone.counts["video"]
            await phone.wait_for("video on a link it fits", video=start + 8 * FPS, seconds=20)
            fits = await status()
            assert (fits["video"], fits["fallbacks"]) == ("on", 0), fits
            assert hub.hub.media.metrics()["video_fallbacks"] == 0

            # 700 kbps: the stream no longer fits. Video off for this viewer; its sound goes on.
            await lab.set(down=PHONE)
            await wait_until(lambda: video_is("off"), 30, "the phone's video to go off", every=0.2)
            off = await status()
            assert off["reason"] == "congestion" and off["loss"] is not None, off
            metrics = hub.hub.media.metrics()
            assert metrics["viewers_audio_only"] == 1 and metrics["video_probes"] == 0
            await phone.wait_for("video in flight to drain", audio=phone.counts["audio"] + 25)
            video, sound, others = phone.counts["video"], phone.counts["audio"], other.video
            await phone.wait_for("sound while audio only", audio=sound + 100)  # two seconds of it
            assert phone.counts["video"] == video
            assert hub.hub.media.metrics()["video_probes"] == 0, "the back-off ended: the test was too slow"
            await wait_until(lambda: other.video >= others + FPS, 5, "the other viewer's video", every=0.1)

            # The link recovers: after the back-off a probe, which holds.
            await lab.set(down=FITS)
            await wait_until(lambda: video_is("on"), POLICY.backoff_s + POLICY.probe_s + 15,
                             "the phone's video to come back and stay", every=0.2)
            await phone.wait_for("video again", video=video + 2 * FPS)
            metrics = hub.hub.media.metrics()
            assert metrics["viewers_audio_only"] == 0 and metrics["video_recoveries"] >= 1
        finally:
            await phone.close()
            await other.close()
            await close_peer_connection(publisher)
