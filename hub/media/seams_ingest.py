"""A publisher's packets from the socket: the aiortc / aioice internals the ingest fast path uses.

aiortc receives a packet through aioice's queue, a DTLS receive task, its RTP parser and
the receiver's jitter buffer, which reassembles frames for a decoder the relay never runs.
``ingest`` takes the packets off the socket instead and keeps only the receiver duties a
relay still needs. Two seams, pinned by ``tests/media/test_seams_ingest.py`` against the
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
    ``__rtcp_ssrc`` with ``_send_rtcp``; its ``incoming_bitrate`` and
    ``estimator.update_min_frame_period`` swapped for ``hub.media.bitrate``'s cheaper
    equivalents), the active-source list PLIs go to (``__active_ssrc``), and whether
    aiortc would route to the receiver at all (``_enabled``,
    ``RTCDtlsTransport._rtp_router.receivers``).

Consumer: ``ingest``.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

import pylibsrtp
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport, RTCRtpReceiver
from aiortc import clock as aiortc_clock
from aiortc.rate import RemoteBitrateEstimator
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtpPacket, is_rtcp, pack_remb_fci

from hub.media.bitrate import WindowRate, min_frame_period

logger = logging.getLogger(__name__)

__all__ = ["ReceiverBookkeeping", "divert_srtp"]


# --- 10. a publisher's SRTP, straight from the socket -----------------------------------


def divert_srtp(dtls: RTCDtlsTransport, on_rtp: Callable[[bytes], None]) -> None:
    """Hand every SRTP (not SRTCP) packet arriving on ``dtls`` to ``on_rtp``, unprotected,
    synchronously inside the socket's ``datagram_received``; everything else goes on to
    aiortc as before. Packets that fail authentication are dropped, as aiortc drops them.

    Call after ``setLocalDescription`` (the ICE sockets exist once candidates are gathered)
    and before media flows. Until DTLS is up there is no SRTP session and packets take
    aiortc's path, which drops them.
    """
    connection = dtls.transport._connection
    queue_datagram = connection.data_received

    def data_received(data: bytes, component: int) -> None:
        srtp = dtls._rx_srtp
        if srtp is None or not 127 < data[0] < 192 or is_rtcp(data):
            queue_datagram(data, component)
            return
        try:
            clear = srtp.unprotect(data)
        except pylibsrtp.Error:
            return
        try:
            on_rtp(clear)
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


# --- 11. what a receiver does with a packet besides decoding it --------------------------

NTP_UNIX_OFFSET_S = 2208988800  # aiortc's clock counts from the NTP epoch (1900)
ACTIVE_SOURCE_REFRESH_S = 1.0
REMB_INTERVAL_S = 0.2
REMB_SOONER_BELOW = 0.97
RENACK_S = 0.3  # packets still missing this long after their NACK are NACKed again (≈ a weak link's RTT)


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

    __slots__ = ("_active", "_clock_rate", "_estimator", "_nacks", "_receiver", "_refresh_at", "_remb_due",
                 "_remb_sent", "_renack_at", "_routed", "_seen", "_streams", "_tasks")

    def __init__(self, receiver: RTCRtpReceiver, clock_rate: int) -> None:
        self._receiver = receiver
        self._routed = receiver.transport._rtp_router.receivers
        self._streams: dict[int, StreamStatistics] = _receiver_private(receiver, "remote_streams")
        self._active: dict[int, datetime.datetime] = _receiver_private(receiver, "active_ssrc")
        self._nacks: NackGenerator | None = _receiver_private(receiver, "nack_generator")
        self._estimator: RemoteBitrateEstimator | None = _receiver_private(receiver, "remote_bitrate_estimator")
        if self._estimator is not None:
            _speed_up(self._estimator)
        self._clock_rate = clock_rate
        # StreamStatistics.add and NackGenerator.add take an RtpPacket and read only these
        # two fields: one stand-in, refilled per packet, instead of a packet object each.
        self._seen = cast(RtpPacket, _Seen())
        self._refresh_at: dict[int, float] = {}
        self._tasks: set[asyncio.Future[None]] = set()
        self._remb_due = 0.0
        self._remb_sent = 0
        self._renack_at = 0.0

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
        if abs_send_time is not None and self._estimator is not None:
            arrival_ms = int((time.time() + NTP_UNIX_OFFSET_S) * 1000)
            remb = self._estimator.add(abs_send_time=abs_send_time, arrival_time_ms=arrival_ms,
                                       payload_size=size, ssrc=ssrc)
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
            self._spawn(self._receiver._send_rtcp_nack(ssrc, sorted(nacks.missing)))

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
            self._spawn(self._receiver._send_rtcp(packet))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _speed_up(estimator: RemoteBitrateEstimator) -> None:
    """Swap two per-packet steps of a fresh ``RemoteBitrateEstimator`` for ``hub.media.bitrate``'s
    equivalents (same results, a fraction of the cost)."""
    estimator.incoming_bitrate = WindowRate(1000, 8000)  # type: ignore[assignment]  # a RateCounter stand-in
    overuse = estimator.estimator
    # OveruseEstimator.update calls self.update_min_frame_period(...)
    cheaper = functools.partial(min_frame_period, overuse.ts_delta_hist)
    overuse.update_min_frame_period = cheaper  # type: ignore[method-assign]  # shadowed per instance
