"""Pins the aiortc internals ``hub.media.seams_keyframes`` relies on (seams 1-3 and 12).

If one of these fails after an upgrade, re-read the named aiortc function and adapt the
seam (and docs/media.md) before touching anything else: the relay tests would otherwise
fail in confusing ways, or worse, pass while media is decoded or keyframe requests vanish.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import aiortc.codecs
import pytest
from aiortc import RTCRtpReceiver, RTCRtpSender, rtcrtpreceiver

from hub.media import seams_keyframes as seams
from hub.media.seams_peers import new_peer_connection
from tests.locked import check_locked


def source(obj: Callable[..., object]) -> str:
    return inspect.getsource(obj)


def test_installed_aiortc_is_the_locked_one() -> None:
    check_locked("aiortc")


def test_receiver_feeds_reassembled_frames_to_a_decoder_queue() -> None:
    # Seam 1: the jitter buffer output goes through self.__decoder_queue.put((codec, frame)),
    # and receive() hands that same queue to the decoder thread, which stops on None.
    handle = source(RTCRtpReceiver._handle_rtp_packet)
    assert "self.__decoder_queue.put((codec, encoded_frame))" in handle
    assert "encoded_frame.timestamp = self.__timestamp_mapper.map(" in handle
    receive = source(RTCRtpReceiver.receive)
    assert "self.__decoder_queue," in receive and "target=decoder_worker" in receive
    worker = source(rtcrtpreceiver.decoder_worker)
    assert "task = input_q.get()" in worker and "if task is None:" in worker
    init = source(RTCRtpReceiver.__init__)
    assert "self.__decoder_queue: queue.Queue = queue.Queue()" in init
    assert "self.__decoder_thread: Optional[threading.Thread] = None" in init


async def test_take_encoded_frames_swaps_the_queue_and_refuses_a_started_receiver() -> None:
    pc = new_peer_connection(())
    receiver = pc.addTransceiver("video").receiver
    frames: list[tuple[str, int, bytes, int]] = []
    seams.take_encoded_frames(receiver, lambda *frame: frames.append(frame))
    queue = vars(receiver)["_RTCRtpReceiver__decoder_queue"]
    assert queue.get() is None  # the decoder thread would stop at once
    vars(receiver)["_RTCRtpReceiver__decoder_thread"] = object()  # as receive() leaves it
    with pytest.raises(RuntimeError):
        seams.take_encoded_frames(receiver, lambda *frame: None)
    vars(receiver)["_RTCRtpReceiver__decoder_thread"] = None
    await pc.close()


def test_receiver_can_send_a_pli_and_list_its_sources() -> None:
    # Seam 2.
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == ["self", "media_ssrc"]
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_pli)
    assert "for source, timestamp in self.__active_ssrc.items()" in source(RTCRtpReceiver.getSynchronizationSources)


def test_sender_routes_pli_and_fir_to_send_keyframe() -> None:
    # Seam 3: a viewer's PLI/FIR calls self._send_keyframe() (looked up on the instance, so
    # shadowing it per sender works).
    handle = source(RTCRtpSender._handle_rtcp_packet)
    assert "RTCP_PSFB_FIR" in handle and "RTCP_PSFB_PLI" in handle
    assert "self._send_keyframe()" in handle
    assert list(inspect.signature(RTCRtpSender._send_keyframe).parameters) == ["self"]


async def test_on_keyframe_request_shadows_one_sender_only() -> None:
    pc = new_peer_connection(())
    first, second = (pc.addTransceiver("video", direction="sendonly").sender for _ in range(2))
    calls: list[str] = []
    seams.on_keyframe_request(first, lambda: calls.append("first"))
    first._send_keyframe()
    second._send_keyframe()  # aiortc's own: only sets its encoder's flag
    assert calls == ["first"]
    await pc.close()


def test_depayload_picks_by_codec_name() -> None:
    # Seam 12: aiortc picks its depayloader by the (case-sensitive) codec name.
    depayload = source(aiortc.codecs.depayload)
    assert 'codec.name == "VP8"' in depayload and 'codec.name == "H264"' in depayload
    assert seams.depayload("video/vp8", b"\x10\x9d\x01\x2a") == b"\x9d\x01\x2a"
