"""A publisher's packets from the socket: the aiortc / aioice internals the ingest fast path uses.

aiortc receives a packet through aioice's queue, a DTLS receive task, its RTP parser and
the receiver's jitter buffer, which reassembles frames for a decoder the relay never runs.
``ingest`` takes the packets off the socket instead and keeps only the receiver duties a
relay still needs. Three seams, pinned by ``tests/media/test_seams_ingest.py`` against the
locked aiortc / aioice:

10. ``divert_srtp``: a publisher's SRTP packets, unprotected with the DTLS transport's own
    session (``RTCDtlsTransport._rx_srtp``) and handed over synchronously from the socket's
    ``datagram_received``. We shadow ``aioice.Connection.data_received`` (looked up on the
    instance by ``StunProtocol.datagram_received``) and, for each gathered socket
    (``Connection._protocols``), ``StunProtocol.datagram_received`` itself: bytes 128-191
    are RTP/RTCP (RFC 7983), never STUN, so they skip aioice's STUN parse. DTLS, STUN and
    SRTCP still take aiortc's path; empty datagrams (which aiortc's DTLS reader would fail
    on) are dropped.
11. ``ReceiverBookkeeping``: the parts of ``RTCRtpReceiver._handle_rtp_packet`` a relay
    still wants for each packet, done on the receiver's own private state so aiortc's RTCP
    task keeps sending correct receiver reports: RTCP statistics (``__remote_streams``;
    ``StreamStatistics.add`` reads only ``sequence_number`` and ``timestamp``), the NACK
    generator (``__nack_generator``, sent with ``_send_rtcp_nack``), the REMB estimate the
    publisher's encoder adapts to (``__remote_bitrate_estimator``, sent from
    ``__rtcp_ssrc`` with ``_send_rtcp``; its per-packet ``add`` done by
    ``hub.media.bitrate.RembEstimate``, which hands each packet group to the estimator's own
    ``estimator`` / ``detector`` / ``rate_control``, and ``estimator.update_min_frame_period``
    swapped for ``hub.media.bitrate``'s cheaper equivalent), the active-source list PLIs go
    to (``__active_ssrc``), and whether aiortc would route to the receiver at all (``_enabled``,
    ``RTCDtlsTransport._rtp_router.receivers``).
17. SRTCP at once (``divert_srtp``, for publishers and viewers alike): an SRTCP datagram is
    unprotected with ``_rx_srtp.unprotect_rtcp`` and given to aiortc's own
    ``RTCDtlsTransport._handle_rtcp_data`` (parse, route, each recipient's
    ``_handle_rtcp_packet``) right in the socket callback, as ``_recv_next`` would after
    aioice's queue and the DTLS task: a viewer's receiver reports, NACKs and PLIs cost a
    loop turn and two task wake-ups less each. Its handlers do not suspend (ours are
    shadowed synchronous ones, aiortc's await nothing else for RTCP), so the coroutine is
    run to its end on the spot (``run_now``); were one to suspend, a task finishes it.

Consumers: ``ingest`` (10, 11, 17), ``peers`` (17, for viewers).
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator
from typing import Any, cast

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport, RTCRtpReceiver
from aiortc import clock as aiortc_clock
from aiortc.rate import BandwidthUsage, RemoteBitrateEstimator
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, is_rtcp, pack_remb_fci
from pylibsrtp import _binding as srtp_binding

from hub.media.bitrate import RembEstimate, min_frame_period
from hub.media.seams_udp import SessionSocket

logger = logging.getLogger(__name__)

__all__ = ["ReceiverBookkeeping", "divert_srtp"]


# --- 10. a publisher's SRTP, straight from the socket -----------------------------------

EARLY_PACKETS = 64  # SRTP datagrams kept while DTLS has not made the keys yet
_BUFFER_BYTES = 2048  # larger than any datagram a UDP path's MTU lets through
_srtp_unprotect = srtp_binding.lib.srtp_unprotect  # seam 16, as seams_egress protects
_ffi = srtp_binding.ffi


def divert_srtp(dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None] | None) -> None:
    """Hand every SRTP packet arriving on ``dtls`` to ``on_rtp``, unprotected, synchronously
    inside the socket's ``datagram_received`` (``on_rtp`` None: RTP takes aiortc's path, for
    a viewer, which sends none), and handle every SRTCP packet there too, with aiortc's own
    ``_handle_rtcp_data`` (seam 17); DTLS and STUN go on to aiortc as before. Packets that
    fail authentication are dropped, as aiortc drops them.

    Call after ``setLocalDescription`` (the ICE sockets exist once candidates are gathered)
    and before media flows. SRTP that arrives before DTLS has made the keys (a publisher
    starts sending as soon as its own handshake is done) is kept, up to ``EARLY_PACKETS``,
    and handled before the first packet after the keys: left in aioice's queue, it reached
    aiortc's receive path once the DTLS task had set the keys up.
    """
    connection = dtls.transport._connection
    queue_datagram = connection.data_received
    early: list[tuple[bytes, int]] = []
    # SRTP is unprotected in place in a buffer of our own, through pylibsrtp's cffi binding
    # on the session's srtp_t (seam 16, as ``seams_egress.SrtpWire`` protects): ≈ 0.6 µs less
    # per packet than ``Session.unprotect``'s length cell, type checks and copy.
    cdata = _ffi.new("unsigned char[]", _BUFFER_BYTES)
    buffer = _ffi.buffer(cdata)
    length = _ffi.new("int *")
    keys: list[Any] = [None, None]  # the Session (held: it frees its srtp_t), its srtp_t

    def data_received(data: bytes, component: int) -> None:
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
        if is_rtcp(data):
            try:
                clear = srtp.unprotect_rtcp(data)
            except pylibsrtp.Error:
                return
            try:
                run_now(dtls._handle_rtcp_data(clear))
            except Exception:  # as aiortc's DTLS task would, keep the socket going
                logger.exception("RTCP handling failed")
            return
        if on_rtp is None:
            queue_datagram(data, component)
            return
        if keys[0] is not srtp:
            keys[0], keys[1] = srtp, srtp._srtp[0]
        size = len(data)
        if size > _BUFFER_BYTES:
            return
        buffer[0:size] = data
        length[0] = size
        if _srtp_unprotect(keys[1], cdata, length):
            return  # failed authentication or replay: dropped, as aiortc drops it
        try:
            on_rtp(buffer[0:length[0]])
        except Exception:  # a forwarding bug must not take the publisher's socket down
            logger.exception("RTP ingest failed")

    # StunProtocol.datagram_received calls self.receiver.data_received(...)
    connection.data_received = data_received  # type: ignore[method-assign]  # shadowed per instance
    for protocol in connection._protocols:
        _skip_stun_parsing_for_rtp(protocol)


def _skip_stun_parsing_for_rtp(protocol: StunProtocol) -> None:
    """aioice tries to parse every datagram as STUN first (an exception per RTP packet);
    bytes 128-191 start RTP/RTCP (RFC 7983), never STUN. An empty datagram, which aiortc's
    DTLS reader would fail on, is dropped here."""
    stun_or_other = protocol.datagram_received
    connection = protocol.receiver

    def datagram_received(data: bytes, addr: tuple[Any, ...]) -> None:
        if not data:
            return
        if 127 < data[0] < 192:
            connection.data_received(data, protocol.local_candidate.component)
        else:
            stun_or_other(data, addr)

    # asyncio calls the protocol's own; typed bytes | str upstream, but a UDP socket gives bytes
    protocol.datagram_received = datagram_received  # type: ignore[method-assign,assignment]  # shadowed per instance; UDP gives bytes
    if isinstance(protocol.transport, SessionSocket):  # the shared port's mux hands RTP/RTCP straight here
        component = protocol.local_candidate.component
        protocol.transport.media = functools.partial(connection.data_received, component=component)


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


# --- 11. what a receiver does with a packet besides decoding it --------------------------

NTP_UNIX_OFFSET_S = 2208988800  # aiortc's clock counts from the NTP epoch (1900)
ACTIVE_SOURCE_REFRESH_S = 1.0
REMB_INTERVAL_S = 0.2
REMB_SOONER_BELOW = 0.97
RENACK_S = 0.3  # packets still missing this long after their NACK are NACKed again (≈ a weak link's RTT)
# A packet is asked for at most this many times. Unbounded, an overloaded hub whose own socket
# dropped packets asked for each one every RENACK_S while aiortc tracked it (≈ 2 s): in the
# Jember-day benchmark publishers re-sent 2.6× their packets into the socket that was already
# overflowing, and media collapsed.
MAX_NACKS = 3


def _receiver_private(receiver: RTCRtpReceiver, name: str) -> Any:
    """``receiver.__<name>``: Python stores double-underscore attributes under the class's
    mangled name (``_RTCRtpReceiver__<name>``), which type checkers do not model."""
    return vars(receiver)[f"_RTCRtpReceiver__{name}"]


class _Seen:
    """The two fields aiortc's statistics and NACK generator read from a packet."""

    __slots__ = ("sequence_number", "timestamp")

    def __init__(self) -> None:
        self.sequence_number = 0
        self.timestamp = 0


class ReceiverBookkeeping:
    """One receiver's per-packet duties, done on its own counters so aiortc's RTCP task
    keeps sending correct receiver reports and the publisher's encoder keeps getting REMB.

    ``count`` is for every packet routed to the receiver (RTX included, under its own
    SSRC, as aiortc counts them); ``note_media`` for media packets (RTX unwrapped: the
    original SSRC and sequence number), which feeds the NACK generator.
    """

    __slots__ = ("_active", "_clock_rate", "_estimate", "_nacks", "_receiver", "_refresh_at", "_remb_due",
                 "_nack_counts", "_remb_sent", "_renack_at", "_routed", "_seen", "_streams")

    def __init__(self, receiver: RTCRtpReceiver, clock_rate: int) -> None:
        self._receiver = receiver
        self._routed = receiver.transport._rtp_router.receivers
        self._streams: dict[int, StreamStatistics] = _receiver_private(receiver, "remote_streams")
        self._active: dict[int, datetime.datetime] = _receiver_private(receiver, "active_ssrc")
        self._nacks: NackGenerator | None = _receiver_private(receiver, "nack_generator")
        estimator: RemoteBitrateEstimator | None = _receiver_private(receiver, "remote_bitrate_estimator")
        self._estimate = _speed_up(estimator) if estimator is not None else None
        self._clock_rate = clock_rate
        # StreamStatistics.add and NackGenerator.add take an RtpPacket and read only these
        # two fields: one stand-in, refilled per packet, instead of a packet object each.
        self._seen = cast(RtpPacket, _Seen())
        self._refresh_at: dict[int, float] = {}
        self._remb_due = 0.0
        self._remb_sent = 0
        self._renack_at = 0.0
        self._nack_counts: dict[int, int] = {}  # missing sequence number → times asked for

    def accepting(self) -> bool:
        """aiortc would route to this receiver: started, not stopped, enabled."""
        receiver = self._receiver
        return receiver._enabled and receiver in self._routed

    def count(self, ssrc: int, seq: int, ts: int, size: int, abs_send_time: int | None) -> None:
        seen = self._seen
        seen.sequence_number, seen.timestamp = seq, ts
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = StreamStatistics(self._clock_rate)
        stream.add(seen)
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
        seen = self._seen
        seen.sequence_number = seq
        # aiortc NACKs again only when a new gap appears: a lost NACK or a lost retransmission
        # would then wait for the next loss, and the viewers' picture with it
        if nacks.add(seen) or (nacks.missing and time.monotonic() >= self._renack_at):
            self._renack_at = time.monotonic() + RENACK_S
            wanted = self._to_ask(nacks.missing)
            if wanted:
                self._send(self._receiver._send_rtcp_nack(ssrc, wanted))

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
        # Throttle as libwebrtc's RembThrottler does: one per 200 ms, sooner for a 3 % drop.
        now, bitrate = time.monotonic(), remb[0]
        if now < self._remb_due and bitrate >= self._remb_sent * REMB_SOONER_BELOW:
            return
        self._remb_due, self._remb_sent = now + REMB_INTERVAL_S, bitrate
        rtcp_ssrc: int | None = _receiver_private(self._receiver, "rtcp_ssrc")
        if rtcp_ssrc is not None:
            packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb))
            self._send(self._receiver._send_rtcp(packet))

    @staticmethod
    def _send(coro: Coroutine[Any, Any, None]) -> None:
        """aiortc's RTCP send (serialise, protect, four coroutines down to ``sendto``) never
        suspends: run it now (seam 17's ``run_now``) rather than as a task a loop turn later,
        as it was (a REMB every 200 ms per publisher)."""
        run_now(coro)


def _speed_up(estimator: RemoteBitrateEstimator) -> RembEstimate:
    """What ``count`` calls instead of a fresh ``RemoteBitrateEstimator``'s ``add`` (same results,
    a fraction of the cost), with the estimator's min-frame-period step swapped for
    ``hub.media.bitrate``'s equivalent too."""
    overuse = estimator.estimator
    # OveruseEstimator.update calls self.update_min_frame_period(...)
    cheaper = functools.partial(min_frame_period, overuse.ts_delta_hist)
    overuse.update_min_frame_period = cheaper  # type: ignore[method-assign]  # shadowed per instance
    return RembEstimate(estimator, BandwidthUsage.OVERUSING)
