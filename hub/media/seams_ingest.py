"""A publisher's packets from the socket: the aiortc / aioice internals the ingest fast path uses.

aiortc receives a packet through aioice's queue, a DTLS receive task, its RTP parser and
the receiver's jitter buffer, which reassembles frames for a decoder the relay never runs.
``ingest`` takes the packets off the socket instead and keeps only the receiver duties a
relay still needs. Its seams, pinned by ``tests/media/test_seams_ingest.py`` against the
locked aiortc / aioice:

10. ``divert_srtp``: a publisher's SRTP packets, unprotected with the DTLS transport's own
    session (``RTCDtlsTransport._rx_srtp``) and handed over synchronously from the socket's
    ``datagram_received``. We shadow ``aioice.Connection.data_received`` (looked up on the
    instance by ``StunProtocol.datagram_received``) and, for each gathered socket
    (``Connection._protocols``), ``StunProtocol.datagram_received`` itself: bytes 128-191
    are RTP/RTCP (RFC 7983), never STUN, so they skip aioice's STUN parse. DTLS, STUN (but
    the consent checks ``seams_ice`` seam 21 answers) and SRTCP still take aiortc's path;
    empty datagrams (which aiortc's DTLS reader would fail on) are dropped.
11. ``ReceiverBookkeeping``: the parts of ``RTCRtpReceiver._handle_rtp_packet`` a relay
    still wants for each packet, done on the receiver's own private state so aiortc's RTCP
    task keeps sending correct receiver reports: RTCP statistics (``__remote_streams``;
    ``StreamStatistics.add`` written out on its fields), the NACK generator
    (``__nack_generator``; ``NackGenerator.add`` and ``truncate`` written out on its
    ``max_seq`` and ``missing``; sent with ``_send_rtcp_nack``), the REMB estimate the
    publisher's encoder adapts to (``__remote_bitrate_estimator``, sent from
    ``__rtcp_ssrc`` with ``_send_rtcp``; its per-packet ``add`` done by
    ``hub.media.bitrate.RembEstimate``, which keeps its own packet groups, rate window and
    Kalman filter (``bitrate.OveruseFilter``, in place of the estimator's ``estimator``) and
    hands each group's delta to the estimator's own ``detector`` and ``rate_control``), the active-source list PLIs go
    to (``__active_ssrc``), and whether aiortc would route to the receiver at all (``_enabled``,
    ``RTCDtlsTransport._rtp_router.receivers``).
17. SRTCP at once (``divert_srtp``, for publishers and viewers alike): an SRTCP datagram is
    unprotected as ``_rx_srtp.unprotect_rtcp`` would (libsrtp's ``srtp_unprotect_rtcp`` in
    place, seam 16) and given to aiortc's own
    ``RTCDtlsTransport._handle_rtcp_data`` (parse, route, each recipient's
    ``_handle_rtcp_packet``) right in the socket callback, as ``_recv_next`` would after
    aioice's queue and the DTLS task: a viewer's receiver reports, NACKs and PLIs cost a
    loop turn and two task wake-ups less each. Its handlers do not suspend (ours are
    shadowed synchronous ones, aiortc's await nothing else for RTCP), so the coroutine is
    run to its end on the spot (``run_now``); were one to suspend, a task finishes it.
18. ``report_on_beat``: a receiver's RTCP loop (``RTCRtpReceiver._run_rtcp``, started as a
    task by ``receive()``, which looks it up on the instance) sleeps a random 0.5-1.5 s
    between receiver reports: each publisher's receivers woke the hub on a phase of their
    own. We shadow it per receiver with a loop that only signals ``__rtcp_started`` /
    ``__rtcp_exited`` as aiortc's does (``stop()`` waits on both) and waits to be cancelled;
    one :class:`ReceiverReports` timer on the hub's beat sends every receiver's report,
    built as aiortc's loop builds it (``__remote_streams``, ``__lsr``, ``__lsr_time``,
    ``__rtcp_ssrc``; sent with ``_send_rtcp``).
19. ``viewer_rtcp``: a viewer's RTCP, read by ``hub.media.rtcp`` (or, for any compound that is
    not only receiver feedback, parsed by aiortc's ``RtcpPacket.parse``) and dispatched
    here instead of ``_handle_rtcp_data``: by SSRC through ``RtpRouter.senders`` to the
    handlers ``seams_egress.on_nack`` / ``on_receiver_report`` leave on the sender and to
    ``_send_keyframe``, past aiortc's router and sender handler; the rest through them.

Consumers: ``ingest`` (10, 11, 17, 18), ``peers`` (17 and 19, for viewers).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport, RTCRtpReceiver
from aiortc import clock as aiortc_clock
from aiortc.rate import BandwidthUsage, RemoteBitrateEstimator
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    RTP_HISTORY_SIZE,
    AnyRtcpPacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSrPacket,
)
from pylibsrtp import _binding as srtp_binding

from hub.beat import SECOND_BEAT_S, BeatTimer
from hub.media import rtcp
from hub.media.bitrate import RembEstimate, RembThrottle
from hub.media.seams_egress import NACK_HANDLER, REPORT_HANDLER, SrtpWire, open_wire, report_of
from hub.media.seams_ice import consent_answerer
from hub.media.seams_udp import SessionSocket

logger = logging.getLogger(__name__)

__all__ = ["ReceiverBookkeeping", "ReceiverReports", "divert_srtp", "report_on_beat", "viewer_rtcp"]


# --- 10. a publisher's SRTP, straight from the socket -----------------------------------

RTP_COMPONENT = 1  # ICE component of RTP, and with rtcp-mux of RTCP too (RFC 5245 §4.1.1.1)
EARLY_PACKETS = 64  # SRTP datagrams kept while DTLS has not made the keys yet
_BUFFER_BYTES = 2048  # larger than any datagram a UDP path's MTU lets through
_srtp_unprotect = srtp_binding.lib.srtp_unprotect  # seam 16, as seams_egress protects
_srtp_unprotect_rtcp = srtp_binding.lib.srtp_unprotect_rtcp
_ffi = srtp_binding.ffi


def divert_srtp(dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None] | None,
                on_rtcp: Callable[[bytes], None] | None = None) -> None:
    """Hand every SRTP packet arriving on ``dtls`` to ``on_rtp``, unprotected, synchronously
    inside the socket's ``datagram_received`` (``on_rtp`` None: RTP takes aiortc's path, for
    a viewer, which sends none), and handle every SRTCP packet there too: ``on_rtcp`` (a
    viewer's: :func:`viewer_rtcp`, seam 19), or aiortc's own ``_handle_rtcp_data`` (seam 17);
    DTLS and STUN go on to aiortc as before. Packets that fail authentication are dropped, as
    aiortc drops them.

    Call after ``setLocalDescription`` (the ICE sockets exist once candidates are gathered)
    and before media flows. SRTP that arrives before DTLS has made the keys (a publisher
    starts sending as soon as its own handshake is done) is kept, up to ``EARLY_PACKETS``,
    and handled before the first packet after the keys: left in aioice's queue, it reached
    aiortc's receive path once the DTLS task had set the keys up.
    """
    connection = dtls.transport._connection
    queue_datagram = connection.data_received
    early: list[tuple[bytes, int]] = []
    # SRTP and SRTCP are unprotected in place in a buffer of our own, through pylibsrtp's cffi
    # binding on the session's srtp_t (seam 16, as ``seams_egress.SrtpWire`` protects): ≈ 0.6 µs
    # less per packet than ``Session.unprotect``'s length cell, type checks and copy.
    cdata = _ffi.new("unsigned char[]", _BUFFER_BYTES)
    buffer = _ffi.buffer(cdata)
    length = _ffi.new("int *")
    keys: list[Any] = [None, None]  # the Session (held: it frees its srtp_t), its srtp_t

    def data_received(data: bytes, component: int = RTP_COMPONENT) -> None:
        if not 127 < data[0] < 192:
            queue_datagram(data, component)
            return
        srtp = dtls._rx_srtp
        if srtp is None:
            if len(early) < EARLY_PACKETS:
                early.append((data, component))
            return
        if early:  # the keys are there now: what came before them first
            waiting = early[:]
            early.clear()
            for datagram, their_component in waiting:
                data_received(datagram, their_component)
        rtcp = len(data) > 1 and 191 < data[1] < 209  # aiortc's is_rtcp (RFC 5761 §4), without the call
        if on_rtp is None and not rtcp:
            queue_datagram(data, component)
            return
        if keys[0] is not srtp:
            keys[0], keys[1] = srtp, srtp._srtp[0]
        size = len(data)
        if size > _BUFFER_BYTES:
            return
        buffer[0:size] = data
        length[0] = size
        if rtcp:
            if _srtp_unprotect_rtcp(keys[1], cdata, length):
                return  # failed authentication or replay: dropped, as aiortc drops it
            try:
                if on_rtcp is None:
                    run_now(dtls._handle_rtcp_data(buffer[0:length[0]]))
                else:
                    on_rtcp(buffer[0:length[0]])
            except Exception:  # as aiortc's DTLS task would, keep the socket going
                logger.exception("RTCP handling failed")
            return
        if _srtp_unprotect(keys[1], cdata, length) or on_rtp is None:
            return  # failed authentication or replay: dropped, as aiortc drops it
        try:
            on_rtp(buffer[0:length[0]])
        except Exception:  # a forwarding bug must not take the publisher's socket down
            logger.exception("RTP ingest failed")

    # StunProtocol.datagram_received calls self.receiver.data_received(...)
    connection.data_received = data_received  # type: ignore[method-assign]  # shadowed per instance
    for protocol in connection._protocols:
        _skip_stun_parsing_for_rtp(protocol, data_received, consent_answerer(connection, protocol))


def _skip_stun_parsing_for_rtp(protocol: StunProtocol, receive: Callable[..., None],
                               answered: Callable[[bytes, tuple[str, int]], bool]) -> None:
    """aioice tries to parse every datagram as STUN first (an exception per RTP packet);
    bytes 128-191 start RTP/RTCP (RFC 7983), never STUN. A consent check on the pair in use
    is answered by ``answered`` (seam 21) when it can. An empty datagram, which aiortc's
    DTLS reader would fail on, is dropped here."""
    stun_or_other = protocol.datagram_received
    component = protocol.local_candidate.component

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if not data:
            return
        if 127 < data[0] < 192:
            receive(data, component)
        elif not (data[0] == 0 and answered(data, (addr[0], addr[1]))):
            stun_or_other(data, addr)

    # asyncio calls the protocol's own; typed bytes | str upstream, but a UDP socket gives bytes
    protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]  # shadowed per instance; UDP gives bytes
    if isinstance(protocol.transport, SessionSocket):  # the shared port's mux hands RTP/RTCP straight here
        # ``receive`` (divert_srtp's) takes one argument: with rtcp-mux, as aiortc negotiates,
        # every datagram is on component 1, its default (no keyword bound per call)
        protocol.transport.media = (receive if component == RTP_COMPONENT
                                    else functools.partial(receive, component=component))


def run_now(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run ``coroutine`` to its end now if it never suspends (no task, no loop turn); if it
    does suspend, a task takes it from there, exactly as if it had been one all along."""
    try:
        waiting = coroutine.send(None)
    except StopIteration:
        return
    _keep(asyncio.ensure_future(_resume(coroutine, waiting)))


_running: set[asyncio.Future[Any]] = set()  # tasks finishing a suspended run_now coroutine


def _keep(task: asyncio.Future[Any]) -> None:
    _running.add(task)
    task.add_done_callback(_running.discard)


@types.coroutine
def _resume(coroutine: Coroutine[Any, Any, None], waiting: Any) -> Generator[Any, Any, None]:
    """Hand what ``coroutine`` waits on to the task running this, and what the task sends or
    throws back to ``coroutine``: ``yield from`` for a coroutine already started."""
    while True:
        try:
            sent = yield waiting
        except BaseException as exc:  # noqa: BLE001  # the task's cancellation, passed on as is
            try:
                waiting = coroutine.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = coroutine.send(sent)
            except StopIteration:
                return


# --- 19. a viewer's RTCP, dispatched here ------------------------------------------------


def viewer_rtcp(dtls: RTCDtlsTransport) -> Callable[[bytes], None]:
    """What a viewer's unprotected RTCP compounds go to (``divert_srtp``'s ``on_rtcp``).

    A compound of receiver feedback only (RR, SDES, NACK, PLI, FIR, REMB: what a viewer sends
    every second) is read by ``hub.media.rtcp.read_feedback``, without aiortc's objects; any
    other is parsed by aiortc (``RtcpPacket.parse``). Either way the hub's own handlers are
    called directly:
    each report block about one of our senders to the handler ``on_receiver_report`` left on
    it, a NACK's sequence numbers to ``on_nack``'s (one call per NACK packet), a PLI or FIR to
    the sender's ``_send_keyframe`` (``seams_keyframes.on_keyframe_request``). aiortc's router
    (``route_rtcp``: a set and a closure with its annotations built per packet) and its
    sender's handler (for a report block: a stats object and an RTT no one reads here; 7 % of
    the hub's Python time with 32 viewers: docs/benchmarks.md section 3) are skipped, and so
    is a block about a sender without our handler. SDES and REMB reach no handler (aiortc
    routes no SDES; a REMB only retunes an encoder, and a relay's senders have none). An SR
    also goes to the receiver its SSRC names (aiortc's choice), which is handed it alone: its
    blocks reached our senders' handlers already. Anything else (a BYE, a NACK for a sender
    without our handler) takes aiortc's own ``route_rtcp`` and ``_handle_rtcp_packet``.
    Malformed: the whole compound is dropped, as aiortc drops it.
    """
    router = dtls._rtp_router
    senders = router.senders  # SSRC → sender: RtpRouter.register_sender fills it as senders start

    def through_aiortc(packet: AnyRtcpPacket) -> None:
        for recipient in router.route_rtcp(packet):
            run_now(recipient._handle_rtcp_packet(packet))

    def handle(data: bytes) -> None:
        feedback = rtcp.read_feedback(data)
        if feedback is None:
            handle_with_aiortc(data)
            return
        for ssrc, block in feedback.reports:
            report = getattr(senders.get(ssrc), REPORT_HANDLER, None)
            if report is not None:
                report(block)
        for viewer_ssrc, media_ssrc, lost in feedback.nacks:
            nacked = getattr(senders.get(media_ssrc), NACK_HANDLER, None)
            if nacked is not None:
                nacked(lost)
            else:
                through_aiortc(RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=viewer_ssrc, media_ssrc=media_ssrc, lost=lost))
        for media_ssrc in feedback.keyframe_requests:
            sender = senders.get(media_ssrc)
            if sender is not None:
                sender._send_keyframe()  # type: ignore[attr-defined]  # RTCRtpSender's, typed RtpSender

    def handle_with_aiortc(data: bytes) -> None:
        try:
            packets = RtcpPacket.parse(data)
        except ValueError:
            return
        for packet in packets:
            if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
                for block in packet.reports:
                    report = getattr(senders.get(block.ssrc), REPORT_HANDLER, None)
                    if report is not None:
                        report(report_of(block))
                if isinstance(packet, RtcpSrPacket):
                    receiver = router.ssrc_table.get(packet.ssrc)  # an SR about what the viewer sends us
                    if receiver is not None:  # only the receiver: route_rtcp would hand the blocks to senders again
                        run_now(receiver._handle_rtcp_packet(packet))
            elif isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
                nacked = getattr(senders.get(packet.media_ssrc), NACK_HANDLER, None)
                if nacked is not None:
                    nacked(packet.lost)
                else:
                    through_aiortc(packet)
            elif isinstance(packet, RtcpPsfbPacket) and packet.fmt in _KEYFRAME_REQUESTS:
                sender = senders.get(packet.media_ssrc)
                if sender is not None:
                    sender._send_keyframe()  # type: ignore[attr-defined]  # RTCRtpSender's, typed RtpSender
            elif not isinstance(packet, RtcpSdesPacket) and not (
                    isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP):
                through_aiortc(packet)

    return handle


_KEYFRAME_REQUESTS = (RTCP_PSFB_PLI, RTCP_PSFB_FIR)


# --- 11. what a receiver does with a packet besides decoding it --------------------------

NTP_UNIX_OFFSET_S = 2208988800  # aiortc's clock counts from the NTP epoch (1900)
ACTIVE_SOURCE_REFRESH_S = 1.0
RENACK_S = 0.3  # packets still missing this long after their NACK are NACKed again (≈ a weak link's RTT)
# A packet is asked for at most this many times. Unbounded, an overloaded hub whose own socket
# dropped packets asked for each one every RENACK_S while aiortc tracked it (≈ 2 s): in the
# Jember-day benchmark publishers re-sent 2.6× their packets into the socket that was already
# overflowing, and media collapsed.
MAX_NACKS = 3
HALF_SEQUENCE_SPACE = 0x8000  # a 16-bit sequence number is newer if at most this far ahead (RFC 3550 A.1)


class OwnLoss:
    """Whether the hub's own media socket dropped datagrams in the last second: its receive
    buffer overflowed, a loss the hub causes itself.

    NACKing such a loss asks every publisher to resend into the buffer that is already full:
    in the Jember-day benchmark, on a saturated machine, the publishers resent 0.9-1.0 packet
    per drop (up to 1.6 times their own stream) to a hub that could not read the ones it had,
    and a quarter of their sessions ended within a window (docs/benchmarks.md, "A Jember day",
    fifth step). While ``active``, gaps are given up instead (``withheld`` counts their
    packets): the picture mends at the next keyframe, which a viewer's decoder asks for anyway.
    Updated once a second from the kernel's drop counter (``update``); read per packet (one
    attribute).
    """

    __slots__ = ("active", "withheld", "_drops")

    def __init__(self) -> None:
        self.active = False
        self.withheld = 0
        self._drops: int | None = None

    def update(self, drops: int | None) -> None:
        """The kernel's count of datagrams dropped at the socket(s) so far (None: unknown)."""
        self.active = drops is not None and self._drops is not None and drops > self._drops
        self._drops = drops


def _receiver_private(receiver: RTCRtpReceiver, name: str) -> Any:
    """``receiver.__<name>``: Python stores double-underscore attributes under the class's
    mangled name (``_RTCRtpReceiver__<name>``), which type checkers do not model."""
    return vars(receiver)[f"_RTCRtpReceiver__{name}"]


class ReceiverBookkeeping:
    """One receiver's per-packet duties, done on its own counters so aiortc's RTCP task
    keeps sending correct receiver reports and the publisher's encoder keeps getting REMB.

    ``count`` is for every packet routed to the receiver (RTX included, under its own
    SSRC, as aiortc counts them); ``note_media`` for media packets (RTX unwrapped: the
    original SSRC and sequence number), which feeds the NACK generator.
    """

    __slots__ = ("_active", "_clock_rate", "_estimate", "_nacks", "_own_loss", "_receiver", "_refresh_at",
                 "_nack_counts", "_remb_throttle", "_renack_at", "_routed", "_streams", "_wire")

    def __init__(self, receiver: RTCRtpReceiver, clock_rate: int, own_loss: OwnLoss | None = None) -> None:
        self._receiver = receiver
        self._own_loss = own_loss or OwnLoss()
        self._routed = receiver.transport._rtp_router.receivers
        self._streams: dict[int, StreamStatistics] = _receiver_private(receiver, "remote_streams")
        self._active: dict[int, datetime.datetime] = _receiver_private(receiver, "active_ssrc")
        self._nacks: NackGenerator | None = _receiver_private(receiver, "nack_generator")
        estimator: RemoteBitrateEstimator | None = _receiver_private(receiver, "remote_bitrate_estimator")
        self._estimate = _speed_up(estimator) if estimator is not None else None
        self._clock_rate = clock_rate
        self._refresh_at: dict[int, float] = {}
        self._remb_throttle = RembThrottle()
        self._renack_at = 0.0
        self._nack_counts: dict[int, int] = {}  # missing sequence number → times asked for
        self._wire: SrtpWire | None = None  # opened with the first RTCP we send

    def accepting(self) -> bool:
        """aiortc would route to this receiver: started, not stopped, enabled."""
        receiver = self._receiver
        return receiver._enabled and receiver in self._routed

    def count(self, ssrc: int, seq: int, ts: int, size: int, abs_send_time: int | None) -> None:
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = StreamStatistics(self._clock_rate)
        _add_to_statistics(stream, seq, ts)
        now = time.monotonic()
        if now >= self._refresh_at.get(ssrc, 0.0):  # getSynchronizationSources() wants ≤ 10 s
            self._refresh_at[ssrc] = now + ACTIVE_SOURCE_REFRESH_S
            self._active[ssrc] = aiortc_clock.current_datetime()
        if abs_send_time is not None and self._estimate is not None:
            arrival_ms = int((time.time() + NTP_UNIX_OFFSET_S) * 1000)
            remb = self._estimate.add(arrival_ms, abs_send_time, size, ssrc)
            if remb is not None:
                self._send_remb(remb)

    def note_media(self, ssrc: int, seq: int) -> None:
        nacks = self._nacks
        if nacks is None:
            return
        # aiortc NACKs again only when a new gap appears: a lost NACK or a lost retransmission
        # would then wait for the next loss, and the viewers' picture with it
        opened = _note_received(nacks, seq)
        if self._own_loss.active and nacks.missing:
            self._own_loss.withheld += len(nacks.missing)
            nacks.missing.clear()  # our own socket dropped them: given up, not asked for
            return
        if opened or (nacks.missing and time.monotonic() >= self._renack_at):
            self._renack_at = time.monotonic() + RENACK_S
            wanted = self._to_ask(nacks.missing)
            if wanted:
                self._send_nack(ssrc, wanted)

    def _to_ask(self, missing: set[int]) -> list[int]:
        """The missing packets not yet asked for ``MAX_NACKS`` times (and count this time)."""
        counts = self._nack_counts
        for seq in [seq for seq in counts if seq not in missing]:
            del counts[seq]  # arrived, or older than aiortc tracks
        wanted = []
        for seq in sorted(missing):
            asked = counts.get(seq, 0)
            if asked < MAX_NACKS:
                counts[seq] = asked + 1
                wanted.append(seq)
        return wanted

    def _send_remb(self, remb: tuple[int, list[int]]) -> None:
        # aiortc's estimator answers on *every* packet while it sees overuse; sending each one
        # made an overloaded hub busier still (the ingest benchmark's loss point collapsed).
        if not self._remb_throttle.should_send(time.monotonic(), remb[0]):
            return
        rtcp_ssrc: int | None = _receiver_private(self._receiver, "rtcp_ssrc")
        if rtcp_ssrc is not None:  # what aiortc sends: RtcpPsfbPacket(fmt=15, fci=pack_remb_fci(*remb))
            self.send_rtcp(rtcp.remb(rtcp_ssrc, *remb))

    def _send_nack(self, media_ssrc: int, lost: list[int]) -> None:
        """What ``_send_rtcp_nack`` builds (RFC 4585 §6.2.1), sent by ``send_rtcp``."""
        rtcp_ssrc: int | None = _receiver_private(self._receiver, "rtcp_ssrc")
        if rtcp_ssrc is not None:
            packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=rtcp_ssrc, media_ssrc=media_ssrc)
            packet.lost = lost
            self.send_rtcp(packet)

    def send_rtcp(self, packet: AnyRtcpPacket | bytes) -> None:
        """Send ``packet`` (an aiortc packet, or one already written) to the publisher now:
        protected and written on its ICE pair by a wire of our own (``seams_egress.SrtpWire``,
        as a viewer's packets are), not through aiortc's four coroutines (6 % of the hub's
        py-spy samples with one publisher, for its ~3 RTCP packets a second:
        docs/benchmarks.md section 4); through them while the wire cannot send (aiortc's
        ``_send_rtcp`` only takes ``bytes(packet)``)."""
        wire = self._wire
        if wire is None:
            wire = self._wire = open_wire(self._receiver.transport)
        if wire is None or not wire.send_rtcp(bytes(packet)):
            send_through_aiortc(self._receiver, packet)


def send_through_aiortc(receiver: RTCRtpReceiver, packet: AnyRtcpPacket | bytes) -> None:
    """aiortc's RTCP send (serialise, protect, four coroutines down to ``sendto``) never
    suspends: run it now (seam 17's ``run_now``) rather than as a task a loop turn later."""
    run_now(receiver._send_rtcp(packet))  # type: ignore[arg-type]  # bytes(packet) is all it takes


def _add_to_statistics(stream: StreamStatistics, seq: int, ts: int) -> None:
    """``StreamStatistics.add``, written out on its fields: the same steps, per packet, without
    its helper calls and a packet object to carry two numbers; tests/media/test_seams_ingest.py
    compares every field with aiortc's own add."""
    stream.packets_received += 1
    highest = stream.max_seq
    if highest is None:
        stream.base_seq = seq
        in_order = True
    else:
        in_order = 0 < (seq - highest) & 0xFFFF < HALF_SEQUENCE_SPACE  # aiortc's uint16_gt
    if in_order:
        arrival = int(time.time() * stream._clockrate)
        if highest is not None and seq < highest:
            stream.cycles += 1 << 16
        stream.max_seq = seq
        last_ts = stream._last_timestamp
        if ts != last_ts and stream.packets_received > 1:
            diff = abs((arrival - stream._last_arrival) - (ts - last_ts))  # type: ignore[operator]  # both set with last_ts
            stream._jitter_q4 += diff - ((stream._jitter_q4 + 8) >> 4)
        stream._last_arrival = arrival
        stream._last_timestamp = ts


def _note_received(nacks: NackGenerator, seq: int) -> bool:
    """``NackGenerator.add``, written out on its fields (compared with it by the tests): True
    if ``seq`` opened a gap. Of a gap, only the packets aiortc keeps tracking (the
    ``RTP_HISTORY_SIZE`` before ``seq``) are added, not every one to be dropped at once: a
    hostile jump of 32,767 costs as little as a gap of one."""
    highest = nacks.max_seq
    if highest is None:
        nacks.max_seq = seq
        return False
    missing = nacks.missing
    gap = (seq - highest) & 0xFFFF
    opened = 1 < gap < HALF_SEQUENCE_SPACE
    if 0 < gap < HALF_SEQUENCE_SPACE:
        if opened:
            missing.update((seq - back) & 0xFFFF for back in range(1, min(gap, RTP_HISTORY_SIZE + 1)))
        nacks.max_seq = highest = seq
    else:
        missing.discard(seq)
    if missing:  # NackGenerator.truncate: forget what is older than the history
        oldest = (highest - RTP_HISTORY_SIZE) & 0xFFFF
        stale = [old for old in missing if 0 < (oldest - old) & 0xFFFF < HALF_SEQUENCE_SPACE]
        missing.difference_update(stale)
    return opened


def _speed_up(estimator: RemoteBitrateEstimator) -> RembEstimate:
    """What ``count`` calls instead of a fresh ``RemoteBitrateEstimator``'s ``add`` (same results,
    a fraction of the cost): its own inter-arrival groups, rate window and Kalman filter,
    then the estimator's detector and rate control."""
    return RembEstimate(estimator, BandwidthUsage.OVERUSING)


# --- 18. receiver reports on the hub's beat ----------------------------------------------

RtcpSend = Callable[[AnyRtcpPacket], None]
RECEIVER_REPORT_S = SECOND_BEAT_S  # aiortc draws 0.5-1.5 s per report: the same rate, on the beat
DLSR_LIMIT_S = 65536  # DLSR is 16.16 fixed point (RFC 3550 §6.4.1)


class ReceiverReports:
    """Every publisher receiver's RTCP receiver reports, sent together on the hub's beat
    (seam 18): one wake-up a second for all of them, shared with the hub's other timers.
    ``close`` stops the timer (the relay's shutdown)."""

    def __init__(self, period_s: float = RECEIVER_REPORT_S) -> None:
        self._receivers: dict[RTCRtpReceiver, RtcpSend] = {}  # in join order, with how to send its RR
        self._timer = BeatTimer(period_s, self._tick, lambda: bool(self._receivers))

    def __len__(self) -> int:
        return len(self._receivers)

    def _start(self, receiver: RTCRtpReceiver, send: RtcpSend) -> None:
        self._receivers[receiver] = send
        self._timer.wake()

    def _forget(self, receiver: RTCRtpReceiver) -> None:
        self._receivers.pop(receiver, None)

    def _tick(self) -> None:
        for receiver, send in list(self._receivers.items()):
            try:
                packet = receiver_report(receiver)
                if packet is not None:
                    send(packet)
            except Exception:  # one publisher's report must not stop everyone's
                logger.exception("receiver report failed")

    def close(self) -> None:
        self._timer.close()


def report_on_beat(receiver: RTCRtpReceiver, reports: ReceiverReports, send: RtcpSend | None = None) -> None:
    """Send ``receiver``'s receiver reports on ``reports``' timer instead of its own loop,
    with ``send`` (a ``ReceiverBookkeeping.send_rtcp``; None: aiortc's ``_send_rtcp``).

    Call after ``setRemoteDescription`` created the receiver and before the connection
    starts it (``receive()`` runs once ICE and DTLS are up)."""
    state = vars(receiver)
    if state.get("_RTCRtpReceiver__rtcp_task") is not None:
        raise RuntimeError("receiver already started: too late to take its reports")
    started: asyncio.Event = state["_RTCRtpReceiver__rtcp_started"]
    exited: asyncio.Event = state["_RTCRtpReceiver__rtcp_exited"]

    async def parked_rtcp_loop() -> None:
        started.set()
        reports._start(receiver, send or functools.partial(send_through_aiortc, receiver))
        try:
            await asyncio.get_running_loop().create_future()  # until stop() cancels the task
        except asyncio.CancelledError:
            pass  # as aiortc's loop ends
        finally:
            reports._forget(receiver)
            exited.set()

    # receive() does asyncio.ensure_future(self._run_rtcp())
    receiver._run_rtcp = parked_rtcp_loop  # type: ignore[method-assign]  # shadowed per instance


def receiver_report(receiver: RTCRtpReceiver) -> RtcpRrPacket | None:
    """The RR aiortc's loop would send now (None when it would send none): a report block
    per source heard, with the delay since that source's last SR. Reading a source's
    ``fraction_lost`` starts its next interval, as aiortc's loop does. One difference: the
    highest sequence number is the *extended* one (cycles in the top 16 bits, RFC 3550
    §6.4.1); aiortc sends the low 16 bits only, so after each wrap (every ~20 minutes of a
    station's video) the publisher saw it go backwards."""
    rtcp_ssrc: int | None = _receiver_private(receiver, "rtcp_ssrc")
    streams: dict[int, StreamStatistics] = _receiver_private(receiver, "remote_streams")
    last_sr: dict[int, int] = _receiver_private(receiver, "lsr")
    last_sr_at: dict[int, float] = _receiver_private(receiver, "lsr_time")
    reports = []
    for ssrc, stream in streams.items():
        lsr = dlsr = 0
        if ssrc in last_sr:
            lsr = last_sr[ssrc]
            delay = time.time() - last_sr_at[ssrc]
            if 0 < delay < DLSR_LIMIT_S:
                dlsr = int(delay * 65536)
        reports.append(RtcpReceiverInfo(ssrc=ssrc, fraction_lost=stream.fraction_lost,
                                        packets_lost=stream.packets_lost,
                                        highest_sequence=stream.cycles + (stream.max_seq or 0),
                                        jitter=stream.jitter, lsr=lsr, dlsr=dlsr))
    if rtcp_ssrc is None or not reports:
        return None
    return RtcpRrPacket(ssrc=rtcp_ssrc, reports=reports)

