"""Pins every aiortc / aioice internal that ``hub.media.aiortc_seams`` relies on.

If one of these fails after an upgrade, re-read the named aiortc function and adapt the
seam (and docs/media.md) before touching anything else: the relay tests would otherwise
fail in confusing ways, or worse, pass while media is decoded or keyframe requests vanish.
"""

from __future__ import annotations

import inspect

import aioice
import aiortc.rtcdtlstransport
import aioice.ice
import aiortc
import pytest
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, rtcicetransport, rtcrtpreceiver

from hub.media import aiortc_seams as seams

VERIFIED = {"aiortc": "1.16.0", "aioice": "0.13.0"}


def source(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]


def test_versions_are_the_ones_the_seams_were_verified_against() -> None:
    found = {"aiortc": aiortc.__version__, "aioice": aioice.__version__}
    assert found == VERIFIED, (
        f"aiortc/aioice changed ({found}, seams verified against {VERIFIED}): re-check "
        "hub/media/aiortc_seams.py against the new source, then update VERIFIED"
    )


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


def test_receiver_can_send_a_pli_and_list_its_sources() -> None:
    # Seam 2.
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_pli).parameters) == ["self", "media_ssrc"]
    assert inspect.iscoroutinefunction(RTCRtpReceiver._send_rtcp_pli)
    assert hasattr(RTCRtpReceiver, "getSynchronizationSources")


def test_sender_routes_pli_and_fir_to_send_keyframe_and_packs_packets() -> None:
    # Seam 3: a viewer's PLI/FIR calls self._send_keyframe() (looked up on the instance, so
    # shadowing it per sender works); av.Packet input is packed, not encoded.
    handle = source(RTCRtpSender._handle_rtcp_packet)
    assert "RTCP_PSFB_FIR" in handle and "RTCP_PSFB_PLI" in handle
    assert "self._send_keyframe()" in handle
    next_frame = source(RTCRtpSender._next_encoded_frame)
    assert "self.__encoder.pack(data)" in next_frame


def test_aioice_gathers_host_addresses_through_the_module_function() -> None:
    # Seam 4: gather_candidates calls the module-level get_host_addresses by name.
    assert "get_host_addresses(" in source(aioice.ice.Connection.gather_candidates)
    assert getattr(aioice.ice.get_host_addresses, "jaga_wrapper", False), "seam not installed"
    assert "127.0.0.1" in source(seams._original_get_host_addresses)  # still excludes loopback


async def test_empty_ice_server_list_means_no_stun() -> None:
    # aiortc only falls back to Google's STUN when iceServers is None.
    init = source(rtcicetransport.RTCIceGatherer.__init__)
    assert "if iceServers is None:" in init
    pc = seams.new_peer_connection(())
    transceiver = pc.addTransceiver("video")
    connection = transceiver.receiver.transport.transport.iceGatherer._connection
    assert connection.stun_server is None and connection.turn_server is None
    await pc.close()


def test_setlocaldescription_gathers_inside_the_callers_context() -> None:
    # announced_host_addresses relies on gathering being awaited from setLocalDescription
    # (tasks created there inherit the caller's contextvars).
    assert "await self.__gather()" in source(RTCPeerConnection.setLocalDescription)


async def test_announced_addresses_apply_only_inside_the_block() -> None:
    assert aioice.ice.get_host_addresses(True, False) == seams._original_get_host_addresses(True, False)
    with seams.announced_host_addresses(["127.0.0.1"]):
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
        pc = seams.new_peer_connection(())
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        assert "127.0.0.1" in pc.localDescription.sdp
        await pc.close()
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


async def test_take_encoded_frames_refuses_a_started_receiver() -> None:
    pc = seams.new_peer_connection(())
    receiver = pc.addTransceiver("video").receiver
    receiver._RTCRtpReceiver__decoder_thread = object()  # as receive() leaves it
    with pytest.raises(RuntimeError):
        seams.take_encoded_frames(receiver, lambda *args: None)
    receiver._RTCRtpReceiver__decoder_thread = None
    await pc.close()


def test_h264_is_offered_only_as_packetization_mode_1() -> None:
    from aiortc.codecs import CODECS

    h264 = [c for c in CODECS["video"] if c.name == "H264"]
    assert h264 and all(c.parameters.get("packetization-mode") == "1" for c in h264)
    assert {c.parameters["profile-level-id"] for c in h264} == {"42001f", "42e01f"}


def test_transport_hands_rtp_to_the_receivers_handle_method() -> None:
    # Seam 6: shadowing _handle_rtp_packet per receiver works because the DTLS transport
    # looks it up on the instance, with arrival_time_ms as a keyword.
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    handle = source(RTCDtlsTransport._handle_rtp_data)
    assert "await receiver._handle_rtp_packet(packet, arrival_time_ms=arrival_time_ms)" in handle
    assert list(inspect.signature(RTCRtpReceiver._handle_rtp_packet).parameters) == ["self", "packet", "arrival_time_ms"]


def test_dtls_transport_protects_with_tx_srtp_and_ice_sends_on_the_nominated_pair() -> None:
    # Seam 7: the same steps aiortc takes for each RTP packet, done synchronously by SrtpWire.
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    send_rtp = source(RTCDtlsTransport._send_rtp)
    assert "data = self._tx_srtp.protect(data)" in send_rtp and "await self.transport._send(data)" in send_rtp
    sendto = source(aioice.ice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in source(aioice.ice.StunProtocol.send_data)
    close = source(aioice.ice.Connection.close)
    assert close.index("self._nominated.clear()") < close.index("await protocol.close()")  # wire sees it first
    assert "self._send = self._connection.send" in source(rtcicetransport.RTCIceTransport.__init__)


def test_sender_routes_nacks_to_retransmit_and_reports_through_send_rtcp() -> None:
    # Seams 8 and 9 (instance lookups, so shadowing per sender works), and 10.
    handle = source(RTCRtpSender._handle_rtcp_packet)
    assert "await self._retransmit(seq)" in handle
    run_rtcp = source(RTCRtpSender._run_rtcp)
    assert "RtcpSrPacket(" in run_rtcp and "await self._send_rtcp(packets)" in run_rtcp
    init = source(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in init and "self._rtx_ssrc = random32()" in init
    assert "ssrc=sender._ssrc" in source(aiortc.rtcdtlstransport.RTCDtlsTransport._register_rtp_sender)


async def test_sender_ssrcs_are_the_ones_announced_in_the_sdp() -> None:
    pc = seams.new_peer_connection(())
    transceiver = pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    ssrc, rtx_ssrc = seams.sender_ssrcs(transceiver.sender)
    assert f"a=ssrc-group:FID {ssrc} {rtx_ssrc}" in pc.localDescription.sdp
    media = seams.negotiated_media(pc.localDescription.sdp)["video"]
    assert media.rtx_payload_type is not None and media.mid == transceiver.mid
    await pc.close()
