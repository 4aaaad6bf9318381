"""Viewer abuse against a real hub: one address opening WHEP sessions by the hundred, a
viewer flooding keyframe requests, a viewer whose network stops reading. The caps and rate
limits answer, and an ordinary viewer keeps decoding a clean picture at the publisher's pace
while the abuse goes on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from hub.media.seams_peers import close_peer_connection, new_peer_connection
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub
from tests.media.peers import PatternTrack, ToneTrack, Viewer, make_offer, wait_for_state

STATION = "35.09.01"
SDP = {"Content-Type": "application/sdp"}
WINDOW_S = 2.0  # the ordinary viewer's frames are counted over at least this long


@dataclass
class LiveStation:
    hub: RunningHub
    publisher: RTCPeerConnection
    camera: PatternTrack


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[LiveStation]:
    running = await start_hub(hub_settings(tmp_path, media={"max_sessions_per_address": 5,
                                                           "max_viewers_per_station": 50}))
    camera = PatternTrack()
    publisher = new_peer_connection(())
    publisher.addTransceiver(camera, direction="sendonly")
    publisher.addTransceiver(ToneTrack(), direction="sendonly")
    offer = await make_offer(publisher)
    token = await running.token(STATION)
    async with httpx.AsyncClient(base_url=running.http) as http:
        created = await http.post(f"/whip/{STATION}", content=offer,
                                  headers={"Authorization": f"Bearer {token}", **SDP})
    await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
    await wait_for_state(publisher, "connected")
    try:
        yield LiveStation(running, publisher, camera)
    finally:
        await close_peer_connection(publisher)
        await stop_hub(running)


async def http_viewer(hub: RunningHub) -> Viewer:
    """A WHEP viewer over HTTP, decoding and classifying every picture."""
    pc = new_peer_connection(())
    viewer = Viewer(pc)
    pc.addTransceiver("video", direction="recvonly")
    pc.on("track", viewer._consume)
    offer = await make_offer(pc)
    async with httpx.AsyncClient(base_url=hub.http) as http:
        answer = await http.post(f"/whep/{STATION}", content=offer, headers=SDP)
    assert answer.status_code == 201, answer.text
    await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
    return viewer


async def keeps_a_clean_picture_during(live: LiveStation, viewer: Viewer, abuse: Awaitable[object],
                                       what: str) -> float:
    """Run ``abuse``; meanwhile (and for at least WINDOW_S) count the ordinary viewer's pictures
    against the publisher's. Returns how long the window lasted."""
    await viewer.wait_for(pictures=len(viewer.pictures) + 1)  # it is receiving before the abuse
    loop = asyncio.get_running_loop()
    sent_before, got_before, started = live.camera.frames_sent, len(viewer.pictures), loop.time()
    await asyncio.gather(abuse, asyncio.sleep(WINDOW_S))  # the window: the abuse, and at least WINDOW_S
    window_s = loop.time() - started
    sent, got = live.camera.frames_sent - sent_before, len(viewer.pictures) - got_before
    # The bound is half of what the publisher sent in the same window, not a fixed frame rate:
    # publisher, relay and viewers share this process, so a loaded machine slows the publisher
    # as much as the viewer and the ratio stays put. A relay that keeps up loses nothing but the
    # few frames in flight at the window's edges (or a keyframe interval after a loss, under
    # 0.5 s); a viewer held up by the abuse falls far below half (a stalled one gets nothing).
    assert sent > 0, f"{what}: the publisher sent nothing in {window_s:.1f} s"
    assert got >= sent / 2, f"{what}: the ordinary viewer decoded {got} of {sent} pictures in {window_s:.1f} s"
    assert {c for _, c in viewer.pictures[got_before:]} <= {"A"}, f"{what}: corrupt or foreign pictures"
    return window_s


async def test_hundreds_of_whep_sessions_from_one_address_are_refused(live: LiveStation) -> None:
    good = await http_viewer(live.hub)
    abuser = new_peer_connection(())
    abuser.addTransceiver("video", direction="recvonly")
    offer = await make_offer(abuser)
    statuses: list[int] = []

    async def flood() -> None:
        # Another loopback address: the abuser is not the ordinary viewer's 127.0.0.1.
        transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
        async with httpx.AsyncClient(base_url=live.hub.http, transport=transport) as http:
            for _ in range(200):
                response = await http.post(f"/whep/{STATION}", content=offer, headers=SDP)
                statuses.append(response.status_code)
                if response.status_code == 429:
                    assert int(response.headers["retry-after"]) >= 1
                    assert response.json()["error"]["code"] == "rate_limited"

    await keeps_a_clean_picture_during(live, good, flood(), "during a WHEP flood")
    assert statuses.count(201) == 5 and statuses.count(429) == 195
    await close_peer_connection(abuser)
    await good.close()


async def test_a_keyframe_request_flood_is_rate_limited_upstream(live: LiveStation) -> None:
    good = await http_viewer(live.hub)
    flooder = await http_viewer(live.hub)
    await flooder.wait_for(pictures=1)
    receiver = next(r for r in flooder.pc.getReceivers() if r.track.kind == "video")
    ssrc = receiver.getSynchronizationSources()[0].source
    before = live.hub.hub.media.metrics()

    async def flood() -> None:
        for _ in range(500):
            await receiver._send_rtcp_pli(ssrc)  # aiortc's own PLI path: real RTCP on the wire
            await asyncio.sleep(0.002)  # ~500 a second, interleaved with the media

    elapsed = await keeps_a_clean_picture_during(live, good, flood(), "during a PLI flood")
    after = live.hub.hub.media.metrics()
    received = after["viewer_keyframe_requests"] - before["viewer_keyframe_requests"]
    forwarded = after["keyframe_requests"] - before["keyframe_requests"]
    assert received >= 100, f"only {received} of the 500 PLIs reached the hub"
    assert forwarded <= elapsed / 0.5 + 2, f"{forwarded} PLIs sent upstream in {elapsed:.1f} s"  # ≤ 1 per 0.5 s
    await flooder.close()
    await good.close()


async def test_a_viewer_that_stops_reading_does_not_hold_up_others(live: LiveStation) -> None:
    good = await http_viewer(live.hub)
    deaf = await http_viewer(live.hub)
    await deaf.wait_for(pictures=1)
    # Its network stops taking packets: the UDP sockets under its ICE connection stop reading.
    transport = deaf.pc.getTransceivers()[0].receiver.transport.transport
    for protocol in transport._connection._protocols:
        # The selector loop's datagram transport pauses like a stream's (not in its type).
        cast(asyncio.ReadTransport, protocol.transport).pause_reading()
    await keeps_a_clean_picture_during(live, good, asyncio.sleep(0), "beside a deaf viewer")
    assert live.hub.hub.media.viewer_count(STATION) == 2  # until ICE consent expires, it is still counted
    await deaf.close()
    await good.close()
