"""Pins the aiortc / aioice / pylibsrtp internals ``hub.media.seams_egress`` relies on (seams 6-9, 14-16).

If one of these fails after an upgrade, re-read the named function and adapt the seam (and
docs/media.md) first: otherwise viewers may get packets with the wrong SSRC, unanswered
NACKs, sender reports with zero counts, or nothing at all once aioice changes its sockets.
"""

from __future__ import annotations

import asyncio.selector_events
import dataclasses
import inspect
import os
import struct
from collections.abc import Callable

import aioice.ice
import aiortc.rtcdtlstransport
import pylibsrtp
import pytest
from aiortc import RTCRtpSender, rtcicetransport
from aiortc.rtcdtlstransport import RTCDtlsTransport
from aiortc.rtp import RtcpPacket, RtcpReceiverInfo, RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket

from hub.media import seams_egress as seams
from hub.media.rtcp import ReceiverReport
from hub.media.seams_peers import negotiated_media, new_peer_connection
from tests.kit import wait_until
from tests.locked import check_locked


def source(obj: Callable[..., object]) -> str:
    return inspect.getsource(obj)


def test_installed_aiortc_aioice_and_pylibsrtp_are_the_locked_ones() -> None:
    check_locked("aiortc", "aioice", "pylibsrtp")


def test_dtls_transport_protects_with_tx_srtp_and_ice_sends_on_the_nominated_pair() -> None:
    # Seam 6: the same steps aiortc takes for each RTP packet, done synchronously by SrtpWire.
    send_rtp = source(RTCDtlsTransport._send_rtp)
    assert "data = self._tx_srtp.protect(data)" in send_rtp and "await self.transport._send(data)" in send_rtp
    assert "self._tx_srtp = Session(tx_policy)" in source(RTCDtlsTransport._setup_srtp)
    sendto = source(aioice.ice.Connection.sendto)
    assert "active_pair = self._nominated.get(component)" in sendto
    assert "active_pair.protocol.send_data(data, active_pair.remote_addr)" in sendto
    assert "self.transport.sendto(data, addr)" in source(aioice.ice.StunProtocol.send_data)
    close = source(aioice.ice.Connection.close)
    assert close.index("self._nominated.clear()") < close.index("await protocol.close()")  # wire sees it first
    assert "self._send = self._connection.send" in source(rtcicetransport.RTCIceTransport.__init__)
    # congested(): the selector transport buffers what the kernel did not take, and says how much
    transport = vars(asyncio.selector_events)["_SelectorDatagramTransport"]  # what a UDP endpoint gets
    assert callable(getattr(transport, "get_write_buffer_size", None))


def test_sender_routes_nacks_to_retransmit_and_reports_through_send_rtcp() -> None:
    # Seams 7 and 8: instance lookups, so shadowing per sender works.
    handle = source(RTCRtpSender._handle_rtcp_packet)
    assert "await self._retransmit(seq)" in handle
    run_rtcp = source(RTCRtpSender._run_rtcp)
    assert "RtcpSrPacket(" in run_rtcp and "await self._send_rtcp(packets)" in run_rtcp
    assert list(inspect.signature(RTCRtpSender._send_rtcp).parameters) == ["self", "packets"]
    # what report_with's shadow then does itself on the wire: serialise, protect as SRTCP, send
    send_rtcp = source(RTCRtpSender._send_rtcp)
    assert "payload += bytes(packet)" in send_rtcp and "await self.transport._send_rtp(payload)" in send_rtcp
    assert "data = self._tx_srtp.protect_rtcp(data)" in source(RTCDtlsTransport._send_rtp)


def test_sender_ssrcs_are_random_per_sender_and_route_its_rtcp() -> None:
    # Seam 9.
    init = source(RTCRtpSender.__init__)
    assert "self._ssrc = random32()" in init and "self._rtx_ssrc = random32()" in init
    assert "ssrc=sender._ssrc" in source(aiortc.rtcdtlstransport.RTCDtlsTransport._register_rtp_sender)


async def test_sender_ssrcs_are_the_ones_announced_in_the_sdp() -> None:
    pc = new_peer_connection(())
    transceiver = pc.addTransceiver("video", direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    ssrc, rtx_ssrc = seams.sender_ssrcs(transceiver.sender)
    assert f"a=ssrc-group:FID {ssrc} {rtx_ssrc}" in pc.localDescription.sdp
    media = negotiated_media(pc.localDescription.sdp)["video"]
    assert media.rtx_payload_type is not None and media.mid == transceiver.mid
    await pc.close()


async def test_nacks_and_reports_are_shadowed_per_sender() -> None:
    pc = new_peer_connection(())
    sender = pc.addTransceiver("video", direction="sendonly").sender
    nacked: list[int] = []
    sent: list[RtcpSrPacket] = []

    async def send_rtcp(packets: list[RtcpSrPacket]) -> None:
        sent.extend(packets)

    vars(sender)["_send_rtcp"] = send_rtcp  # stands in for the DTLS transport
    seams.on_nack(sender, lambda seqs: nacked.extend(seqs))
    seams.report_with(sender, lambda now: (1234, 5, 600))
    await sender._retransmit(42)
    aiortc_counts = RtcpSenderInfo(ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0)
    await sender._send_rtcp([RtcpSrPacket(ssrc=sender._ssrc, sender_info=aiortc_counts)])
    assert nacked == [42]
    info = sent[0].sender_info
    assert (info.rtp_timestamp, info.packet_count, info.octet_count) == (1234, 5, 600) and info.ntp_timestamp
    await pc.close()


def test_wire_answers_false_once_nothing_is_nominated() -> None:
    wire = seams.SrtpWire(pylibsrtp.Session(), {})
    assert wire.send_parts(b"\x80" * 12, b"") == seams.NOT_SENT and not wire.send(b"\x80" * 12)
    assert not wire.congested()


def test_pylibsrtp_protects_through_its_cffi_binding_on_the_session_srtp_t() -> None:
    # Seam 16: what Session.protect does, which SrtpWire does in a buffer of its own.
    session = source(pylibsrtp.Session.__init__)
    assert 'srtp = ffi.new("srtp_t *")' in session and "self._srtp = ffi.gc(srtp," in session
    assert "lib.srtp_protect, SRTP_MAX_TRAILER_LEN" in source(pylibsrtp.Session.protect)
    assert "self.__process(packet, lib.srtp_unprotect)" in source(pylibsrtp.Session.unprotect)  # seams_ingest's
    assert "self.__process(packet, lib.srtp_unprotect_rtcp)" in source(pylibsrtp.Session.unprotect_rtcp)  # and SRTCP
    process = source(vars(pylibsrtp.Session)["_Session__process"])
    assert "func(self._srtp[0], self._cdata, len_p)" in process and "len_p[0] = len(data)" in process
    assert "return self._buffer[0 : len_p[0]]" in process
    assert pylibsrtp._binding.lib.srtp_err_status_ok == 0  # SrtpWire treats any non-zero as refused


class Sink:
    """Stands in for the nominated pair's protocol and transport."""

    def __init__(self, backlog: int = 0) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.backlog = backlog
        self.transport = self

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent.append((data, addr))

    def get_write_buffer_size(self) -> int:
        return self.backlog


class Pair:
    def __init__(self, protocol: Sink) -> None:
        self.protocol, self.remote_addr = protocol, ("127.0.0.1", 9)


def srtp_sessions() -> tuple[pylibsrtp.Session, pylibsrtp.Session, pylibsrtp.Session]:
    """Two senders with one key (so their output must match) and a receiver for it."""
    key = os.urandom(30)

    def one(direction: int) -> pylibsrtp.Session:
        return pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=direction))

    return one(pylibsrtp.Policy.SSRC_ANY_OUTBOUND), one(pylibsrtp.Policy.SSRC_ANY_OUTBOUND), \
        one(pylibsrtp.Policy.SSRC_ANY_INBOUND)


def test_the_wire_protects_exactly_as_session_protect_does_without_joining_first() -> None:
    ours, theirs, receiver = srtp_sessions()
    sink = Sink()
    wire = seams.SrtpWire(ours, {1: Pair(sink)})  # type: ignore[dict-item]  # a pair's two fields suffice
    for seq in range(40):
        header = struct.pack("!BBHII", 0x80, 96 | (0x80 if seq % 5 == 4 else 0), 1000 + seq, 3000 * seq, 0xAABBCCDD)
        rest = os.urandom(seq * 30)  # 0 to 1,170 bytes: the buffer is reused, shorter after longer
        assert wire.send_parts(header, rest) == seams.SENT
        assert sink.sent[-1] == (theirs.protect(header + rest), ("127.0.0.1", 9))
        assert receiver.unprotect(sink.sent[-1][0]) == header + rest
    assert wire.send(header + rest) is False  # the same sequence number twice: libsrtp refuses
    assert wire.send_parts(header, os.urandom(2000)) == seams.NOT_SENT  # larger than any MTU
    assert len(sink.sent) == 40


def test_the_wire_sends_nothing_while_the_socket_is_backed_up() -> None:
    ours, _, _ = srtp_sessions()
    sink = Sink(backlog=seams.MAX_SOCKET_BACKLOG + 1)
    wire = seams.SrtpWire(ours, {1: Pair(sink)})  # type: ignore[dict-item]
    header = struct.pack("!BBHII", 0x80, 96, 1, 1, 1)
    assert wire.send_parts(header, b"x") == seams.CONGESTED and wire.congested() and sink.sent == []
    sink.backlog = 0
    assert wire.send_parts(header, b"x") == seams.SENT and not wire.congested()


def test_report_blocks_reach_the_sender_they_name_through_an_instance_lookup() -> None:
    # Seam 14: the transport routes an RR/SR to each sender its report blocks name, and calls
    # _handle_rtcp_packet on the instance (so shadowing it per sender works).
    route = source(aiortc.rtcdtlstransport.RtpRouter.route_rtcp)
    assert "if isinstance(packet, (RtcpRrPacket, RtcpSrPacket)):" in route
    assert "add_recipient(self.senders.get(report.ssrc))" in route
    assert "await recipient._handle_rtcp_packet(packet)" in source(RTCDtlsTransport._handle_rtcp_data)
    fields = [f.name for f in dataclasses.fields(RtcpReceiverInfo)]
    assert fields == ["ssrc", "fraction_lost", "packets_lost", "highest_sequence", "jitter", "lsr", "dlsr"]
    assert "for report in filter(lambda x: x.ssrc == self._ssrc, packet.reports):" in source(
        RTCRtpSender._handle_rtcp_packet)


async def test_receiver_reports_about_the_senders_ssrc_are_read_then_handled_by_aiortc() -> None:
    pc = new_peer_connection(())
    sender = pc.addTransceiver("video", direction="sendonly").sender
    handled: list[object] = []

    async def aiortc_handles(packet: object) -> None:
        handled.append(packet)

    vars(sender)["_handle_rtcp_packet"] = aiortc_handles  # stands in for aiortc's own
    reports: list[ReceiverReport] = []
    seams.on_receiver_report(sender, reports.append)
    ours = RtcpReceiverInfo(ssrc=sender._ssrc, fraction_lost=64, packets_lost=-3, highest_sequence=70000,
                            jitter=90, lsr=0x12345678, dlsr=6553)
    other = RtcpReceiverInfo(ssrc=sender._ssrc ^ 1, fraction_lost=1, packets_lost=1, highest_sequence=1, jitter=1,
                             lsr=1, dlsr=1)
    rr = RtcpRrPacket(ssrc=1, reports=[other, ours])
    await sender._handle_rtcp_packet(RtcpPacket.parse(bytes(rr))[0])  # as it comes off the wire
    assert reports == [ReceiverReport(fraction_lost=64, packets_lost=-3, highest_sequence=70000, jitter=90,
                                      lsr=0x12345678, dlsr=6553)]
    assert len(handled) == 1  # aiortc still handles the packet
    await pc.close()


async def test_the_lsr_of_each_sender_report_sent_is_noted_after_report_with_filled_it() -> None:
    # Seam 15, on top of seam 8: the NTP time report_with wrote, as the viewer echoes it.
    pc = new_peer_connection(())
    sender = pc.addTransceiver("video", direction="sendonly").sender
    sent: list[RtcpSrPacket] = []

    async def send_rtcp(packets: list[RtcpSrPacket]) -> None:
        sent.extend(packets)

    vars(sender)["_send_rtcp"] = send_rtcp
    values: list[tuple[int, int, int] | None] = [None, (1, 2, 3)]
    seams.report_with(sender, lambda now: values.pop(0))
    noted: list[int] = []
    seams.on_report_sent(sender, noted.append)
    aiortc_counts = RtcpSenderInfo(ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0)
    await sender._send_rtcp([RtcpSrPacket(ssrc=sender._ssrc, sender_info=aiortc_counts)])
    assert sent == [] and noted == []  # report_with sent nothing: nothing to note
    await sender._send_rtcp([RtcpSrPacket(ssrc=sender._ssrc, sender_info=aiortc_counts)])
    assert noted == [(sent[0].sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF] and noted[0]
    # aiortc's SR starts from its own counters, which stay 0 without its RTP path
    assert "ntp_timestamp=self.__ntp_timestamp" in source(RTCRtpSender._run_rtcp)
    assert "self.__ntp_timestamp = 0" in source(RTCRtpSender.__init__)
    await pc.close()


async def test_on_the_shared_port_the_wire_writes_to_the_socket_itself_unless_asyncio_holds_bytes() -> None:
    import socket
    from typing import Any

    from hub.media.seams_udp import UdpMux

    mux = await UdpMux.open("127.0.0.1", 0)
    session = mux.session(Any, "abcd")  # type: ignore[arg-type]  # the connection is not used here
    ours, _, receiver = srtp_sessions()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as viewer:
        viewer.bind(("127.0.0.1", 0))
        viewer.settimeout(5)
        address = viewer.getsockname()
        session.sendto(b"\x80\x60", address)  # data to the peer: the session owns its address now
        assert viewer.recv(100) == b"\x80\x60"
        pair = Pair(Sink())
        pair.protocol.transport, pair.remote_addr = session, address  # type: ignore[assignment]
        wire = seams.SrtpWire(ours, {1: pair})  # type: ignore[dict-item]
        queued: list[bytes] = []
        through_asyncio = session.sendto

        def note(data: Any, addr: Any = None) -> None:
            queued.append(bytes(data))
            through_asyncio(data, addr)

        session.sendto = note  # type: ignore[method-assign]  # to see which way a packet went
        header = struct.pack("!BBHII", 0x80, 96, 1, 1, 1)
        assert wire.send_parts(header, b"direct") == seams.SENT
        assert receiver.unprotect(viewer.recv(200)) == header + b"direct" and queued == []
        session.backlog = lambda: 1  # asyncio holds bytes for the socket: queue behind them, in order
        wire = seams.SrtpWire(ours, {1: pair})  # type: ignore[dict-item]  # reads the session anew
        header = struct.pack("!BBHII", 0x80, 96, 2, 1, 1)
        assert wire.send_parts(header, b"queued") == seams.SENT
        assert receiver.unprotect(viewer.recv(200)) == header + b"queued" and len(queued) == 1
        session.close()
        assert wire.send_parts(struct.pack("!BBHII", 0x80, 96, 3, 1, 1), b"closed") == seams.SENT  # dropped
        viewer.settimeout(0.2)
        with pytest.raises(TimeoutError):
            viewer.recv(200)
    mux.close()


async def test_on_a_batching_port_wires_leave_their_packets_for_one_sendmmsg() -> None:
    import socket
    from typing import Any

    from hub.media.seams_udp import UdpMux

    mux = await UdpMux.open("127.0.0.1", 0, batch_sends=True)
    assert mux.batch is not None
    session = mux.session(Any, "abcd")  # type: ignore[arg-type]  # the connection is not used here
    viewers = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    wires, receivers = [], []
    for viewer in viewers:
        viewer.bind(("127.0.0.1", 0))
        viewer.settimeout(5)
        session.sendto(b"\x80\x60", viewer.getsockname())  # the session owns the address now
        assert viewer.recv(100) == b"\x80\x60"
        pair = Pair(Sink())
        pair.protocol.transport, pair.remote_addr = session, viewer.getsockname()  # type: ignore[assignment]
        ours, _, receiver = srtp_sessions()
        wires.append(seams.SrtpWire(ours, {1: pair}))  # type: ignore[dict-item]
        receivers.append(receiver)

    def header(seq: int) -> bytes:
        return struct.pack("!BBHII", 0x80, 96, seq, 1, 1)

    def nothing_arrived(viewer: socket.socket) -> bool:
        viewer.setblocking(False)
        try:
            viewer.recv(200)
        except BlockingIOError:
            return True
        finally:
            viewer.settimeout(5)
        return False

    try:
        assert all(wire.send_parts(header(1), b"fan-out") == seams.SENT for wire in wires)
        assert len(mux.batch) == 2 and all(nothing_arrived(viewer) for viewer in viewers)
        mux.batch.flush()  # what the relay does after each relayed packet
        for viewer, receiver in zip(viewers, receivers, strict=True):
            assert receiver.unprotect(viewer.recv(200)) == header(1) + b"fan-out"
        assert (mux.batch.calls, mux.batch.datagrams) == (1, 2)
        # a wire asked again before the flush sends what waits first: nothing is overwritten
        assert wires[0].send_parts(header(2), b"second") == seams.SENT
        assert wires[0].send_parts(header(3), b"third") == seams.SENT
        mux.batch.flush()
        assert receivers[0].unprotect(viewers[0].recv(200)) == header(2) + b"second"
        assert receivers[0].unprotect(viewers[0].recv(200)) == header(3) + b"third"
        # a retransmission leaves at once
        assert wires[1].send(header(4) + b"again") is True
        assert len(mux.batch) == 0 and receivers[1].unprotect(viewers[1].recv(200)) == header(4) + b"again"
        # the port closed (asyncio closes the socket, whose number may be reused): nothing more
        batch, calls = mux.batch, mux.batch.calls
        mux.close()
        await wait_until(session.is_closing, message="the port's connection_lost closes its sessions")
        entry = batch.entry(pylibsrtp._binding.ffi.new("unsigned char[]", 16), viewers[0].getsockname())
        assert entry is not None
        batch.add(entry, 16)
        batch.flush()
        assert batch.calls == calls and len(batch) == 0
    finally:
        for viewer in viewers:
            viewer.close()
        session.close()
        mux.close()


async def test_without_batching_the_port_has_no_batch() -> None:
    from hub.media.seams_udp import UdpMux

    mux = await UdpMux.open("127.0.0.1", 0)
    assert mux.batch is None  # media.send_batch = false: a sendto per packet, as before
    mux.close()
