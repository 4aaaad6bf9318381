"""The benchmark's light publishers send what a station sends, audio included: their packets
are aiortc's bytes, a real hub takes them as a publisher's media, and the light viewers count
only the video's frames while receiving the sound too (the Jember day's load, since its
thirteenth step, has both: docs/benchmarks.md)."""

from __future__ import annotations

import struct

import pytest
from aiortc.rtp import RtpPacket

from bench.light_publisher import (
    AUDIO_LEVEL,
    AUDIO_LEVEL_DBOV,
    MID,
    AudioWriter,
    ClipPackets,
    OpusClip,
    Ticker,
    aiortc_extension_ids,
    audio_extension_block,
    publish_light,
)
from bench.loadgen import LightViewer
from bench.media_peers import load_clip
from hub.media.seams_peers import close_peer_connection
from tests.kit import RunningHub, wait_until

STATION = "35.09.01.2001"


@pytest.mark.parametrize("packet_ms", [20, 60])
def test_audio_packets_are_the_bytes_aiortcs_sender_writes(packet_ms: int) -> None:
    mid_id, level_id, mid = 1, 2, "1"
    ids = aiortc_extension_ids({mid_id: MID, level_id: AUDIO_LEVEL})
    clip = OpusClip(0.3, packet_ms)
    writer = AudioWriter(0x0A0B0C0D, 111, audio_extension_block(mid_id, mid, level_id), clip.samples)
    payloads = clip.packets
    assert len(payloads) == 300 // packet_ms and clip.samples == 48 * packet_ms
    for n, payload in enumerate(payloads):
        data = writer.packet(payload)
        expected = RtpPacket(payload_type=111, marker=1, sequence_number=(writer.seq - 1) & 0xFFFF,
                             timestamp=(writer.ts_origin + n * 48 * packet_ms) & 0xFFFFFFFF, ssrc=0x0A0B0C0D,
                             payload=payload)
        expected.extensions.mid = mid
        expected.extensions.audio_level = (False, AUDIO_LEVEL_DBOV)
        assert expected.serialize(ids) == data, n
    assert (writer.packets, writer.octets) == (len(payloads), sum(map(len, payloads)))


def test_without_negotiated_extensions_an_audio_packet_has_none() -> None:
    writer = AudioWriter(1, 111, audio_extension_block(None, "0", None))
    data = writer.packet(b"\xfc\x01")
    assert data[0] == 0x80 and len(data) == 12 + 2  # no X bit, no block
    with pytest.raises(ValueError):
        audio_extension_block(15, "0", None)  # two-byte headers are not written here


async def test_a_light_publisher_with_sound_and_a_light_viewer_of_both_through_a_real_hub(
        hub: RunningHub) -> None:
    base = f"http://127.0.0.1:{hub.port}"
    ticker = Ticker(ClipPackets(load_clip()), OpusClip())
    publisher = await publish_light(base, STATION, await hub.token(STATION), ticker, audio=True)
    viewer = LightViewer(audio=True)
    try:
        video, audio = publisher.writer, publisher.audio
        assert publisher.wire is not None and video is not None and audio is not None
        await viewer.whep(base, STATION)
        await wait_until(lambda: viewer.frames >= 30, timeout=20, message="30 video frames at the viewer")

        def hub_counted_the_audio() -> bool:  # each audio packet a frame, as the publisher's `frames`
            return hub.hub.media.metrics()["frames_received"] >= video.frames + audio.packets - 8

        await wait_until(hub_counted_the_audio, timeout=5, message="the hub to count the audio packets as frames")
        assert audio.packets >= 3 * video.frames  # 50 a second beside 15 pictures
        # the viewer's frames are the video's (an audio packet's marker bit is not a frame) ...
        assert viewer.frames <= video.frames
        # ... and it received the sound: ≈ 3.3 audio packets per picture beside the video's packets
        video_packets_per_frame = video.packets / video.frames
        assert viewer.packets >= viewer.frames * (video_packets_per_frame + 2.5)
    finally:
        ticker.clear()
        await close_peer_connection(viewer.pc)
        await close_peer_connection(publisher.pc)


def test_audio_extension_block_pads_to_whole_words() -> None:
    block = audio_extension_block(1, "12", 2)
    assert block[:2] == b"\xbe\xde" and len(block) % 4 == 0
    assert struct.unpack("!H", block[2:4])[0] == (len(block) - 4) // 4
