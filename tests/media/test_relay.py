"""The relay with real aiortc peers over 127.0.0.1: media flows, keyframes, replacement, loss."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiortc.stats import RTCRemoteOutboundRtpStreamStats

from hub.errors import RateLimited, Unavailable
from hub.media import MediaRelay
from tests.kit import wait_until
from tests.media.conftest import RecordedEvents, media_settings
from tests.media.peers import Publisher, Viewer, wait_for_state

STATION = "35.09.01"


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_viewer_decodes_every_frame_at_the_publishers_size_and_hears_audio(
    relay: MediaRelay, events: RecordedEvents, codec: str
) -> None:
    publisher = await Publisher.start(relay, STATION, video=codec)
    viewer = await Viewer.start(relay, STATION)
    await viewer.wait_for(pictures=20, audio=25)

    kinds = {kind for _, kind in viewer.pictures}
    assert kinds == {"A"}, f"pictures other than the test pattern: {kinds}"
    session = relay.session(viewer.session_id)
    assert session is not None and f"{codec}/90000" in session.answer_sdp  # exactly that codec
    assert events.started == [STATION]
    metrics = relay.metrics()
    assert metrics["publishers"] == 1 and metrics["viewers"] == 1
    assert metrics["frames_forwarded"] >= 45 and metrics["bytes_forwarded"] > 0
    await viewer.close()
    await publisher.close()


async def test_late_joiner_gets_a_picture_quickly(relay: MediaRelay) -> None:
    publisher = await Publisher.start(relay, STATION, audio=False)
    first = await Viewer.start(relay, STATION, audio=False)
    await first.wait_for(pictures=30)  # the publisher is well past its first keyframe
    requests_before = relay.metrics()["keyframe_requests"]

    joined = time.monotonic()
    late = await Viewer.start(relay, STATION, audio=False)
    await late.wait_for(pictures=1)
    delay = late.pictures[0][0] - joined
    print(f"\nlate joiner: first decoded picture {delay * 1000:.0f} ms after the WHEP offer")

    await late.wait_for(pictures=15)
    assert {kind for _, kind in late.pictures} == {"A"}
    assert relay.metrics()["keyframe_requests"] > requests_before
    for peer in (first, late):
        await peer.close()
    await publisher.close()


async def test_viewer_pli_reaches_the_publisher(relay: MediaRelay) -> None:
    publisher = await Publisher.start(relay, STATION, audio=False)
    viewer = await Viewer.start(relay, STATION, audio=False)
    await viewer.wait_for(pictures=5)
    keyframes = relay.metrics()["keyframes_received"]

    receiver = viewer.pc.getTransceivers()[0].receiver
    for source in receiver.getSynchronizationSources():
        await receiver._send_rtcp_pli(source.source)  # what a browser sends on picture loss

    await wait_until(lambda: relay.metrics()["keyframes_received"] > keyframes)
    assert relay.metrics()["viewer_keyframe_requests"] >= 1
    await viewer.close()
    await publisher.close()


async def test_replaced_publisher_viewers_continue_on_the_new_stream(relay: MediaRelay, events: RecordedEvents) -> None:
    old = await Publisher.start(relay, STATION, pattern="A")
    viewer = await Viewer.start(relay, STATION)
    await viewer.wait_for(pictures=10, pattern="A")

    new = await Publisher.start(relay, STATION, pattern="B")
    await viewer.wait_for(pictures=10, pattern="B")
    await wait_for_state(old.pc, "closed")

    kinds = [kind for _, kind in viewer.pictures]
    switch = kinds.index("B")
    assert set(kinds[:switch]) == {"A"} and set(kinds[switch:]) == {"B"}, "a corrupt or mixed picture"
    assert viewer.pc.connectionState == "connected"
    assert relay.session(old.session_id) is None and relay.is_publishing(STATION)
    assert events.started == [STATION] and events.stopped == []  # no flap for the wall
    await viewer.close()
    await new.close()


async def test_publisher_gone_ends_viewers_after_the_grace_and_frees_everything(events: RecordedEvents) -> None:
    relay = MediaRelay(media_settings(viewer_grace_s=0.5), events)
    try:
        await publisher_gone_ends_viewers(relay, events)
    finally:
        await relay.close()


async def test_viewers_kept_through_a_lost_publisher_get_the_next_ones_picture(events: RecordedEvents) -> None:
    # An office loses its link (its WHIP session ends) and comes back with a new one: the
    # viewers that stayed get its picture again without joining again.
    relay = MediaRelay(media_settings(viewer_grace_s=30), events)
    try:
        old = await Publisher.start(relay, STATION, pattern="A")
        viewer = await Viewer.start(relay, STATION)
        await viewer.wait_for(pictures=5, pattern="A")
        await old.close()
        await events.wait_until(lambda: events.stopped == [STATION], "the relay to report the publisher gone")
        assert viewer.pc.connectionState == "connected" and relay.session(viewer.session_id) is not None
        assert not relay.is_publishing(STATION)

        back = await Publisher.start(relay, STATION, pattern="B")
        await viewer.wait_for(pictures=10, pattern="B")
        kinds = [kind for _, kind in viewer.pictures]
        assert set(kinds[kinds.index("B"):]) == {"B"}, "a corrupt or mixed picture"
        assert events.started == [STATION, STATION] and viewer.pc.connectionState == "connected"
        await viewer.close()
        await back.close()
    finally:
        await relay.close()


async def publisher_gone_ends_viewers(relay: MediaRelay, events: RecordedEvents) -> None:
    publisher = await Publisher.start(relay, STATION)
    viewers = [await Viewer.start(relay, STATION) for _ in range(2)]
    for viewer in viewers:
        await viewer.wait_for(pictures=3)

    await publisher.close()  # the station vanishes: no DELETE, just gone

    for viewer in viewers:
        await wait_for_state(viewer.pc, "closed")
        await wait_until(viewer.ended.is_set, message="the viewer's tracks to end", changed=viewer.ended)
    await events.wait_until(lambda: events.stopped == [STATION], "the relay to report the publisher stopped")
    assert not relay.is_publishing(STATION) and relay.viewer_count(STATION) == 0
    assert relay.metrics()["sessions"] == 0
    for viewer in viewers:
        await viewer.close()


async def test_delete_of_a_viewer_leaves_the_others_running(relay: MediaRelay) -> None:
    publisher = await Publisher.start(relay, STATION, audio=False)
    stays, leaves = [await Viewer.start(relay, STATION, audio=False) for _ in range(2)]
    await leaves.wait_for(pictures=3)

    await relay.end(leaves.session_id)
    await relay.end(leaves.session_id)  # idempotent
    await wait_for_state(leaves.pc, "closed")

    seen = len(stays.pictures)
    await stays.wait_for(pictures=seen + 10)
    assert relay.viewer_count(STATION) == 1
    for peer in (stays, leaves):
        await peer.close()
    await publisher.close()


async def test_viewer_caps_and_per_address_limit() -> None:
    relay = MediaRelay(
        media_settings(max_viewers_per_station=1, max_viewers_per_node=2, max_sessions_per_address=2),
        RecordedEvents(),
    )
    clients: list[Publisher | Viewer] = []
    try:
        clients.append(await Publisher.start(relay, STATION, audio=False))
        clients.append(await Publisher.start(relay, "35.09.02", audio=False, client_addr="10.0.0.9"))
        first = await Viewer.start(relay, STATION, audio=False)
        clients.append(first)
        with pytest.raises(Unavailable) as full:
            await Viewer.start(relay, STATION, audio=False, client_addr="10.0.0.2")
        assert full.value.code == "station_full" and full.value.retry_after > 0

        clients.append(await Viewer.start(relay, "35.09.02", audio=False, client_addr="10.0.0.3"))
        with pytest.raises(Unavailable) as node_full:
            await Viewer.start(relay, "35.09.02", audio=False, client_addr="10.0.0.4")
        assert node_full.value.code in ("station_full", "node_full")

        await relay.end(first.session_id)
        clients.append(await Viewer.start(relay, STATION, audio=False))  # 127.0.0.1: back to 2 sessions
        with pytest.raises(RateLimited):
            await Publisher.start(relay, "35.09.01.2001", audio=False)  # a 3rd from 127.0.0.1
        clients.append(await Publisher.start(relay, "35.09.01.2001", audio=False, client_addr="10.0.0.5"))
        assert relay.metrics()["sessions_refused"] == 3
        assert relay.metrics()["sessions"] == 5
    finally:
        await relay.close()
        for client in clients:
            await client.close()
    assert relay.metrics()["sessions"] == 0


async def test_thumbnails_are_jpegs_at_most_every_thumbnail_s() -> None:
    events = RecordedEvents()
    relay = MediaRelay(media_settings(thumbnail_s=0.5), events)
    try:
        publisher = await Publisher.start(relay, STATION, audio=False)
        await events.wait_until(lambda: len(events.thumbnails) >= 2, "two thumbnails")
        station, jpeg = events.thumbnails[0]
        assert station == STATION and jpeg[:2] == b"\xff\xd8" and jpeg[-2:] == b"\xff\xd9"
        await publisher.close()
    finally:
        await relay.close()


async def test_no_thumbnail_work_for_a_station_whose_agent_sends_its_own() -> None:
    """No keyframe decoded and no keyframe asked for: a village uplink pays for every one."""
    events = RecordedEvents()
    events.agent_thumbnails.add(STATION)
    relay = MediaRelay(media_settings(thumbnail_s=0.2), events)
    try:
        publisher = await Publisher.start(relay, STATION, audio=False)
        viewer = await Viewer.start(relay, STATION)
        await viewer.wait_for(pictures=30)  # ~2 s at 15 fps: ten thumbnail periods
        assert events.thumbnails == []
        assert relay.metrics()["thumbnails"] == 0
        assert relay.metrics()["keyframe_requests"] <= 2  # the viewer's join, not one per period
        await viewer.close()
        await publisher.close()
    finally:
        await relay.close()


async def test_close_ends_every_peer_connection() -> None:
    relay = MediaRelay(media_settings(), RecordedEvents())
    publisher = await Publisher.start(relay, STATION)
    viewer = await Viewer.start(relay, STATION)
    await viewer.wait_for(pictures=2)

    await relay.close()

    await wait_for_state(viewer.pc, "closed")
    await wait_for_state(publisher.pc, "closed")
    assert relay.metrics()["sessions"] == 0
    with pytest.raises(Unavailable):
        await Publisher.start(relay, STATION)
    await viewer.close()


async def test_viewer_nack_is_answered_as_rtx_and_sender_reports_carry_our_counts(relay: MediaRelay) -> None:
    from hub.media.seams_peers import negotiated_media
    from tests.media.peers import tap_rtp

    publisher = await Publisher.start(relay, STATION, audio=False)
    viewer = await Viewer.start(relay, STATION, audio=False)
    receiver = viewer.pc.getTransceivers()[0].receiver
    heard: list[tuple[int, int, bytes]] = []
    tap_rtp(receiver, lambda pt, seq, ts, marker, payload: heard.append((pt, seq, payload)))
    await viewer.wait_for(pictures=5)
    session = relay.session(viewer.session_id)
    assert session is not None
    rtx_pt = negotiated_media(session.answer_sdp)["video"].rtx_payload_type
    media = [(seq, payload) for pt, seq, payload in heard if pt != rtx_pt]
    lost_seq, lost_payload = media[-3]
    ssrc = receiver.getSynchronizationSources()[0].source
    await receiver._send_rtcp_nack(ssrc, [lost_seq])  # what a viewer sends on packet loss

    await wait_until(lambda: any(pt == rtx_pt for pt, _, _ in heard), message="the retransmission (RTX)")
    rtx = [payload for pt, _, payload in heard if pt == rtx_pt]
    assert rtx[0][:2] == lost_seq.to_bytes(2, "big") and rtx[0][2:] == lost_payload
    assert relay.metrics()["packets_retransmitted"] == 1

    async def sender_report() -> RTCRemoteOutboundRtpStreamStats | None:
        stats = await receiver.getStats()
        return next((s for s in stats.values() if isinstance(s, RTCRemoteOutboundRtpStreamStats)), None)

    report = await wait_until(sender_report, message="a sender report from the relay", every=0.1)
    assert report.packetsSent > 0 and report.bytesSent > 0
    assert {kind for _, kind in viewer.pictures} == {"A"}
    await viewer.close()
    await publisher.close()


async def test_sender_reports_of_every_viewer_go_out_on_one_timer_and_stop_with_the_viewer(relay: MediaRelay) -> None:
    from aiortc.rtp import RtcpSrPacket

    publisher = await Publisher.start(relay, STATION, audio=False)
    viewers = [await Viewer.start(relay, STATION, audio=False) for _ in range(2)]
    counts = [0, 0]
    for i, viewer in enumerate(viewers):
        receiver = viewer.pc.getTransceivers()[0].receiver
        handle = receiver._handle_rtcp_packet

        async def count_srs(packet: object, i: int = i, handle: Any = handle) -> None:
            if isinstance(packet, RtcpSrPacket):
                counts[i] += 1
            await handle(packet)

        vars(receiver)["_handle_rtcp_packet"] = count_srs  # the DTLS transport looks it up per packet
    reports = relay._sender_reports
    # aiortc's loop per sender sends the first report (0.5-1.5 s in), then the relay's timer takes over
    await wait_until(lambda: len(reports) == 2, message="both viewers' report loops parked")
    earlier = list(counts)
    await wait_until(lambda: all(n >= e + 2 for n, e in zip(counts, earlier, strict=True)), 8,
                     "two more sender reports to each viewer, from the timer")
    await viewers[0].close()
    await wait_until(lambda: len(reports) == 1, message="the closed viewer's reports to stop")
    await viewers[1].close()
    await publisher.close()
    await wait_until(lambda: len(reports) == 0, message="no reports left")
