"""Pins the aiortc internals ``clients.rtc.rate_control`` (seam 2 of clients/rtc.py) and the
quality loop's link meter (clients/adapt.py) rely on.

If one fails after an upgrade, re-read ``aiortc/rtcrtpsender.py`` and the encoders before
changing the seam: an agent whose rate control silently stops working floods a village uplink
(or, at audio only, keeps sending video).
"""

from __future__ import annotations

import inspect

import aiortc.rtcrtpsender
import av
import pytest
from aiortc.codecs import h264, opus, vpx
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtp import RtcpReceiverInfo

from tests.clients.helpers import video_frame
from tests.locked import check_locked

SENDER = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender)


def test_versions_are_the_locked_ones() -> None:
    check_locked("aiortc")


def test_the_sender_builds_its_encoder_through_its_module_global() -> None:
    # The seam swaps the name `get_encoder` in rtcrtpsender's namespace; the sender must look
    # it up there when it starts, not hold a reference taken at import.
    source = inspect.getsource(aiortc.rtcrtpsender)
    assert "from .codecs import get_capabilities, get_encoder, is_rtx" in source
    assert "self.__encoder = get_encoder(codec)" in SENDER


def test_remb_reaches_the_encoder_as_target_bitrate() -> None:
    # The proxy hears the hub's estimate through this one attribute, which REMB sets.
    assert 'if self.__encoder and hasattr(self.__encoder, "target_bitrate"):' in SENDER
    assert "self.__encoder.target_bitrate = bitrate" in SENDER
    for encoder in (Vp8Encoder, H264Encoder):
        assert isinstance(inspect.getattr_static(encoder, "target_bitrate"), property)


def test_the_sender_encodes_through_encode_with_its_keyframe_flag() -> None:
    # The proxy's encode() ORs in the agent's keyframe request; the sender must call it so.
    assert "None, self.__encoder.encode, data, force_keyframe" in SENDER


@pytest.mark.parametrize(("encoder_class", "module"), [(Vp8Encoder, vpx), (H264Encoder, h264)])
def test_the_setter_clamps_and_encode_reads_the_private_target(encoder_class: type, module: object) -> None:
    # Why the private value: the public setter keeps 250 kbps (VP8) / 500 kbps (H.264) at least.
    encoder = encoder_class()
    encoder.target_bitrate = 100_000
    assert encoder.target_bitrate == module.MIN_BITRATE  # type: ignore[attr-defined]
    private = f"_{encoder_class.__name__}__target_bitrate"
    assert hasattr(encoder, private)
    setattr(encoder, private, 120_000)
    assert encoder.target_bitrate == 120_000
    encoder.encode(video_frame())
    assert encoder.codec.bit_rate == 120_000  # the codec is built from it


def test_the_h264_encoder_assumes_30_fps() -> None:
    # x264 spends bit_rate / framerate per frame: the proxy scales H.264 targets by 30 / fps.
    assert h264.MAX_FRAME_RATE == 30
    assert "self.codec.framerate = fractions.Fraction(MAX_FRAME_RATE, 1)" in inspect.getsource(H264Encoder)
    encoder = H264Encoder()
    encoder.encode(video_frame())
    assert encoder.codec is not None and encoder.codec.framerate == 30


def test_the_h264_encoder_keeps_a_context_opened_for_it() -> None:
    # The proxy opens x264 itself (aiortc's settings plus a VBV) just before aiortc's encode;
    # aiortc must open it exactly so and keep a context of the frame's size and its target.
    source = inspect.getsource(H264Encoder._encode_frame)
    for line in ('self.codec = av.CodecContext.create("libx264", "w")', "self.codec.bit_rate = self.target_bitrate",
                 'self.codec.pix_fmt = "yuv420p"', "self.codec.time_base = fractions.Fraction(1, MAX_FRAME_RATE)",
                 '"level": "31",', '"tune": "zerolatency",', 'self.codec.profile = "Baseline"',
                 "frame.width != self.codec.width", "frame.height != self.codec.height",
                 "abs(self.target_bitrate - self.codec.bit_rate) / self.codec.bit_rate",
                 "> 0.1", 'self.buffer_data = b""', "self.buffer_pts = None"):
        assert line in source, line
    assert source.count("self.codec.options") == 1  # no other option the proxy would miss
    encoder = H264Encoder()
    encoder.encode(video_frame())
    ours = av.CodecContext.create("libx264", "w")
    ours.width, ours.height, ours.pix_fmt, ours.bit_rate = 320, 180, "yuv420p", encoder.target_bitrate
    encoder.codec = ours
    encoder.encode(video_frame(pts=3000))
    assert encoder.codec is ours


def test_the_opus_encoder_opens_its_codec_at_the_firstvideo_frame() -> None:
    # The seam sets `codec.bit_rate` on a fresh Opus encoder; it takes effect when encode opens it.
    assert "self.codec.bit_rate = 96000" in inspect.getsource(OpusEncoder)
    assert opus.SAMPLE_RATE == 48_000
    encoder = OpusEncoder()
    assert not encoder.codec.is_open and encoder.codec.bit_rate == 96_000
    encoder.codec.bit_rate = 32_000
    frame = av.AudioFrame(format="s16", layout="mono", samples=960)
    frame.planes[0].update(bytes(frame.planes[0].buffer_size))
    frame.sample_rate, frame.pts = 48_000, 0
    encoder.encode(frame)
    assert encoder.codec.is_open and encoder.codec.bit_rate == 32_000


def test_the_opus_encoder_cuts_frames_with_its_own_resampler_and_the_sender_skips_empty_calls() -> None:
    # Seam 2's audio_packet_ms replaces `resampler` (the frame size the codec is fed) and sets
    # libopus's `frame_duration` before the codec opens; the sender must tolerate the calls
    # that return no packet while the resampler fills a 40 / 60 ms frame.
    source = inspect.getsource(OpusEncoder)
    assert "self.resampler = AudioResampler(" in source and "frame_size=SAMPLES_PER_FRAME" in source
    assert "for frame in self.resampler.resample(frame):" in source
    assert 'self.codec.options = {"application": "voip"}' in source
    assert opus.SAMPLES_PER_FRAME == 960
    assert "if not payloads:\n            return None" in SENDER
    assert "if enc_frame is None:\n                    continue" in SENDER


def test_the_senders_stats_carry_the_hubs_receiver_reports_raw() -> None:
    # The link meter reads fractionLost as the RR's 8-bit field (lost / 256) and RTT in seconds.
    assert "fractionLost=report.fraction_lost" in SENDER
    assert "roundTripTime=self.__rtt" in SENDER
    assert 'type="remote-inbound-rtp"' in SENDER and "kind=self.__kind" in SENDER
    report = RtcpReceiverInfo(ssrc=1, fraction_lost=64, packets_lost=3, highest_sequence=9, jitter=0, lsr=0, dlsr=0)
    assert RtcpReceiverInfo.parse(bytes(report)).fraction_lost == 64
    # RTT: timed from the last SR sent, whose LSR is the last RTP packet's NTP time, so a paused
    # sender's RTT goes wrong (the meter prefers audio's and drops non-positive values).
    assert "rtt = time.time() - self.__lsr_time - (report.dlsr / 65536)" in SENDER
    assert "self.__lsr = ((self.__ntp_timestamp) >> 16) & 0xFFFFFFFF" in SENDER
    assert "self.__ntp_timestamp = clock.current_ntp_time()" in SENDER  # set per RTP packet sent
    # bytesSent counts payload octets, as the levels' bitrates do.
    assert "self.__octet_count += len(payload)" in SENDER
    assert "bytesSent=self.__octet_count" in SENDER
