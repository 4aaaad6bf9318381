"""A weak link, end to end: a real hub, an aiortc publisher over WHIP and two aiortc viewers
over WHEP, one of which reports heavy loss in its RTCP receiver reports (forged on the
viewer's side, after aiortc built them: the hub only ever sees what a viewer behind a lossy
link would send). That viewer's video stops and its audio goes on, the other keeps its
video, the session resource and ``/metrics`` say so; when the loss goes away its video comes
back after the back-off, from a keyframe."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.rtp import AnyRtcpPacket, RtcpReceiverInfo, RtcpRrPacket

from hub.media.congestion import CongestionPolicy
from hub.media.seams_peers import close_peer_connection, new_peer_connection
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, wait_until
from tests.media.peers import PatternTrack, Viewer, make_offer, wait_for_state, whip_publish

STATION = "35.09.01"
SDP = {"Content-Type": "application/sdp"}
SCRAPER = {"Authorization": "Bearer scraper"}
# Quicker than the defaults (3 s, 10 s, 6 s) so the test takes seconds, same rules.
POLICY = CongestionPolicy(congested_s=2.0, backoff_s=4.0, probe_s=2.0)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path, hub={"metrics_token": "scraper"}))
    running.hub.media.set_congestion_policy(POLICY)
    try:
        yield running
    finally:
        await stop_hub(running)


class ForgedLoss:
    """Rewrites the receiver reports a viewer's video receiver sends: ``loss`` of the packets
    that arrived since the previous report are claimed lost (cumulative and fraction)."""

    def __init__(self, receiver: RTCRtpReceiver, loss: float) -> None:
        self.loss = loss
        self.extra = 0
        self.last: int | None = None
        send = receiver._send_rtcp

        async def forged(packet: AnyRtcpPacket) -> None:
            if isinstance(packet, RtcpRrPacket):
                packet = RtcpRrPacket(ssrc=packet.ssrc, reports=[self._forge(block) for block in packet.reports])
            await send(packet)

        vars(receiver)["_send_rtcp"] = forged  # aiortc's RTCP loop looks it up per report

    def _forge(self, block: RtcpReceiverInfo) -> RtcpReceiverInfo:
        if self.last is not None:
            self.extra += round(((block.highest_sequence - self.last) & 0xFFFF) * self.loss)
        self.last = block.highest_sequence
        fraction = min(255, int(self.loss * 256)) if self.loss else block.fraction_lost
        return dataclasses.replace(block, packets_lost=block.packets_lost + self.extra, fraction_lost=fraction)


async def publish(http: httpx.AsyncClient, token: str) -> RTCPeerConnection:
    return await whip_publish(http, STATION, token, PatternTrack())


async def view(http: httpx.AsyncClient) -> tuple[Viewer, str]:
    """A decoding viewer over WHEP; its session's URL."""
    pc = new_peer_connection(())
    viewer = Viewer(pc)
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    pc.on("track", viewer._consume)
    created = await http.post(f"/whep/{STATION}", content=await make_offer(pc), headers=SDP)
    assert created.status_code == 201, created.text
    await pc.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
    return viewer, created.headers["location"]


def video_receiver(viewer: Viewer) -> RTCRtpReceiver:
    return next(t.receiver for t in viewer.pc.getTransceivers() if t.kind == "video")


async def session(http: httpx.AsyncClient, location: str) -> dict[str, Any]:
    answer = await http.get(location)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store" and answer.headers["access-control-allow-origin"] == "*"
    body: dict[str, Any] = answer.json()
    return body


async def media_metrics(http: httpx.AsyncClient) -> dict[str, float]:
    text = (await http.get("/metrics", headers=SCRAPER)).text
    prefix = 'jaga_media{counter="'
    return {line[len(prefix):].split('"')[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines() if line.startswith(prefix)}


async def test_a_congested_viewer_gets_audio_only_and_its_video_back_while_another_keeps_video(
        hub: RunningHub) -> None:
    token = await hub.token(STATION)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        publisher = await publish(http, token)
        slow, slow_url = await view(http)
        fast, fast_url = await view(http)
        forged = ForgedLoss(video_receiver(slow), loss=0.3)
        try:
            await slow.wait_for(pictures=3, audio=3)
            await fast.wait_for(pictures=3, audio=3)

            async def slow_is(state: str) -> bool:
                status = await session(http, slow_url)
                return (status["video"], status["probing"]) == {
                    "off": ("off", False), "probing": ("on", True), "on": ("on", False)}[state]

            await wait_until(lambda: slow_is("off"), 15, "the congested viewer's video to go off", every=0.1)
            status = await session(http, slow_url)
            assert status["reason"] == "congestion" and 0 < status["retry_in_s"] <= POLICY.backoff_s
            assert status["loss"] > POLICY.loss_off and status["fallbacks"] == 1
            assert status["thumbnail_s"] == hub.hub.settings.media.thumbnail_s
            metrics = await media_metrics(http)
            assert metrics["viewers_audio_only"] == 1 and metrics["video_fallbacks"] == 1
            probes = metrics["video_probes"]

            # While it is off: no pictures for the congested viewer, its sound goes on, and the
            # other viewer's video does too. (Pictures in flight when it stopped drain first.)
            await fast.wait_for(pictures=len(fast.pictures) + 5)
            pictures, sound = len(slow.pictures), slow.loud_audio_frames
            await fast.wait_for(pictures=len(fast.pictures) + 15)  # a second of the other's video
            await slow.wait_for(audio=sound + 40)  # ... and of the congested viewer's sound
            assert (await media_metrics(http))["video_probes"] == probes, "the back-off was over: test too slow"
            assert len(slow.pictures) == pictures
            fast_status = await session(http, fast_url)
            assert (fast_status["video"], fast_status["fallbacks"]) == ("on", 0)

            forged.loss = 0.0  # the link recovers: after the back-off a probe, which holds
            await wait_until(lambda: slow_is("on"), POLICY.backoff_s + POLICY.probe_s + 10,
                             "the congested viewer's video to come back and stay", every=0.1)
            await slow.wait_for(pictures=pictures + 10)
            after = [kind for _, kind in slow.pictures[pictures:]]
            assert set(after) == {"A"}, after  # from a keyframe: no broken pictures
            metrics = await media_metrics(http)
            assert metrics["viewers_audio_only"] == 0
            assert (metrics["video_probes"], metrics["video_recoveries"]) == (probes + 1, 1)
        finally:
            for viewer in (slow, fast):
                await viewer.close()
            await close_peer_connection(publisher)


async def test_the_session_resource_is_its_creators_only(hub: RunningHub) -> None:
    token = await hub.token(STATION)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        publisher = await publish(http, token)
        viewer, url = await view(http)
        try:
            await wait_for_state(viewer.pc, "connected")
            assert (await session(http, url))["video"] == "on"
            session_id = url.rsplit("/", 1)[1]
            assert (await http.get(f"/whep/35.09.02/{session_id}")).status_code == 404  # another station's path
            assert (await http.get(f"/whep/{STATION}/no-such-session")).status_code == 404
            station_auth = {"Authorization": f"Bearer {token}"}
            assert (await http.get(url, headers=station_auth)).status_code == 200  # a token is not needed ...
            whip = await http.get(f"/whip/{STATION}/{session_id}", headers=station_auth)
            assert whip.status_code == 405  # a publisher has no such resource
            preflight = await http.options(url)
            assert preflight.status_code == 204 and preflight.headers["allow"].startswith("GET")
            assert (await http.delete(url)).status_code == 200
            assert (await http.get(url)).status_code == 404
        finally:
            await viewer.close()
            await close_peer_connection(publisher)
