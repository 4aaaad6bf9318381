"""Keyframes: in RTP payloads (where a viewer may start) and in frames; rate-limited requests."""

from __future__ import annotations

import asyncio
import fractions

import av
import pytest
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

from hub.media import seams_keyframes
from hub.media.keyframes import KeyframeRequester, h264_nal_types, is_keyframe, starts_keyframe, vp8_descriptor_size
from tests.kit import wait_until


def frames(count: int) -> list[av.VideoFrame]:
    out = []
    for i in range(count):
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([(i * 7 + 60) % 256]) * plane.buffer_size)
        frame.pts, frame.time_base = i * 6000, fractions.Fraction(1, 90000)
        out.append(frame)
    return out


def test_first_packet_of_a_keyframe_from_aiortcs_own_packetizers() -> None:
    for mime, encoder in (("video/vp8", Vp8Encoder()), ("video/h264", H264Encoder())):
        packets = [encoder.encode(frame, force_keyframe=(i == 0))[0] for i, frame in enumerate(frames(3))]
        key, *deltas = packets
        assert key and starts_keyframe(mime, key[0]), mime
        assert not any(starts_keyframe(mime, p) for p in key[1:]), mime
        assert not any(starts_keyframe(mime, p) for frame in deltas for p in frame), mime


def test_vp8_descriptor_variants_and_h264_aggregates() -> None:
    # X=1, I=1 (15-bit picture id), L=1, T=1; S=1 PID=0; VP8 header P=0 -> keyframe
    assert starts_keyframe("video/vp8", bytes([0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0x10]))
    assert not starts_keyframe("video/vp8", bytes([0x90, 0xE0, 0x81, 0x23, 0x05, 0x40, 0x11]))  # P=1
    assert not starts_keyframe("video/vp8", bytes([0x00, 0x10]))  # S=0: a continuation
    assert not starts_keyframe("video/vp8", b"\x90")  # truncated
    stap_a = b"\x18" + b"\x00\x02\x67\x42" + b"\x00\x02\x68\xce"  # SPS + PPS
    assert starts_keyframe("video/h264", stap_a)
    assert starts_keyframe("video/h264", bytes([0x7C, 0x85]))  # FU-A start of an IDR
    assert not starts_keyframe("video/h264", bytes([0x7C, 0x05]))  # FU-A middle
    assert not starts_keyframe("video/h264", bytes([0x41, 0x9A]))  # non-IDR slice
    assert starts_keyframe("audio/opus", b"\x01") and not starts_keyframe("video/h264", b"")


def test_keyframe_detection_in_frames() -> None:
    assert is_keyframe("video/VP8", b"\x50\x00") and not is_keyframe("video/VP8", b"\x51\x00")
    idr = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88"
    assert h264_nal_types(idr) == {7, 8, 5} and is_keyframe("video/H264", idr)
    assert not is_keyframe("video/H264", b"\x00\x00\x00\x01\x41\x9a")
    assert is_keyframe("audio/opus", b"\x01")


async def test_keyframe_requests_are_rate_limited_and_never_lost() -> None:
    sent: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def send() -> bool:
        sent.append(loop.time())
        if len(sent) == 2:
            done.set()
        return True

    requester = KeyframeRequester(send, min_interval_s=0.2)
    for _ in range(10):
        requester.request()  # one now, the other nine folded into one at the interval's end
    await wait_until(done.is_set, 5, "the second keyframe request", changed=done)
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.19
    await requester.close()


async def test_a_joining_viewer_need_not_wait_out_the_interval_once_the_last_request_was_answered() -> None:
    now = [100.0]
    sent: list[float] = []

    async def send() -> bool:
        sent.append(now[0])
        return True

    requester = KeyframeRequester(send, min_interval_s=0.5, clock=lambda: now[0])
    requester.request(urgent=True)  # the first joiner
    await asyncio.sleep(0)
    now[0] += 0.05
    requester.request(urgent=True)  # not answered yet: waits for the interval
    await asyncio.sleep(0)
    assert sent == [100.0]
    requester.answered()  # the keyframe came
    now[0] += 0.1
    requester.request()  # a viewer's own PLI: still rate-limited
    await asyncio.sleep(0)
    assert sent == [100.0]
    requester.request(urgent=True)  # the next joiner: answered, 0.15 s later → now
    await asyncio.sleep(0)
    assert sent == pytest.approx([100.0, 100.15])
    now[0] += 0.05
    requester.request(urgent=True)  # answered? no (nothing since 100.15): rate-limited again
    await asyncio.sleep(0)
    assert len(sent) == 2
    await requester.close()


def test_vp8_descriptor_size_matches_aiortc_and_refuses_truncation() -> None:
    # RFC 7741 §4.2: X; then I (7- or 15-bit picture id), L (TL0PICIDX), T/K (one byte)
    cases = [b"\x10\x9d", b"\x90\x80\x05\x9d", b"\x90\x80\x85\x05\x9d", b"\x90\xe0\x85\x05\x07\x40\x9d",
             b"\x90\x10\x20\x9d", b"\x80\x00\x9d"]
    for payload in cases:
        assert payload[vp8_descriptor_size(payload):] == seams_keyframes.depayload("video/vp8", payload)
    for truncated in (b"", b"\x10", b"\x90", b"\x90\x80", b"\x90\x80\x85\x05"):
        with pytest.raises(ValueError):
            vp8_descriptor_size(truncated)
