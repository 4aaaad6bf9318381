"""station.toml decoding, the test pattern, thumbnails, and the aiortc/aioice seams."""

from __future__ import annotations

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


def test_bitrate_cap_clamps_remb_increases() -> None:
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    vp8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96)

    def sender_encoder() -> Any:  # a VP8 encoder, or rtc's capped wrapper around one
        """The encoder aiortc's sender creates, through the module global ``rtc`` wraps."""
        return vars(aiortc.rtcrtpsender)["get_encoder"](vp8)

    with rtc.bitrate_cap(300_000):
        encoder = sender_encoder()
    assert encoder.target_bitrate == 300_000
    encoder.target_bitrate = 1_500_000  # what a generous REMB would ask for
    assert encoder.target_bitrate == 300_000
    assert sender_encoder().target_bitrate == 500_000  # no cap outside
