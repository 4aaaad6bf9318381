"""Hostile and unusable offers: each refused with a clear error, nothing left behind."""

from __future__ import annotations

import re

import pytest

from hub.errors import ClientError, NotFound, ProtocolViolation, TooLarge
from hub.media import MediaRelay
from hub.media.seams_peers import new_peer_connection
from tests.media.peers import Publisher, Viewer, make_offer, prefer

STATION = "35.09.01"


async def client_offer(video: str | None = "VP8", audio: bool = True, direction: str = "sendonly") -> str:
    pc = new_peer_connection(())
    if video:
        pc.addTransceiver("video", direction=direction)
        prefer(pc, "video", video)
    if audio:
        pc.addTransceiver("audio", direction=direction)
    try:
        return await make_offer(pc)
    finally:
        await pc.close()


async def assert_refused(relay: MediaRelay, error: type[ClientError], sdp: str, *, whep: bool = False,
                         match: str | None = None) -> None:
    action = relay.view if whep else relay.publish
    with pytest.raises(error, match=match) as refused:
        await action(STATION, sdp, owner="station:test", client_addr="127.0.0.1")
    assert refused.value.message
    assert relay.metrics()["sessions"] == 0


async def test_oversized_offer_is_too_large(relay: MediaRelay) -> None:
    sdp = await client_offer()
    await assert_refused(relay, TooLarge, sdp + "a=x-padding:" + "x" * 30_000 + "\r\n", match="limit")


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "hello",
        "v=0\r\nm=video nine UDP/TLS/RTP/SAVPF 96\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 300\r\n",
        "v=0\r\na=fingerprint:sha-256\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
        "v=0\r\n" + "\x00\xff" * 100,
    ],
)
async def test_malformed_sdp_is_a_protocol_violation(relay: MediaRelay, garbage: str) -> None:
    await assert_refused(relay, ProtocolViolation, garbage)


async def test_offer_without_media_is_refused(relay: MediaRelay) -> None:
    sdp = await client_offer()
    session_part = sdp[: sdp.index("m=")]
    await assert_refused(relay, ProtocolViolation, session_part, match="no audio or video")


async def test_data_channel_only_offer_is_refused(relay: MediaRelay) -> None:
    pc = new_peer_connection(())
    pc.createDataChannel("chat")
    sdp = await make_offer(pc)
    await pc.close()
    await assert_refused(relay, ProtocolViolation, sdp, match="only audio and video")


async def test_whip_offer_that_sends_nothing_is_refused(relay: MediaRelay) -> None:
    await assert_refused(relay, ProtocolViolation, await client_offer(direction="recvonly"), match="must send")


async def test_offer_with_too_many_candidates_is_refused(relay: MediaRelay) -> None:
    sdp = await client_offer(audio=False)
    line = next(candidate for candidate in sdp.split("\r\n") if candidate.startswith("a=candidate:"))
    flood = "".join(re.sub(r" (\d+) typ", f" {10000 + i} typ", line, count=1) + "\r\n" for i in range(40))
    await assert_refused(relay, ProtocolViolation, sdp.replace(line + "\r\n", flood), match="candidates")


async def test_unsupported_codec_is_refused(relay: MediaRelay) -> None:
    sdp = await client_offer(audio=False)
    # Rename VP8 to VP9 everywhere: a codec the hub cannot forward to aiortc viewers.
    await assert_refused(relay, ProtocolViolation, sdp.replace("VP8/90000", "VP9/90000"), match="no usable video codec")


async def test_whep_for_a_station_that_is_not_live_is_not_found(relay: MediaRelay) -> None:
    sdp = await client_offer(direction="recvonly")
    with pytest.raises(NotFound) as missing:
        await relay.view(STATION, sdp, owner="public", client_addr="127.0.0.1")
    assert missing.value.code == "not_live"


async def test_whep_offer_that_receives_nothing_is_refused(relay: MediaRelay) -> None:
    publisher = await Publisher.start(relay, STATION)
    with pytest.raises(ProtocolViolation, match="must receive"):
        await relay.view(STATION, await client_offer(direction="sendonly"), owner="public", client_addr="127.0.0.1")
    assert relay.metrics()["viewers"] == 0
    await publisher.close()


async def test_viewer_that_cannot_decode_the_publishers_codec_is_refused(relay: MediaRelay) -> None:
    publisher = await Publisher.start(relay, STATION, video="H264", audio=False)
    with pytest.raises(ProtocolViolation, match="H264"):
        await Viewer.start(relay, STATION, video="VP8", audio=False)
    assert relay.metrics()["viewers"] == 0
    await publisher.close()
