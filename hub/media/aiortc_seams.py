"""Every use of aiortc / aioice internals, in one place.

aiortc is built to decode what it receives and encode what it sends. A forwarding relay
needs four things it does not offer publicly; each is one small function here, and
``tests/media/test_aiortc_seams.py`` pins the internals they rely on (aiortc 1.16.0,
aioice 0.13.0) so that an upgrade fails loudly in one test file instead of quietly in
production:

1. ``take_encoded_frames``: the receiver reassembles RTP into ``JitterFrame`` objects and
   hands them to a decoder thread through ``RTCRtpReceiver.__decoder_queue``. We swap that
   queue for a sink that passes each encoded frame to a callback on the event loop, so
   nothing is decoded and the decoder thread exits at once instead of idling. (With the
   ingest fast path no packet reaches a hub receiver's jitter buffer; the benchmarks'
   viewers use it to count frames without decoding.)
2. ``request_keyframe``: ``RTCRtpReceiver._send_rtcp_pli`` sends a PLI to the publisher.
3. ``on_keyframe_request``: a viewer's PLI/FIR reaches ``RTCRtpSender._send_keyframe``,
   which only sets a flag for aiortc's own encoder; with pre-encoded input the request
   would be dropped. We shadow it per sender instance.
4. ``announced_host_addresses``: aioice picks host candidates in the module function
   ``aioice.ice.get_host_addresses`` and always leaves 127.0.0.1 out. We wrap it once; the
   wrapper answers with the configured addresses only inside the context that set them, so
   nothing else in the process changes behaviour.
5. ``close_peer_connection``: aiortc's connect task (started by ``setLocalDescription``)
   can start a sender or receiver *while* ``close()`` awaits the DTLS shutdown; that
   sender's RTCP loop then runs forever on a dead transport. We stop every sender and
   receiver again once ``close()`` returns (``stop()`` is idempotent).

The RTP forwarding fast path (``viewer_egress``) needs four more:

6. ``open_wire``: a viewer's outbound SRTP session (``RTCDtlsTransport._tx_srtp``) and
   its nominated ICE pair's UDP transport (``aioice.Connection._nominated``), so a packet
   is protected and sent synchronously, without aiortc's per-packet coroutines.
7. ``on_nack``: a viewer's NACK reaches ``RTCRtpSender._retransmit(seq)``, which looks in
   a history that stays empty here; we shadow it per sender.
8. ``report_with``: the sender's RTCP loop sends an SR built from its own counters, which
   stay zero here; we shadow ``RTCRtpSender._send_rtcp`` to fill in ours.
9. ``sender_ssrcs``: the SSRCs aiortc announced for a sender (``_ssrc``, ``_rtx_ssrc``),
   which our packets must carry so the viewer's RTCP is routed back to that sender.

The ingest fast path (``ingest``) needs three more:

10. ``divert_srtp``: a publisher's SRTP packets, unprotected with the DTLS transport's own
    session (``RTCDtlsTransport._rx_srtp``) and handed over synchronously from the socket's
    ``datagram_received``, instead of through aioice's queue, the DTLS receive task, aiortc's
    RTP parser and the receiver's jitter buffer and frame reassembly. DTLS, STUN and SRTCP
    still take aiortc's path.
11. ``ReceiverBookkeeping``: the parts of ``RTCRtpReceiver._handle_rtp_packet`` a relay
    still wants for each packet: RTCP statistics (its receiver reports), NACKs, the REMB
    bandwidth estimate the publisher's encoder adapts to (two of its steps swapped for
    ``hub.media.bitrate``'s cheaper equivalents), and the active-source list.
12. ``depayload``: aiortc's RTP depayloaders, to rebuild one keyframe for a thumbnail.

Everything else (peer connections, codec preferences, SDP parsing) is aiortc's public API,
but is still reached through here so the rest of ``hub.media`` imports aiortc in one file.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import aioice.ice
import pylibsrtp
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc import clock as aiortc_clock
from aiortc import rtcrtpreceiver as aiortc_rtcrtpreceiver
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import CODECS
from aiortc.codecs import depayload as aiortc_depayload
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpSenderInfo, RtcpSrPacket, is_rtcp, pack_remb_fci

from hub.media.bitrate import WindowRate, min_frame_period

logger = logging.getLogger(__name__)

__all__ = [
    "MediaStreamError",
    "MediaStreamTrack",
    "RTCPeerConnection",
    "RTCRtpCodecCapability",
    "RTCSessionDescription",
    "announced_host_addresses",
    "capability_for",
    "ReceiverBookkeeping",
    "close_peer_connection",
    "depayload",
    "divert_srtp",
    "negotiated_media",
    "new_peer_connection",
    "on_keyframe_request",
    "on_nack",
    "open_wire",
    "parse_sdp",
    "report_with",
    "request_keyframe",
    "sender_ssrcs",
    "supported_codec",
    "take_encoded_frames",
]

# Encoded-frame callback: (codec mime type, e.g. "video/VP8", clock rate, data, timestamp).
# The timestamp is in clock-rate units, counted from the publisher's first frame.
FrameSink = Callable[[str, int, bytes, int], None]


# --- 1. taking encoded frames instead of decoding them ----------------------------------


class _EncodedFrameSink:
    """Stands in for the receiver's ``queue.Queue`` between jitter buffer and decoder.

    ``get`` is only called by aiortc's decoder thread: answering ``None`` at once tells the
    thread to stop, so no thread idles per publisher. ``put`` is called on the event loop by
    ``_handle_rtp_packet`` with ``(codec, JitterFrame)``, and with ``None`` on shutdown.
    """

    def __init__(self, on_frame: FrameSink) -> None:
        self._on_frame: FrameSink | None = on_frame

    def get(self, *_: Any, **__: Any) -> None:
        return None

    def put(self, task: Any, *_: Any, **__: Any) -> None:
        if task is None:
            self._on_frame = None  # the receiver is stopping: drop the reference cycle
            return
        codec, encoded_frame = task
        if self._on_frame is not None:
            self._on_frame(codec.mimeType, codec.clockRate, encoded_frame.data, encoded_frame.timestamp)


def take_encoded_frames(receiver: RTCRtpReceiver, on_frame: FrameSink) -> None:
    """Route the receiver's reassembled frames to ``on_frame`` instead of a decoder.

    Call after ``setRemoteDescription`` created the receiver and before the connection
    starts it (``receive()`` runs only once ICE and DTLS are up, after
    ``setLocalDescription``). The receiver still runs its jitter buffer, NACKs, RTX
    unwrapping and loss-triggered PLIs.
    """
    if getattr(receiver, "_RTCRtpReceiver__decoder_thread", None) is not None:
        raise RuntimeError("receiver already started: too late to take its frames")
    receiver._RTCRtpReceiver__decoder_queue = _EncodedFrameSink(on_frame)  # type: ignore[attr-defined]


# --- 2. asking the publisher for a keyframe ---------------------------------------------


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI for every SSRC the receiver heard from recently; False if none yet.

    A PLI for an RTX SSRC is ignored by senders, so no need to tell them apart here. With
    no SSRC heard yet there is nothing to ask: a publisher's first frame is a keyframe.
    """
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return bool(sources)


# --- 3. catching a viewer's PLI / FIR ---------------------------------------------------


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the viewer behind ``sender`` sends a PLI or FIR."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


# --- 4. host addresses for ICE ----------------------------------------------------------

_announced: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "jaga_announced_host_addresses", default=()
)
_original_get_host_addresses = aioice.ice.get_host_addresses


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    configured = _announced.get()
    if configured:
        return [a for a in configured if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]
    return _original_get_host_addresses(use_ipv4, use_ipv6)


_get_host_addresses.jaga_wrapper = True  # type: ignore[attr-defined]
if not getattr(aioice.ice.get_host_addresses, "jaga_wrapper", False):
    aioice.ice.get_host_addresses = _get_host_addresses


@contextlib.contextmanager
def announced_host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Inside this block, ICE gathering binds and announces exactly ``addresses``.

    Wrap ``setLocalDescription`` in it: aiortc gathers there, in tasks that inherit this
    context. Empty ``addresses`` leaves aioice's own discovery in charge.
    """
    token = _announced.set(tuple(addresses))
    try:
        yield
    finally:
        _announced.reset(token)


# --- 5. closing without leaking a late-started sender or receiver ------------------------


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    """Close ``pc`` and everything aiortc started for it, even during the close itself.

    A connection a hostile offer left half negotiated has transceivers without transports;
    aiortc's own close then raises AttributeError part way. Every part is closed anyway.
    """
    with contextlib.suppress(AttributeError):
        await pc.close()
    for transceiver in pc.getTransceivers():
        with contextlib.suppress(AttributeError):
            await transceiver.receiver.stop()
        with contextlib.suppress(AttributeError):
            await transceiver.sender.stop()


# --- 6. sending SRTP to a viewer directly -----------------------------------------------

# Bytes a viewer's UDP socket may hold in asyncio's buffer (the kernel's was full) before
# the viewer counts as slow. UDP on a healthy path never gets here.
MAX_SOCKET_BACKLOG = 256 * 1024


class SrtpWire:
    """A viewer's outbound path: its SRTP session and the nominated ICE pair's socket.

    ``send`` protects and writes one RTP packet synchronously; it answers False once the
    ICE connection is closing (aioice clears its nominated pairs first) or if libsrtp
    refuses the packet. The pair is re-read when aioice nominates another one.
    """

    __slots__ = ("_addr", "_nominated", "_pair", "_protect", "_transport")

    def __init__(self, protect: Callable[[bytes], bytes], nominated: dict[int, Any]) -> None:
        self._protect = protect
        self._nominated = nominated
        self._pair: Any = None
        self._transport: Any = None
        self._addr: tuple[str, int] | None = None

    def send(self, packet: bytes) -> bool:
        pair = self._nominated.get(1)
        if pair is not self._pair:
            if pair is None:
                return False
            self._pair, self._transport, self._addr = pair, pair.protocol.transport, pair.remote_addr
        try:
            self._transport.sendto(self._protect(packet), self._addr)
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

    sender._retransmit = retransmit  # type: ignore[method-assign]


# (monotonic now) -> (RTP timestamp now, packet count, payload octet count), or None when
# nothing was sent yet (then no SR goes out at all).
SenderReport = Callable[[float], "tuple[int, int, int] | None"]


def report_with(sender: RTCRtpSender, report: SenderReport) -> None:
    """Fill the sender's periodic RTCP SR with ``report``'s values (RFC 3550 §6.4.1)."""
    send_rtcp = sender._send_rtcp

    async def send_with_our_report(packets: list[Any]) -> None:
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

    sender._send_rtcp = send_with_our_report  # type: ignore[method-assign]


# --- 9. the SSRCs a sender announced ----------------------------------------------------


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC), as aiortc wrote them into the answer's ``a=ssrc`` lines."""
    return sender._ssrc, sender._rtx_ssrc


# --- 10. a publisher's SRTP, straight from the socket -----------------------------------


def divert_srtp(dtls: Any, on_rtp: Callable[[bytes], None]) -> None:
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

    connection.data_received = data_received
    for protocol in connection._protocols:
        _skip_stun_parsing_for_rtp(protocol)


def _skip_stun_parsing_for_rtp(protocol: Any) -> None:
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

    protocol.datagram_received = datagram_received


# --- 11. what a receiver does with a packet besides decoding it --------------------------

NTP_UNIX_OFFSET_S = 2208988800  # aiortc's clock counts from the NTP epoch (1900)
ACTIVE_SOURCE_REFRESH_S = 1.0
REMB_INTERVAL_S = 0.2
REMB_SOONER_BELOW = 0.97


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
                 "_remb_sent", "_routed", "_seen", "_streams", "_tasks")

    def __init__(self, receiver: RTCRtpReceiver, clock_rate: int) -> None:
        self._receiver = receiver
        self._routed = receiver.transport._rtp_router.receivers
        self._streams = receiver._RTCRtpReceiver__remote_streams  # type: ignore[attr-defined]
        self._active = receiver._RTCRtpReceiver__active_ssrc  # type: ignore[attr-defined]
        self._nacks = receiver._RTCRtpReceiver__nack_generator  # type: ignore[attr-defined]
        self._estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
        if self._estimator is not None:
            _speed_up(self._estimator)
        self._clock_rate = clock_rate
        self._seen = _Seen()
        self._refresh_at: dict[int, float] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._remb_due = 0.0
        self._remb_sent = 0

    def accepting(self) -> bool:
        """aiortc would route to this receiver: started, not stopped, enabled."""
        receiver = self._receiver
        return receiver._enabled and receiver in self._routed

    def count(self, ssrc: int, seq: int, ts: int, size: int, abs_send_time: int | None) -> None:
        seen = self._seen
        seen.sequence_number, seen.timestamp = seq, ts
        stream = self._streams.get(ssrc)
        if stream is None:
            stream = self._streams[ssrc] = aiortc_rtcrtpreceiver.StreamStatistics(self._clock_rate)
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
        if nacks.add(seen):
            self._spawn(self._receiver._send_rtcp_nack(ssrc, sorted(nacks.missing)))

    def _send_remb(self, remb: tuple[int, list[int]]) -> None:
        # aiortc's estimator answers on *every* packet while it sees overuse; sending each one
        # made an overloaded hub busier still (the ingest benchmark's loss point collapsed).
        # Throttle as libwebrtc's RembThrottler does: one per 200 ms, sooner for a 3 % drop.
        now, bitrate = time.monotonic(), remb[0]
        if now < self._remb_due and bitrate >= self._remb_sent * REMB_SOONER_BELOW:
            return
        self._remb_due, self._remb_sent = now + REMB_INTERVAL_S, bitrate
        rtcp_ssrc = self._receiver._RTCRtpReceiver__rtcp_ssrc  # type: ignore[attr-defined]
        if rtcp_ssrc is not None:
            packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=rtcp_ssrc, media_ssrc=0, fci=pack_remb_fci(*remb))
            self._spawn(self._receiver._send_rtcp(packet))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _speed_up(estimator: Any) -> None:
    """Swap two per-packet steps of a fresh ``RemoteBitrateEstimator`` for ``hub.media.bitrate``'s
    equivalents (same results, a fraction of the cost)."""
    estimator.incoming_bitrate = WindowRate(1000, 8000)
    overuse = estimator.estimator
    overuse.update_min_frame_period = functools.partial(min_frame_period, overuse.ts_delta_hist)


# --- 12. rebuilding an encoded frame from RTP payloads ----------------------------------


def depayload(mime_type: str, payload: bytes) -> bytes:
    """One RTP payload's share of the encoded frame (VP8 descriptor / H.264 FU-A removed)."""
    kind, _, subtype = mime_type.partition("/")
    # aiortc picks the depayloader by the codec's name, which is case-sensitive ("VP8")
    return aiortc_depayload(RTCRtpCodecParameters(mimeType=f"{kind}/{subtype.upper()}", clockRate=90000), payload)


# --- public API, reached through here ---------------------------------------------------

MID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_SEND_TIME_EXTENSION = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


@dataclass(frozen=True)
class NegotiatedMedia:
    """One m-section of an answer: the codec and what RTP packets on it must look like."""

    kind: str
    mid: str
    mime_type: str  # lower case, e.g. "video/vp8"
    clock_rate: int
    payload_type: int
    rtx_payload_type: int | None
    mid_extension_id: int | None
    abs_send_time_extension_id: int | None = None


def negotiated_media(answer_sdp: str) -> dict[str, NegotiatedMedia]:
    """Per kind, the first (only) codec of each active m-section of our answer, its RTX
    payload type and the ``mid`` and abs-send-time header-extension ids (aiortc's SDP parser)."""
    media: dict[str, NegotiatedMedia] = {}
    for section in aiortc_sdp.SessionDescription.parse(answer_sdp).media:
        codecs = [c for c in section.rtp.codecs if c.mimeType.lower() != f"{section.kind}/rtx"]
        if section.port == 0 or not codecs or section.kind in media:
            continue
        codec = codecs[0]
        rtx = next(
            (c.payloadType for c in section.rtp.codecs
             if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == codec.payloadType),
            None,
        )
        extension_ids = {e.uri: e.id for e in section.rtp.headerExtensions}
        media[section.kind] = NegotiatedMedia(
            section.kind, section.rtp.muxId, codec.mimeType.lower(), codec.clockRate, codec.payloadType, rtx,
            extension_ids.get(MID_EXTENSION), extension_ids.get(ABS_SEND_TIME_EXTENSION),
        )
    return media



def new_peer_connection(ice_servers: Sequence[str]) -> RTCPeerConnection:
    """A peer connection with exactly the configured ICE servers.

    aiortc falls back to Google's STUN server when ``iceServers`` is left out; an explicit
    empty list means no STUN at all, which is what we want unless one is configured.
    """
    servers = [RTCIceServer(urls=url) for url in ice_servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


def parse_sdp(text: str) -> aiortc_sdp.SessionDescription:
    """aiortc's own SDP parser (what ``setRemoteDescription`` will use)."""
    return aiortc_sdp.SessionDescription.parse(text)


def supported_codec(kind: str, offered: RTCRtpCodecParameters) -> RTCRtpCodecParameters | None:
    """aiortc's local codec that can carry ``offered`` unchanged, or None.

    H.264 matches only constrained baseline / baseline with packetization-mode 1: the only
    H.264 aiortc can packetize, and the relay cannot transcode.
    """
    for local in CODECS.get(kind, []):
        if local.mimeType.lower() != "video/rtx" and is_codec_compatible(local, offered):
            return local
    return None


def capability_for(codec: RTCRtpCodecParameters) -> RTCRtpCodecCapability:
    """The capability to pass to ``setCodecPreferences`` for one of aiortc's codecs."""
    return RTCRtpCodecCapability(
        mimeType=codec.mimeType,
        clockRate=codec.clockRate,
        channels=codec.channels,
        parameters=dict(codec.parameters),
    )


def rtx_capability(kind: str) -> RTCRtpCodecCapability | None:
    """The RTX capability for ``kind`` (video), so retransmissions stay negotiated."""
    for codec in RTCRtpSender.getCapabilities(kind).codecs:
        if codec.mimeType.lower().endswith("/rtx"):
            return codec
    return None
