"""The viewer's wire: sending a station's RTP to a viewer without aiortc's sender path.

The RTP forwarding fast path (``viewer_egress``) keeps each viewer's ``RTCRtpSender`` for
negotiation, SSRCs and RTCP, but sends the media itself. That needs four reaches into
aiortc / aioice (and two more to read the viewer's receiver reports), each pinned by
``tests/media/test_seams_egress.py`` against the locked versions:

6. ``open_wire`` / ``SrtpWire``: a viewer's outbound SRTP session
   (``RTCDtlsTransport._tx_srtp``, a pylibsrtp ``Session``) and its nominated ICE pair's
   UDP transport (``RTCIceTransport._connection``, ``aioice.Connection._nominated[1]`` →
   ``CandidatePair.protocol.transport`` / ``.remote_addr``), so a packet is protected and
   sent synchronously: what ``_send_rtp`` → ``Connection.send`` → ``sendto`` →
   ``send_data`` do in four coroutines. aioice clears ``_nominated`` before it closes the
   sockets, so the wire sees a closing connection first.
7. ``on_nack``: a viewer's NACK reaches ``RTCRtpSender._retransmit(seq)``, awaited from
   ``_handle_rtcp_packet`` once per sequence number; it looks in a history that stays
   empty here. We shadow it per sender and answer from the station's cache.
8. ``report_with``: the sender's RTCP loop (``_run_rtcp``) builds an ``RtcpSrPacket`` from
   its own counters, which stay zero here, and awaits ``RTCRtpSender._send_rtcp(packets)``;
   we shadow that per sender to fill in our timestamp and counts.
9. ``sender_ssrcs``: the SSRCs aiortc announced for a sender (``_ssrc``, ``_rtx_ssrc``, in
   ``a=ssrc`` and as the keys of the RTCP router), which our packets must carry so the
   viewer's RTCP is routed back to that sender.
14. ``on_receiver_report``: the DTLS transport routes each RR/SR whose report blocks name a
    sender's SSRC to that sender's ``_handle_rtcp_packet`` (an instance lookup, awaited from
    ``RTCDtlsTransport._handle_rtcp_data``); we shadow it per sender to read the blocks
    about its SSRC first (``hub.media.congestion``), then let aiortc's own run.
15. ``on_report_sent``: after an SR left through ``_send_rtcp`` (shadowed by 8, which wrote
    our NTP time into it), the middle 32 bits of that time: what the viewer echoes as LSR,
    so the round trip can be measured (aiortc's own ``__lsr`` stays at its zero counters).

Consumers: ``peers`` (7-9, when a viewer's answer is built), ``relay`` (6, when it connects;
14-15, for a viewer's video).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Protocol, cast

import pylibsrtp
from aioice.ice import CandidatePair
from aiortc import RTCRtpSender
from aiortc import clock as aiortc_clock
from aiortc.rtp import AnyRtcpPacket, RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket

from hub.media.congestion import ReceiverReport

__all__ = ["MAX_SOCKET_BACKLOG", "SenderReport", "SrtpWire", "on_nack", "on_receiver_report", "on_report_sent",
           "open_wire", "report_with", "sender_ssrcs"]


# --- 6. sending SRTP to a viewer directly -----------------------------------------------

# Bytes a viewer's UDP socket may hold in asyncio's buffer (the kernel's was full) before
# the viewer counts as slow. UDP on a healthy path never gets here.
MAX_SOCKET_BACKLOG = 256 * 1024


class _UdpSocket(Protocol):
    """What asyncio's datagram transport offers (typeshed's ``DatagramTransport`` leaves out
    ``get_write_buffer_size``, which the selector transport has)."""

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class SrtpWire:
    """A viewer's outbound path: its SRTP session and the nominated ICE pair's socket.

    ``send`` protects and writes one RTP packet synchronously; it answers False once the
    ICE connection is closing (aioice clears its nominated pairs first) or if libsrtp
    refuses the packet. The pair is re-read when aioice nominates another one.
    """

    __slots__ = ("_addr", "_nominated", "_pair", "_protect", "_transport")

    def __init__(self, protect: Callable[[bytes], bytes], nominated: dict[int, CandidatePair]) -> None:
        self._protect = protect
        self._nominated = nominated
        self._pair: CandidatePair | None = None
        self._transport: _UdpSocket | None = None
        self._addr: tuple[str, int] = ("", 0)

    def send(self, packet: bytes) -> bool:
        pair = self._nominated.get(1)
        if pair is not self._pair:
            if pair is None:
                return False
            self._pair, self._transport, self._addr = pair, cast(_UdpSocket, pair.protocol.transport), pair.remote_addr
        transport = self._transport
        if transport is None:
            return False  # nothing nominated yet
        try:
            transport.sendto(self._protect(packet), self._addr)
        except pylibsrtp.Error:
            return False
        return True

    def congested(self) -> bool:
        transport = self._transport
        return transport is not None and transport.get_write_buffer_size() > MAX_SOCKET_BACKLOG


def open_wire(sender: RTCRtpSender) -> SrtpWire | None:
    """The direct path to the viewer behind ``sender``; None if DTLS is not up (yet)."""
    dtls = sender.transport
    protect = getattr(dtls, "_tx_srtp", None)
    if dtls.state != "connected" or protect is None:
        return None
    return SrtpWire(protect.protect, dtls.transport._connection._nominated)


# --- 7 and 8. a viewer's NACKs, and our sender reports -----------------------------------


def on_nack(sender: RTCRtpSender, callback: Callable[[Iterable[int]], object]) -> None:
    """Call ``callback`` with the sequence numbers a viewer NACKs (one at a time)."""

    async def retransmit(sequence_number: int) -> None:
        callback((sequence_number,))

    # _handle_rtcp_packet awaits self._retransmit(seq)
    sender._retransmit = retransmit  # type: ignore[method-assign]  # shadowed per instance


# (monotonic now) -> (RTP timestamp now, packet count, payload octet count), or None when
# nothing was sent yet (then no SR goes out at all).
SenderReport = Callable[[float], tuple[int, int, int] | None]


def report_with(sender: RTCRtpSender, report: SenderReport) -> None:
    """Fill the sender's periodic RTCP SR with ``report``'s values (RFC 3550 §6.4.1)."""
    send_rtcp = sender._send_rtcp

    async def send_with_our_report(packets: list[AnyRtcpPacket]) -> None:
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                values = report(time.monotonic())
                if values is None:
                    return
                rtp_timestamp, packet_count, octet_count = values
                packet.sender_info = RtcpSenderInfo(
                    ntp_timestamp=aiortc_clock.current_ntp_time(),
                    rtp_timestamp=rtp_timestamp,
                    packet_count=packet_count,
                    octet_count=octet_count,
                )
        await send_rtcp(packets)

    # _run_rtcp awaits self._send_rtcp(packets)
    sender._send_rtcp = send_with_our_report  # type: ignore[method-assign]  # shadowed per instance


# --- 9. the SSRCs a sender announced ----------------------------------------------------


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC), as aiortc wrote them into the answer's ``a=ssrc`` lines."""
    return sender._ssrc, sender._rtx_ssrc


# --- 14 and 15. a viewer's receiver reports, and when our SRs left ------------------------


def on_receiver_report(sender: RTCRtpSender, callback: Callable[[ReceiverReport], object]) -> None:
    """Call ``callback`` with each report block the viewer sends about ``sender``'s SSRC
    (in an RR, or an SR's report blocks), before aiortc's own handling of the packet."""
    handle = sender._handle_rtcp_packet
    ssrc = sender._ssrc

    async def handle_with_reports(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
            for block in packet.reports:
                if block.ssrc == ssrc:
                    callback(ReceiverReport(fraction_lost=block.fraction_lost, packets_lost=block.packets_lost,
                                            highest_sequence=block.highest_sequence, jitter=block.jitter,
                                            lsr=block.lsr, dlsr=block.dlsr))
        await handle(packet)

    # RTCDtlsTransport._handle_rtcp_data awaits recipient._handle_rtcp_packet(packet)
    sender._handle_rtcp_packet = handle_with_reports  # type: ignore[method-assign]  # shadowed per instance


def on_report_sent(sender: RTCRtpSender, callback: Callable[[int], object]) -> None:
    """Call ``callback(lsr)`` after each SR the sender sent, ``lsr`` being the middle 32 bits
    of its NTP timestamp (RFC 3550 §6.4.1), as the viewer will echo it. Install after
    :func:`report_with`, whose values it reads back."""
    send_rtcp = sender._send_rtcp

    async def send_and_note(packets: list[AnyRtcpPacket]) -> None:
        await send_rtcp(packets)
        for packet in packets:
            # report_with sets our NTP time; 0 is aiortc's untouched counter (no SR went out)
            if isinstance(packet, RtcpSrPacket) and packet.sender_info.ntp_timestamp:
                callback((packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF)

    sender._send_rtcp = send_and_note  # type: ignore[method-assign]  # shadowed per instance
