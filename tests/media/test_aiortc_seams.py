"""Pins every aiortc / aioice internal that ``hub.media.aiortc_seams`` relies on.

If one of these fails after an upgrade, re-read the named aiortc function and adapt the
seam (and docs/media.md) before touching anything else: the relay tests would otherwise
fail in confusing ways, or worse, pass while media is decoded or keyframe requests vanish.
"""

from __future__ import annotations

import inspect
import re

import aioice
import aiortc.rtcdtlstransport
import aioice.ice
import aiortc.clock
import aiortc.codecs
import aiortc.rate
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


def test_dtls_transport_protects_with_tx_srtp_and_ice_sends_on_the_nominated_pair() -> None:
    # Seam 6: the same steps aiortc takes for each RTP packet, done synchronously by SrtpWire.
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
    # Seams 7 and 8 (instance lookups, so shadowing per sender works), and 9.
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


def test_srtp_arrives_through_connection_data_received_and_the_dtls_rx_session() -> None:
    # Seam 10: every non-STUN datagram reaches Connection.data_received (looked up on the
    # instance, so shadowing works); the DTLS reader unprotects SRTP with self._rx_srtp.
    received = source(aioice.ice.StunProtocol.datagram_received)
    assert "self.receiver.data_received(data, self.local_candidate.component)" in received
    assert "self._queue.put_nowait((data, component))" in source(aioice.ice.Connection.data_received)
    assert "self._protocols += host_protocols" in source(aioice.ice.Connection)  # gathered sockets
    recv_next = source(aiortc.rtcdtlstransport.RTCDtlsTransport._recv_next)
    assert "data = self._rx_srtp.unprotect(data)" in recv_next
    assert "first_byte > 127 and first_byte < 192 and self._rx_srtp" in recv_next


def test_receiver_bookkeeping_matches_handle_rtp_packet() -> None:
    # Seam 11: the per-packet duties we take over, with the private names we reach.
    handle = source(RTCRtpReceiver._handle_rtp_packet)
    for duty in (
        "self.__remote_bitrate_estimator.add(",
        "fci=pack_remb_fci(*remb)",
        "self.__active_ssrc[packet.ssrc] = clock.current_datetime()",
        "self.__remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)",
        "self.__remote_streams[packet.ssrc].add(packet)",
        "self.__nack_generator.add(packet)",
        "sorted(self.__nack_generator.missing)",
        "if not self._enabled:",
    ):
        assert duty in handle, duty
    # the stand-in packet only has to carry what these two read
    stats_add = source(rtcrtpreceiver.StreamStatistics.add)
    nack_add = source(rtcrtpreceiver.NackGenerator.add)
    for code in (stats_add, nack_add):
        fields = set(re.findall(r"\bpacket\.(\w+)", code))
        assert fields <= {"sequence_number", "timestamp"}, fields
    assert "self.receivers.add(receiver)" in source(aiortc.rtcdtlstransport.RtpRouter.register_receiver)
    receive = source(RTCRtpReceiver.receive)
    assert "self.__transport._register_rtp_receiver(self, parameters)" in receive
    estimator = inspect.signature(aiortc.rate.RemoteBitrateEstimator.add).parameters
    assert set(estimator) == {"self", "abs_send_time", "arrival_time_ms", "payload_size", "ssrc"}  # by keyword
    assert "NTP_EPOCH" in source(aiortc.clock.current_ms)


async def test_receiver_bookkeeping_reaches_a_fresh_receivers_state() -> None:
    pc = seams.new_peer_connection(())
    transceiver = pc.addTransceiver("video", direction="recvonly")
    book = seams.ReceiverBookkeeping(transceiver.receiver, 90000)
    assert not book.accepting()  # not started: aiortc would not route to it
    book.count(1234, 1, 0, 100, None)
    book.note_media(1234, 1)
    assert [s.source for s in transceiver.receiver.getSynchronizationSources()] == [1234]
    await pc.close()


def test_depayload_strips_the_vp8_descriptor() -> None:
    # Seam 12: aiortc picks its depayloader by codec name.
    assert 'codec.name == "VP8"' in source(aiortc.codecs.depayload)
    assert seams.depayload("video/vp8", b"\x10\x9d\x01\x2a") == b"\x9d\x01\x2a"


def test_bitrate_estimator_parts_we_swap() -> None:
    # Seam 11 (_speed_up): the estimator reaches its rate counter and min-frame-period step
    # through instance attributes, and the history list is never replaced.
    add = source(aiortc.rate.RemoteBitrateEstimator.add)
    assert "self.incoming_bitrate.rate(arrival_time_ms)" in add and "self.incoming_bitrate.reset()" in add
    assert "self.incoming_bitrate = RateCounter(1000, 8000)" in source(aiortc.rate.RemoteBitrateEstimator.__init__)
    assert "self.update_min_frame_period(" in source(aiortc.rate.OveruseEstimator.update)
    assert source(aiortc.rate.OveruseEstimator).count("self.ts_delta_hist =") == 0
    assert aiortc.rate.MIN_FRAME_PERIOD_HISTORY_LENGTH == 60
