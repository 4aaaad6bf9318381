"""Quality levels end to end: a real agent (test source) and a real hub on loopback.

The link's signals are forced through the agent's test hook (``signal_filter``) and the
controller runs on short times; what is checked is what the hub receives: video RTP stops
at audio only while audio goes on, and comes back starting with a keyframe that a viewer
decodes at the lower level's size.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import av
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients import rtc, whip
from clients.quality import QualityPolicy, Signals
from hub.media.keyframes import starts_keyframe
from tests.clients.helpers import agent_config, start_agent, watch
from tests.kit import RunningHub, timeout, wait_until

STATION = "35.09.01.2001"
FAST = QualityPolicy(tick_s=0.25, down_ticks=2, up_hold_s=1.0, probe_s=1.0)


@dataclass
class Arrivals:
    """Every RTP packet the hub forwards for the station: (monotonic time, kind, keyframe start)."""

    video_mime: str = ""  # the stream's video codec, e.g. "video/h264"
    packets: list[tuple[float, str, bool]] = field(default_factory=list)

    def tap(self, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None:
        self.packets.append((time.monotonic(), kind, kind == "video" and starts_keyframe(self.video_mime, payload)))

    def since(self, index: int, kind: str) -> list[tuple[float, str, bool]]:
        return [p for p in self.packets[index:] if p[1] == kind]


@dataclass
class Pictures:
    """A WHEP viewer's decoded video: (monotonic time, width, height) per picture."""

    seen: list[tuple[float, int, int]] = field(default_factory=list)

    async def read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    self.seen.append((time.monotonic(), frame.width, frame.height))
        except MediaStreamError:
            pass


class Link:
    """The test's link: real signals, or forced loss; the hub's estimate left out (loopback
    REMB on 0.25 s ticks is noise here, and not what this test is about)."""

    def __init__(self) -> None:
        self.loss: float | None = None

    def __call__(self, signals: Signals) -> Signals:
        loss = self.loss if self.loss is not None else signals.loss
        return dataclasses.replace(signals, loss=loss, estimate_bps=None)


async def test_audio_only_stops_video_and_video_returns_with_a_keyframe(
        hub: RunningHub, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    link = Link()
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION),
                          video={"width": 640, "height": 360, "fps": 15, "bitrate_kbps": 500})
    caplog.set_level(logging.INFO, logger="jaga.station.quality")
    agent = await start_agent(config, quality_policy=FAST, signal_filter=link)
    arrivals = Arrivals()
    pictures = Pictures()
    pc = rtc.new_peer_connection([])
    readers: list[asyncio.Task[None]] = []
    answer: whip.Answer | None = None
    try:
        await agent.wait_until(lambda a: a.state == "live", timeout(15))
        stream = await wait_until(lambda: hub.hub.media.stream(STATION), 5, "the station's stream")
        arrivals.video_mime = stream.codecs()["video"]
        assert arrivals.video_mime == "video/h264"  # the agent's default (the hub's HLS needs it)
        stream.add_tap(arrivals.tap)
        assert agent.quality is not None and agent.quality.name == "L0"

        pc.on("track", lambda track: readers.append(asyncio.ensure_future(pictures.read(track))))
        answer = await watch(pc, hub, STATION)
        await wait_until(lambda: any(p[1:] == (640, 360) for p in pictures.seen), 10, "a 640x360 picture")

        # The link collapses: straight to audio only.
        link.loss = 0.9
        await agent.wait_until(lambda a: a.quality is not None and a.quality.name == "L3", timeout(10))
        assert agent.status()["quality"] == "L3" and agent._heartbeat_fields()["quality"] == "L3"
        assert "quality L0 640x360@15 500 kbps → L3 audio only (loss 90%; 2 of " in caplog.text

        def video_stopped_audio_flows() -> bool:
            videos = [p for p in arrivals.packets if p[1] == "video"]
            last_video = videos[-1][0] if videos else 0.0
            audio_after = [p for p in arrivals.packets if p[1] == "audio" and p[0] > last_video]
            return time.monotonic() - last_video > 1.5 and len(audio_after) >= 60  # 1.2 s of 20 ms packets

        await wait_until(video_stopped_audio_flows, 10, "video RTP to stop while audio goes on")
        paused_at = len(arrivals.packets)
        pictures_before = len(pictures.seen)

        # The link recovers: a probe brings video back at L2; hold it there.
        link.loss = None
        await agent.wait_until(lambda a: a.quality is not None and a.quality.video, timeout(10))
        assert agent.quality.name == "L2"
        link.loss = 0.09  # between good and bad: no further climb
        first_video = await wait_until(lambda: arrivals.since(paused_at, "video"), 10, "video RTP again")
        assert first_video[0][2], "the first video packet after audio only starts a keyframe"
        await wait_until(lambda: any(p[1:] == (320, 180) for p in pictures.seen[pictures_before:]), 10,
                         "the viewer to decode a 320x180 picture")
        after = [size for _, *size in pictures.seen[pictures_before:]]
        # aiortc's receiver completes a frame when the next one starts: the last 640x360 picture
        # before the pause comes out with the first packet after it. Then only L2's size.
        first = after.index([320, 180])
        assert first <= 1 and all(size == [320, 180] for size in after[first:]), after
    finally:
        if answer is not None:
            await whip.delete_session(answer.location, None)
        await pc.close()
        for reader in readers:
            reader.cancel()
        await agent.stop()
