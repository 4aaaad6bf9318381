"""Pins the aiortc internals ``clients.rtc.bitrate_cap`` relies on (seam 2 of clients/rtc.py).

If one fails after an upgrade, re-read ``aiortc/rtcrtpsender.py`` and the encoders before
changing the seam: an agent whose cap silently stops working floods a 1 Mbps village uplink.
"""

from __future__ import annotations

import inspect

import aiortc.rtcrtpsender
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.vpx import Vp8Encoder

from tests.locked import check_locked


def test_versions_are_the_locked_ones() -> None:
    check_locked("aiortc")


def test_the_sender_builds_its_encoder_through_its_module_global() -> None:
    # The seam swaps the name `get_encoder` in rtcrtpsender's namespace; the sender must look
    # it up there when it starts, not hold a reference taken at import.
    source = inspect.getsource(aiortc.rtcrtpsender)
    assert "from .codecs import get_capabilities, get_encoder, is_rtx" in source
    assert "self.__encoder = get_encoder(codec)" in inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender)


def test_remb_reaches_the_encoder_as_target_bitrate() -> None:
    # The cap works by clamping this one attribute, which REMB sets.
    sender = inspect.getsource(aiortc.rtcrtpsender.RTCRtpSender)
    assert 'if self.__encoder and hasattr(self.__encoder, "target_bitrate"):' in sender
    assert "self.__encoder.target_bitrate = bitrate" in sender
    for encoder in (Vp8Encoder, H264Encoder):
        assert isinstance(inspect.getattr_static(encoder, "target_bitrate"), property)
