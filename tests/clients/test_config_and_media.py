"""station.toml decoding, the test pattern, thumbnails, and the aiortc/aioice seams."""

from __future__ import annotations

import array
import fractions
import math
import random
from pathlib import Path
from typing import Any

import aioice.ice
import aiortc.rtcrtpsender
import av
import pytest

from clients import rtc
from clients.config import StationConfigError, config_from_mapping, load_config
from clients.pattern import PatternLayout, render
from clients.sources import StationVideo
from clients.thumbs import thumbnail
from tests.clients.helpers import video_frame
from tests.kit import wait_until


def test_config_rejects_unknown_keys_and_applies_overrides(tmp_path: Path) -> None:
    with pytest.raises(StationConfigError, match="video.fsp"):
        config_from_mapping({"video": {"fsp": 15}})
    with pytest.raises(StationConfigError, match="hub must be"):
        config_from_mapping({"hub": "ftp://x"})
    toml = tmp_path / "station.toml"
    toml.write_text('hub = "https://jaga.example"\nstation = "35.09.01"\ntoken_file = "t.txt"\n')
    (tmp_path / "t.txt").write_text("\n  secret-token \n")
    config = load_config(toml, {"source": "test", "always_on": True, "station": None})
    assert (config.source, config.always_on, config.station) == ("test", True, "35.09.01")
    assert config.read_token() == "secret-token"
    assert config.ws_url == "wss://jaga.example/ws/station"
    assert (config.video.width, config.video.height, config.video.fps, config.video.bitrate_kbps) == (640, 360, 15, 500)
    with pytest.raises(StationConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    assert config.audio.packet_ms == 60  # a third of the packets of the browsers' 20 ms
    with pytest.raises(StationConfigError, match="audio.packet_ms must be 20, 40 or 60"):
        config_from_mapping({"audio": {"packet_ms": 30}})


def test_pattern_is_deterministic_and_moves() -> None:
    layout = PatternLayout(320, 180, 320, 160)
    first = render(layout, 0, 15, "2026-03-02 08:00:00", "DESA PADOMASAN")
    assert first == render(layout, 0, 15, "2026-03-02 08:00:00", "DESA PADOMASAN")
    assert first[0] != render(layout, 1, 15, "2026-03-02 08:00:00", "DESA PADOMASAN")[0]  # the bar moved
    assert first[0] != render(layout, 0, 15, "2026-03-02 08:00:01", "DESA PADOMASAN")[0]  # the clock ticked
    assert len(first[0]) == 320 * 180 and len(first[1]) == 160 * 90


async def test_missing_camera_falls_back_with_overlay_and_thumbnail_fits(tmp_path: Path) -> None:
    config = config_from_mapping({"source": "camera", "devices": {"camera": str(tmp_path / "no-camera"),
                                                                  "camera_retry_s": 60}})
    video = StationVideo(config, "35.09.01")
    try:
        await video.recv()
        frame = await video.recv()  # the device attempt has failed by now (or is still opening)
        assert (frame.width, frame.height, frame.format.name) == (640, 360, "yuv420p")
        assert video.camera_status == "missing"
        jpeg = thumbnail(frame)
        assert jpeg.startswith(b"\xff\xd8") and len(jpeg) < 64 * 1024
        decoded = next(av.open(__import__("io").BytesIO(jpeg)).decode(video=0))
        assert decoded.width == 320
    finally:
        video.stop()


def test_host_address_seam_is_scoped_to_its_context() -> None:
    with rtc.host_addresses(["127.0.0.1"]):
        assert aioice.ice.get_host_addresses(True, False) == ["127.0.0.1"]
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)  # aioice's own answer


def _sender_encoder(mime: str) -> Any:
    """The encoder aiortc's sender would create, through the module global ``rtc`` wraps."""
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    kind = mime.split("/")[0]
    codec = RTCRtpCodecParameters(mimeType=mime, clockRate=90000 if kind == "video" else 48000, payloadType=96,
                                  channels=2 if kind == "audio" else None)
    return vars(aiortc.rtcrtpsender)["get_encoder"](codec)


def _is_vp8_keyframe(payloads: list[bytes]) -> bool:
    from aiortc.codecs.vpx import VpxPayloadDescriptor

    _, data = VpxPayloadDescriptor.parse(payloads[0])
    return data[0] & 1 == 0  # RFC 6386 9.1: the frame tag's bit 0 is 0 for a key frame


def test_rate_control_caps_remb_until_the_agent_sets_the_rate() -> None:
    control = rtc.RateControl(300_000, audio_bps=32_000)
    with rtc.rate_control(control):
        encoder = _sender_encoder("video/VP8")
        opus = _sender_encoder("audio/opus")
    assert encoder.target_bitrate == 300_000
    encoder.target_bitrate = 1_500_000  # what a generous REMB would ask for
    assert encoder.target_bitrate == 300_000 and control.estimate_bps == 1_500_000
    assert opus.codec.bit_rate == 32_000
    # The agent's target, below aiortc's floor; REMB is only recorded from now on.
    control.set_target(120_000, fps=10)
    assert encoder.target_bitrate == 120_000
    encoder.target_bitrate = 2_000_000
    assert encoder.target_bitrate == 120_000 and (control.estimate_bps, control.estimates) == (2_000_000, 2)
    control.set_target(900_000, fps=15)
    assert encoder.target_bitrate == 300_000  # never above the cap (video.bitrate_kbps)
    assert _sender_encoder("video/VP8").target_bitrate == 500_000  # aiortc's own outside a block


def _opus_packets_of(encoder: Any, frames: int) -> list[tuple[bytes, int]]:
    """Feed ``frames`` 20 ms frames of a tone, as the agent's microphone track gives them:
    the (payload, timestamp) of every packet that came out."""
    out = []
    for n in range(frames):
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        tone = array.array("h", (int(8000 * math.sin(2 * math.pi * 440 * (n * 960 + i) / 48000)) for i in range(960)))
        frame.planes[0].update(tone.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = 48_000, n * 960, fractions.Fraction(1, 48_000)
        payloads, timestamp = encoder.encode(frame)
        out += [(payload, timestamp) for payload in payloads]
    return out


@pytest.mark.parametrize("packet_ms", [20, 40, 60])
def test_the_agents_opus_packets_carry_audio_packet_ms_of_sound(packet_ms: int) -> None:
    with rtc.rate_control(rtc.RateControl(300_000, audio_bps=32_000, audio_packet_ms=packet_ms)):
        encoder = _sender_encoder("audio/opus")
    packets = _opus_packets_of(encoder, 30)  # 600 ms of sound
    assert len(packets) >= 600 // packet_ms - 2  # the resampler and the encoder hold a little back
    samples = 48 * packet_ms
    assert {later[1] - earlier[1] for earlier, later in zip(packets, packets[1:], strict=False)} == {samples}
    decoder = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = 48_000, "stereo"
    assert [sum(f.samples for f in decoder.decode(av.Packet(p))) for p, _ in packets[:3]] == [samples] * 3
    assert encoder.codec.bit_rate == 32_000


def test_without_the_agents_control_opus_stays_aiortcs_20_ms() -> None:
    packets = _opus_packets_of(_sender_encoder("audio/opus"), 10)
    assert {b[1] - a[1] for a, b in zip(packets, packets[1:], strict=False)} == {960}


def test_rate_control_scales_h264_to_its_assumed_30_fps() -> None:
    control = rtc.RateControl(500_000)
    control.set_target(120_000, fps=10)  # set before the encoder exists: it starts there
    with rtc.rate_control(control):
        encoder = _sender_encoder("video/H264")
    assert encoder.target_bitrate == 360_000
    control.set_target(500_000, fps=15)
    assert encoder.target_bitrate == 1_000_000


def test_h264_following_remb_is_scaled_to_the_configured_fps() -> None:
    # video.adaptive = false: REMB between aiortc's floor and the cap, x264 still thinks 30 fps.
    control = rtc.RateControl(800_000, fps=15)
    with rtc.rate_control(control):
        encoder = _sender_encoder("video/H264")
    assert encoder.target_bitrate == 1_600_000  # aiortc's 1 Mbps start, capped, × 30 / 15
    encoder.target_bitrate = 100_000  # a REMB below aiortc's floor
    assert encoder.target_bitrate == 1_000_000  # 500 kbps × 2
    encoder.target_bitrate = 600_000
    assert encoder.target_bitrate == 1_200_000 and control.estimate_bps == 600_000
    low_cap = rtc.RateControl(300_000, fps=10)  # bitrate_kbps = 300: a hard cap, below aiortc's floor
    with rtc.rate_control(low_cap):
        encoder = _sender_encoder("video/H264")
    encoder.target_bitrate = 2_000_000
    assert encoder.target_bitrate == 900_000  # 300 kbps × 30 / 10


def _h264_nal_types(payloads: list[bytes]) -> list[int]:
    """NAL unit types in one encoded picture's RTP payloads (STAP-A and FU-A undone)."""
    from aiortc.codecs.h264 import h264_depayload

    annexb = b"".join(h264_depayload(p) for p in payloads)
    return [annexb[i + 4] & 0x1F for i in range(len(annexb) - 4) if annexb[i:i + 4] == b"\x00\x00\x00\x01"]


def _starts_idr(payloads: list[bytes]) -> bool:
    """SPS, PPS, then (after x264's SEI, if any) an IDR slice."""
    types = _h264_nal_types(payloads)
    return types[:2] == [7, 8] and 5 in types


def test_h264_opens_x264_with_a_vbv_and_a_new_picture_size_starts_with_sps_pps_idr() -> None:
    # The hub's HLS packager needs a new SPS when the quality level changes the picture.
    control = rtc.RateControl(500_000, fps=15)
    control.set_target(500_000, fps=15)
    with rtc.rate_control(control):
        encoder = _sender_encoder("video/H264")
    first, _ = encoder.encode(video_frame(640, 360, pts=0))
    context = encoder.codec
    second, _ = encoder.encode(video_frame(640, 360, pts=6000))
    assert encoder.codec is context  # aiortc keeps the context the proxy opened
    assert context.bit_rate == context.max_bit_rate == 1_000_000  # x264's VBV: maxrate = the target
    assert _starts_idr(first) and 5 not in _h264_nal_types(second)
    control.set_target(120_000, fps=10)  # L0 → L2: a new size and rate
    third, _ = encoder.encode(video_frame(320, 180, pts=12000))
    fourth, _ = encoder.encode(video_frame(320, 180, pts=21000))
    assert encoder.codec is not context and encoder.codec.max_bit_rate == 360_000
    assert _starts_idr(third) and 5 not in _h264_nal_types(fourth)
    control.request_keyframe()  # after audio only: an IDR, with its SPS/PPS again
    fifth, _ = encoder.encode(video_frame(320, 180, pts=30000))
    assert _starts_idr(fifth)


def test_h264_does_not_repay_a_still_picture_at_once() -> None:
    # Without a VBV, x264's average bitrate spent what 3 s of a still picture saved in the
    # next second: 2.2 Mbit for a 120 kbps target (measured); with it, one second's buffer.
    control = rtc.RateControl(500_000, fps=10)
    control.set_target(120_000, fps=10)
    with rtc.rate_control(control):
        encoder = _sender_encoder("video/H264")
    rng = random.Random(1)
    for index in range(30):
        encoder.encode(video_frame(pts=index * 9000))
    busy_bits = 0
    for index in range(30, 40):
        frame = video_frame(pts=index * 9000)
        frame.planes[0].update(rng.randbytes(frame.planes[0].buffer_size))  # noise: as busy as it gets
        payloads, _ = encoder.encode(frame)
        busy_bits += 8 * sum(len(p) for p in payloads)
    assert busy_bits <= 2.5 * 120_000  # the buffer (1 s) + one second's rate, and a margin


def test_rate_control_forces_the_next_keyframe() -> None:
    control = rtc.RateControl(300_000)
    with rtc.rate_control(control):
        encoder = _sender_encoder("video/VP8")
    first, _ = encoder.encode(video_frame(pts=0))
    second, _ = encoder.encode(video_frame(pts=9000))
    control.request_keyframe()
    third, _ = encoder.encode(video_frame(pts=18000))
    fourth, _ = encoder.encode(video_frame(pts=27000))
    assert [_is_vp8_keyframe(p) for p in (first, second, third, fourth)] == [True, False, True, False]


async def test_camera_frames_lose_their_picture_type(tmp_path: Path) -> None:
    # Decoders mark every camera frame I; libvpx would make each one a keyframe.
    class Camera:
        def __init__(self) -> None:
            self.video = self

        async def recv(self) -> av.VideoFrame:
            frame = av.VideoFrame(640, 360, "yuv420p")
            frame.pict_type = av.video.frame.PictureType.I
            return frame

        def stop(self) -> None:
            pass

    config = config_from_mapping({"source": "camera", "devices": {"camera": "fake", "camera_retry_s": 60}})
    video = StationVideo(config, "35.09.01", opener=lambda spec, kind: Camera())
    try:
        video.device.start()
        await wait_until(lambda: video.device.track is not None, 5, "the fake camera to open")
        frame = await video.recv()
        assert video.camera_status == "ok"
        assert frame.pict_type == av.video.frame.PictureType.NONE
    finally:
        video.stop()
