"""Viewer abuse against a real hub: one address opening WHEP sessions by the hundred, a
viewer flooding keyframe requests, a viewer whose network stops reading. The caps and rate
limits answer, and an ordinary viewer keeps receiving a clean picture throughout (its frame
rate is printed, not asserted: these machines are shared)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiortc import RTCSessionDescription

from hub.media.aiortc_seams import close_peer_connection, new_peer_connection
from tests.conftest import RunningHub, start_hub, stop_hub, test_settings, timeout
from tests.media.peers import PatternTrack, ToneTrack, Viewer, make_offer, wait_for_state

STATION = "35.09.01"
SDP = {"Content-Type": "application/sdp"}


@pytest.fixture
async def live_hub(tmp_path: Path) -> AsyncIterator[tuple[RunningHub, object]]:
    running = await start_hub(test_settings(tmp_path, media={"max_sessions_per_address": 5,
                                                            "max_viewers_per_station": 50}))
    publisher = new_peer_connection(())
    publisher.addTransceiver(PatternTrack(), direction="sendonly")
    publisher.addTransceiver(ToneTrack(), direction="sendonly")
    offer = await make_offer(publisher)
    token = await running.token(STATION)
    async with httpx.AsyncClient(base_url=running.http) as http:
        created = await http.post(f"/whip/{STATION}", content=offer,
                                  headers={"Authorization": f"Bearer {token}", **SDP})
    await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
    await wait_for_state(publisher, "connected")
    try:
        yield running, publisher
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


async def keeps_a_clean_picture(viewer: Viewer, seconds: float, what: str) -> None:
    before = len(viewer.pictures)
    started = time.monotonic()
    await viewer.wait_for(pictures=before + 5, timeout=timeout(10))
    await asyncio.sleep(seconds)  # the abuse runs meanwhile; we sample the picture rate after
    frames = len(viewer.pictures) - before
    print(f"{what}: ordinary viewer got {frames / (time.monotonic() - started):.1f} fps")
    assert {c for _, c in viewer.pictures[before:]} <= {"A"}, "corrupt or foreign pictures"


async def test_hundreds_of_whep_sessions_from_one_address_are_refused(live_hub) -> None:  # type: ignore[no-untyped-def]
    hub, _ = live_hub
    good = await http_viewer(hub)
    abuser = new_peer_connection(())
    abuser.addTransceiver("video", direction="recvonly")
    offer = await make_offer(abuser)
    statuses: list[int] = []
    # Another loopback address: the abuser is not the ordinary viewer's 127.0.0.1.
    transport = httpx.AsyncHTTPTransport(local_address="127.0.0.2")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{hub.port}", transport=transport) as http:
        for _ in range(200):
            response = await http.post(f"/whep/{STATION}", content=offer, headers=SDP)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
                assert response.json()["error"]["code"] == "rate_limited"
    assert statuses.count(201) == 5 and statuses.count(429) == 195
    await keeps_a_clean_picture(good, 1.0, "during a WHEP flood")
    await close_peer_connection(abuser)
    await good.close()


async def test_a_keyframe_request_flood_is_rate_limited_upstream(live_hub) -> None:  # type: ignore[no-untyped-def]
    hub, _ = live_hub
    good = await http_viewer(hub)
    flooder = await http_viewer(hub)
    await flooder.wait_for(pictures=1, timeout=timeout(10))
    await good.wait_for(pictures=1, timeout=timeout(10))
    receiver = next(r for r in flooder.pc.getReceivers() if r.track.kind == "video")
    ssrc = receiver.getSynchronizationSources()[0].source
    before = hub.hub.media.metrics()
    started = time.monotonic()
    for _ in range(500):
        await receiver._send_rtcp_pli(ssrc)  # aiortc's own PLI path: real RTCP on the wire
    await keeps_a_clean_picture(good, 1.0, "during a PLI flood")
    elapsed = time.monotonic() - started
    after = hub.hub.media.metrics()
    received = after["viewer_keyframe_requests"] - before["viewer_keyframe_requests"]
    forwarded = after["keyframe_requests"] - before["keyframe_requests"]
    print(f"PLI flood: {received} received from the viewer, {forwarded} sent to the publisher in {elapsed:.1f} s")
    assert received >= 100  # they did arrive
    assert forwarded <= elapsed / 0.5 + 2  # at most one per 0.5 s per publisher
    await flooder.close()
    await good.close()


async def test_a_viewer_that_stops_reading_does_not_hold_up_others(live_hub) -> None:  # type: ignore[no-untyped-def]
    hub, _ = live_hub
    good = await http_viewer(hub)
    deaf = await http_viewer(hub)
    await deaf.wait_for(pictures=1, timeout=timeout(10))
    # Its network stops taking packets: the UDP sockets under its ICE connection stop reading.
    transport = deaf.pc.getTransceivers()[0].receiver.transport.transport
    for protocol in transport._connection._protocols:
        protocol.transport.pause_reading()
    await keeps_a_clean_picture(good, 1.5, "beside a deaf viewer")
    assert hub.hub.media.viewer_count(STATION) == 2  # until ICE consent expires, it is still counted
    await deaf.close()
    await good.close()
