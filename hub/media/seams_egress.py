"""The viewer's wire: sending a station's RTP to a viewer without aiortc's sender path.

The RTP forwarding fast path (``viewer_egress``) keeps each viewer's ``RTCRtpSender`` for
negotiation, SSRCs and RTCP, but sends the media itself. That needs five reaches into
aiortc / aioice / pylibsrtp (and two more to read the viewer's receiver reports), each pinned
by ``tests/media/test_seams_egress.py`` against the locked versions:

6. ``open_wire`` / ``SrtpWire``: a viewer's outbound SRTP session (and a publisher's, for
   the RTCP the ingest sends: ``seams_ingest.ReceiverBookkeeping.send_rtcp``)
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
   we shadow that per sender to fill in our timestamp and counts. With a
   :class:`SenderReports` the loop is parked at its first report (the shadow awaits until
   the sender stops, when aiortc cancels the loop, which then sends its BYE through the
   shadow as before) and one timer for every viewer sends the reports: the SR written by
   ``hub.media.rtcp.sender_report`` with the SSRC of the one aiortc handed over the first
   time, followed by the SDES as aiortc wrote it then. A relay with N viewers no longer wakes
   N times a second for them, nor builds aiortc's packet objects for each report.
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
16. ``SrtpWire`` protects with libsrtp through pylibsrtp's cffi binding (``pylibsrtp._binding``
    ``lib.srtp_protect`` on ``Session._srtp[0]``, the ``srtp_t`` that ``Session.protect``
    passes), in place in a buffer of the wire's own: ``Session.protect`` allocates a length
    cell, checks types and copies out per call (≈ 0.6 µs of the ≈ 2 µs it costs).

Consumers: ``peers`` (7-9, when a viewer's answer is built), ``relay`` (6, when it connects;
14-15, for a viewer's video).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol, cast

import pylibsrtp
from aioice.ice import CandidatePair
from aiortc import RTCDtlsTransport, RTCRtpSender
from aiortc.rtp import AnyRtcpPacket, RtcpReceiverInfo, RtcpRrPacket, RtcpSenderInfo, RtcpSrPacket
from pylibsrtp import _binding as srtp_binding

from hub.beat import BeatTimer
from hub.media import rtcp
from hub.media.rtcp import ReceiverReport
from hub.media.seams_udp import SessionSocket
from hub.media.send_batch import BatchEntry, SendBatch
from hub.media.viewer_egress import CONGESTED, NOT_SENT, SENT  # what SrtpWire.send_parts answers

__all__ = ["CONGESTED", "MAX_SOCKET_BACKLOG", "NACK_HANDLER", "NOT_SENT", "REPORT_HANDLER", "SENT", "SenderReport",
           "SenderReports", "SrtpWire", "on_nack", "on_receiver_report", "on_report_sent", "open_wire", "report_of",
           "report_with", "sender_ssrcs"]


# --- 6. sending SRTP to a viewer directly -----------------------------------------------

# Bytes a viewer's UDP socket may hold in asyncio's buffer (the kernel's was full) before
# the viewer counts as slow. UDP on a healthy path never gets here.
MAX_SOCKET_BACKLOG = 256 * 1024


# libsrtp protects in place: the packet plus its trailer must fit. An RTP packet of a UDP
# path's MTU (≤ 1,500 bytes) always does; a larger one is not sent (pylibsrtp raised).
_BUFFER_BYTES = 2048
_MAX_PLAIN_BYTES = _BUFFER_BYTES - pylibsrtp.SRTP_MAX_TRAILER_LEN
_srtp_protect = srtp_binding.lib.srtp_protect
_ffi = srtp_binding.ffi


class _UdpSocket(Protocol):
    """What asyncio's datagram transport offers (typeshed's ``DatagramTransport`` leaves out
    ``get_write_buffer_size``, which the selector transport has)."""

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None: ...
    def get_write_buffer_size(self) -> int: ...


class SrtpWire:
    """A viewer's outbound path: its SRTP session and the nominated ICE pair's socket.

    ``send_parts`` protects and writes one RTP packet synchronously; it answers ``NOT_SENT``
    once the ICE connection is closing (aioice clears its nominated pairs first) or if
    libsrtp refuses the packet, and ``CONGESTED`` (nothing sent) while the socket's asyncio
    buffer holds more than ``MAX_SOCKET_BACKLOG``. The pair is re-read when aioice nominates
    another one. On the shared media port the datagram goes straight to the socket while
    asyncio holds nothing for it (``SessionSocket.raw_sendto``); otherwise through the
    pair's transport, which queues behind what it holds, or takes it when the kernel
    refuses it (a full buffer: asyncio's flow control stays honest). Where the port batches
    (``UdpMux.batch``), the protected packet stays in the wire's buffer, added to the batch
    the relay flushes after each fan-out (``hub.media.send_batch``).
    """

    __slots__ = ("_addr", "_backlog", "_batch", "_buffer", "_cdata", "_entry", "_length", "_nominated", "_owned",
                 "_pair", "_raw", "_send", "_session", "_srtp")

    def __init__(self, srtp: pylibsrtp.Session, nominated: dict[int, CandidatePair]) -> None:
        # The Session frees its srtp_t when it is collected (ffi.gc): hold it as long as the
        # pointer, or a wire outliving its DTLS transport would write through freed memory.
        self._session = srtp
        self._srtp: Any = srtp._srtp[0]  # the srtp_t Session.protect passes to libsrtp
        self._cdata = _ffi.new("unsigned char[]", _BUFFER_BYTES)
        self._buffer = _ffi.buffer(self._cdata)
        self._length = _ffi.new("int *")
        self._nominated = nominated
        self._pair: CandidatePair | None = None
        self._addr: tuple[str, int] = ("", 0)
        self._send: Callable[[bytes, tuple[str, int]], object] = _discard  # through asyncio's transport
        self._raw: Callable[[bytes, tuple[str, int]], object] = _discard  # the socket's own sendto
        self._owned: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset()  # peers raw may reach
        self._backlog: Callable[[], int] = _nothing_buffered
        # the shared port's batch (one sendmmsg per relayed packet) and this wire's place in it
        self._batch: SendBatch | None = None
        self._entry: BatchEntry | None = None

    def _use(self, pair: CandidatePair | None) -> bool:
        entry, batch = self._entry, self._batch
        if entry is not None and batch is not None and entry.generation == batch.generation:
            batch.flush()  # the new entry shares the buffer: what waits in it goes first
        if pair is None:
            return False
        transport = cast(_UdpSocket, pair.protocol.transport)
        self._pair, self._addr = pair, pair.remote_addr
        self._send, self._backlog = transport.sendto, transport.get_write_buffer_size
        if isinstance(transport, SessionSocket):
            # the session's addresses are emptied when it closes: then sendto drops the packet
            self._raw, self._owned, self._backlog = transport.raw_sendto, transport.addresses, transport.backlog
            self._batch = transport.mux.batch
        else:
            self._raw, self._owned, self._batch = _discard, frozenset(), None
        self._entry = None if self._batch is None else self._batch.entry(self._cdata, self._addr)
        return True

    def send_parts(self, header: bytes, rest: bytes) -> int:
        """Protect ``header + rest`` (without joining them) and send it: ``SENT``,
        ``NOT_SENT`` or ``CONGESTED``."""
        pair = self._nominated.get(1)
        if pair is not self._pair and not self._use(pair):
            return NOT_SENT
        backlog = self._backlog()
        if backlog > MAX_SOCKET_BACKLOG:
            return CONGESTED
        split = len(header)
        size = split + len(rest)
        if size > _MAX_PLAIN_BYTES:
            return NOT_SENT
        entry, batch = self._entry, self._batch
        if entry is not None and batch is not None and entry.generation == batch.generation:
            batch.flush()  # the buffer still holds a packet waiting in the batch
        buffer = self._buffer
        buffer[0:split] = header
        buffer[split:size] = rest
        length = self._length
        length[0] = size
        if _srtp_protect(self._srtp, self._cdata, length):
            return NOT_SENT  # libsrtp refused it (a sequence number protected twice, a dead session)
        addr = self._addr
        if not backlog and addr in self._owned:
            if entry is not None and batch is not None:
                batch.add(entry, length[0])  # sent with the fan-out's sendmmsg (the relay flushes)
                return SENT
            try:
                self._raw(buffer[0:length[0]], addr)
                return SENT
            except OSError:  # BlockingIOError included: asyncio's transport queues it and waits
                pass
        self._send(buffer[0:length[0]], addr)
        return SENT

    def send(self, packet: bytes) -> bool:
        """``send_parts`` for a packet in one piece, sent now; True if it went out."""
        sent = self.send_parts(packet[:12], packet[12:]) == SENT
        if self._batch is not None:
            self._batch.flush()
        return sent

    def send_rtcp(self, compound: bytes) -> bool:
        """Protect an RTCP compound packet (SRTCP) and send it, even to a backed-up socket
        (asyncio queues it): what aiortc's ``_send_rtcp`` does through four coroutines."""
        pair = self._nominated.get(1)
        if pair is not self._pair and not self._use(pair):
            return False
        try:
            data = self._session.protect_rtcp(compound)
        except (pylibsrtp.Error, ValueError):
            return False
        self._send(data, self._addr)
        return True

    def congested(self) -> bool:
        return self._backlog() > MAX_SOCKET_BACKLOG


def _nothing_buffered() -> int:
    return 0


def _discard(data: bytes, addr: tuple[str, int]) -> None:
    """What a wire sends with before it has a pair."""


def open_wire(dtls: RTCDtlsTransport) -> SrtpWire | None:
    """The direct path to the peer behind ``dtls`` (a viewer's, or a publisher's for our
    RTCP); None if DTLS is not up (yet)."""
    srtp = getattr(dtls, "_tx_srtp", None)
    if dtls.state != "connected" or srtp is None:
        return None
    return SrtpWire(srtp, dtls.transport._connection._nominated)


# --- 7 and 8. a viewer's NACKs, and our sender reports -----------------------------------


def on_nack(sender: RTCRtpSender, callback: Callable[[Iterable[int]], object]) -> None:
    """Call ``callback`` with the sequence numbers a viewer NACKs: those of one NACK packet
    together (seam 19's dispatch), or one at a time on aiortc's path."""

    async def retransmit(sequence_number: int) -> None:
        callback((sequence_number,))

    # _handle_rtcp_packet awaits self._retransmit(seq)
    sender._retransmit = retransmit  # type: ignore[method-assign]  # shadowed per instance
    setattr(sender, NACK_HANDLER, callback)


# Where a sender keeps what seam 19 (``seams_ingest.viewer_rtcp``) calls for a viewer's RTCP
# about it, past aiortc's router and handler: the NACKed sequence numbers, the report blocks.
NACK_HANDLER = "jaga_on_nack"
REPORT_HANDLER = "jaga_on_report"


# (monotonic now) -> (RTP timestamp now, packet count, payload octet count), or None when
# nothing was sent yet (then no SR goes out at all).
SenderReport = Callable[[float], tuple[int, int, int] | None]


def _fill(packet: RtcpSrPacket, report: SenderReport) -> bool:
    """Our NTP time, RTP timestamp and counts in ``packet``; False if nothing was sent yet."""
    values = report(time.monotonic())
    if values is None:
        return False
    rtp_timestamp, packet_count, octet_count = values
    packet.sender_info = RtcpSenderInfo(
        ntp_timestamp=rtcp.ntp_now(),
        rtp_timestamp=rtp_timestamp,
        packet_count=packet_count,
        octet_count=octet_count,
    )
    return True


class _Reporter:
    """One sender's reports, sent by :class:`SenderReports`' timer: the SR written by us
    (``rtcp.sender_report``), the packets aiortc put after it (its SDES) as it wrote them."""

    __slots__ = ("due", "on_sent", "report", "ssrc", "trailer", "wire")

    def __init__(self, report: SenderReport) -> None:
        self.report = report
        self.on_sent: Callable[[int], object] | None = None
        self.wire: SrtpWire | None = None
        self.ssrc = 0
        self.trailer = b""
        self.due = 0.0

    def take_over(self, wire: SrtpWire, packets: list[AnyRtcpPacket]) -> None:
        """From aiortc's first report: the SR's SSRC, and the bytes of what followed it."""
        sr = packets[0]
        assert isinstance(sr, RtcpSrPacket) and not sr.reports  # a sender's SR: no report blocks
        self.wire, self.ssrc = wire, sr.ssrc
        self.trailer = b"".join(bytes(packet) for packet in packets[1:])

    def send(self) -> bool:
        """Send a report now (if anything was sent yet); False if the wire is gone."""
        wire = self.wire
        assert wire is not None
        values = self.report(time.monotonic())
        if values is None:
            return True
        ntp = rtcp.ntp_now()
        if not wire.send_rtcp(rtcp.sender_report(self.ssrc, ntp, *values) + self.trailer):
            return False
        if self.on_sent is not None:
            self.on_sent(rtcp.middle_bits(ntp))
        return True


class SenderReports:
    """Every viewer's RTCP sender reports on one timer (see seam 8). Each sender keeps its own
    randomised interval of 0.5–1.5 s (RFC 3550 §6.2, as aiortc's loop draws it), checked
    every ``tick_s``, on the hub's beat (``hub.beat``: a tick of 0.25 s shares every fourth
    wake-up with the hub's other timers). ``close`` stops the timer (the relay's shutdown)."""

    def __init__(self, tick_s: float = 0.25) -> None:
        self._reporters: set[_Reporter] = set()  # senders whose aiortc loop is parked
        self._timer = BeatTimer(tick_s, self._tick, lambda: bool(self._reporters))

    def __len__(self) -> int:
        return len(self._reporters)

    def _start(self, reporter: _Reporter) -> None:
        reporter.due = time.monotonic() + 0.5 + random.random()
        self._reporters.add(reporter)
        self._timer.wake()

    def _forget(self, reporter: _Reporter) -> None:
        self._reporters.discard(reporter)

    def _tick(self) -> None:
        now = time.monotonic()
        for reporter in list(self._reporters):
            if reporter.due > now:
                continue
            reporter.due = now + 0.5 + random.random()
            try:
                reporter.send()
            except Exception:  # one viewer's report must not stop everyone's
                logger.exception("sender report failed")

    def close(self) -> None:
        self._timer.close()


logger = logging.getLogger(__name__)


def report_with(sender: RTCRtpSender, report: SenderReport, reports: SenderReports | None = None) -> None:
    """Fill the sender's periodic RTCP SR with ``report``'s values (RFC 3550 §6.4.1) and send
    it synchronously on the viewer's wire once DTLS is up (not through aiortc's four
    coroutines to the socket). With ``reports``, aiortc's loop sends only the first and is
    parked; ``reports``' timer sends the rest."""
    send_rtcp = sender._send_rtcp
    wire: SrtpWire | None = None
    reporter = _Reporter(report)  # on_report_sent finds it on the shadow

    async def send_with_our_report(packets: list[AnyRtcpPacket]) -> None:
        nonlocal wire
        sr = next((p for p in packets if isinstance(p, RtcpSrPacket)), None)
        if sr is not None and not _fill(sr, report):
            return  # no SR (nor its SDES) before our first packet of the era
        if wire is None:
            wire = open_wire(sender.transport)
        if wire is None:  # DTLS not up: aiortc's own path (which drops it, or raises)
            await send_rtcp(packets)
        elif not wire.send_rtcp(b"".join(bytes(packet) for packet in packets)):
            return
        if sr is None:
            return
        if reporter.on_sent is not None:
            reporter.on_sent(rtcp.middle_bits(sr.sender_info.ntp_timestamp))
        if reports is None or wire is None:
            return
        # the first report went out: from now on the timer sends them, and this loop waits
        reporter.take_over(wire, packets)
        reports._start(reporter)
        try:
            await asyncio.get_running_loop().create_future()  # until aiortc cancels the loop
        finally:
            reports._forget(reporter)

    setattr(send_with_our_report, _REPORTER, reporter)
    # _run_rtcp awaits self._send_rtcp(packets)
    sender._send_rtcp = send_with_our_report  # type: ignore[method-assign]  # shadowed per instance


_REPORTER = "jaga_reporter"  # where on_report_sent finds report_with's reporter


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
                    callback(report_of(block))
        await handle(packet)

    # RTCDtlsTransport._handle_rtcp_data awaits recipient._handle_rtcp_packet(packet)
    sender._handle_rtcp_packet = handle_with_reports  # type: ignore[method-assign]  # shadowed per instance
    setattr(sender, REPORT_HANDLER, callback)  # seam 19's dispatch calls it with each block about ``ssrc``


def report_of(block: RtcpReceiverInfo) -> ReceiverReport:
    """aiortc's report block as the handlers take it."""
    return ReceiverReport(block.fraction_lost, block.packets_lost, block.highest_sequence, block.jitter, block.lsr,
                          block.dlsr)


def on_report_sent(sender: RTCRtpSender, callback: Callable[[int], object]) -> None:
    """Call ``callback(lsr)`` after each SR the sender sent, ``lsr`` being the middle 32 bits
    of its NTP timestamp (RFC 3550 §6.4.1), as the viewer will echo it. Install after
    :func:`report_with`, which sends them."""
    reporter = getattr(sender._send_rtcp, _REPORTER, None)
    if not isinstance(reporter, _Reporter):
        raise RuntimeError("on_report_sent needs report_with first")
    reporter.on_sent = callback
