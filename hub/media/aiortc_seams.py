"""Every use of aiortc / aioice internals, in one place.

aiortc is built to decode what it receives and encode what it sends. A forwarding relay
needs four things it does not offer publicly; each is one small function here, and
``tests/media/test_aiortc_seams.py`` pins the internals they rely on (aiortc 1.16.0,
aioice 0.13.0) so that an upgrade fails loudly in one test file instead of quietly in
production:

1. ``take_encoded_frames``: the receiver reassembles RTP into ``JitterFrame`` objects and
   hands them to a decoder thread through ``RTCRtpReceiver.__decoder_queue``. We swap that
   queue for a sink that passes each encoded frame to a callback on the event loop, so
   nothing is decoded (and the decoder thread exits at once instead of idling).
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

The RTP forwarding fast path (``viewer_egress``) needs five more:

6. ``tap_rtp``: the publisher's RTP packets, as the DTLS transport hands them to
   ``RTCRtpReceiver._handle_rtp_packet`` (shadowed per receiver; the receiver still gets
   every packet, so its NACKs, RTCP and frame reassembly keep working).
7. ``open_wire``: a viewer's outbound SRTP session (``RTCDtlsTransport._tx_srtp``) and
   its nominated ICE pair's UDP transport (``aioice.Connection._nominated``), so a packet
   is protected and sent synchronously, without aiortc's per-packet coroutines.
8. ``on_nack``: a viewer's NACK reaches ``RTCRtpSender._retransmit(seq)``, which looks in
   a history that stays empty here; we shadow it per sender.
9. ``report_with``: the sender's RTCP loop sends an SR built from its own counters, which
   stay zero here; we shadow ``RTCRtpSender._send_rtcp`` to fill in ours.
10. ``sender_ssrcs``: the SSRCs aiortc announced for a sender (``_ssrc``, ``_rtx_ssrc``),
    which our packets must carry so the viewer's RTCP is routed back to that sender.

Everything else (peer connections, codec preferences, SDP parsing) is aiortc's public API,
but is still reached through here so the rest of ``hub.media`` imports aiortc in one file.
"""

from __future__ import annotations

import contextlib
import contextvars
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
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import CODECS
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters
from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

logger = logging.getLogger(__name__)

__all__ = [
    "MediaStreamError",
    "MediaStreamTrack",
    "RTCPeerConnection",
    "RTCRtpCodecCapability",
    "RTCSessionDescription",
    "announced_host_addresses",
    "capability_for",
    "close_peer_connection",
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
    "tap_rtp",
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


# --- 6. the publisher's RTP packets, before the jitter buffer ---------------------------

# (payload type, sequence number, timestamp, marker, payload): the packet as received,
# SRTP already removed, header extensions and padding stripped by aiortc's parser.
RtpSink = Callable[[int, int, int, int, bytes], None]


def tap_rtp(receiver: RTCRtpReceiver, on_packet: RtpSink) -> None:
    """Call ``on_packet`` for each RTP packet routed to ``receiver``, before aiortc handles
    it (RTX packets included, still wrapped). Call before the receiver starts."""
    handle = receiver._handle_rtp_packet

    async def tapped(packet: Any, arrival_time_ms: int) -> None:
        try:
            on_packet(packet.payload_type, packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
        except Exception:  # a forwarding bug must not take the publisher's ingress down
            logger.exception("RTP tap failed")
        await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = tapped  # type: ignore[method-assign]


# --- 7. sending SRTP to a viewer directly -----------------------------------------------

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


# --- 8 and 9. a viewer's NACKs, and our sender reports -----------------------------------


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


# --- 10. the SSRCs a sender announced ----------------------------------------------------


def sender_ssrcs(sender: RTCRtpSender) -> tuple[int, int]:
    """(media SSRC, RTX SSRC), as aiortc wrote them into the answer's ``a=ssrc`` lines."""
    return sender._ssrc, sender._rtx_ssrc


# --- public API, reached through here ---------------------------------------------------

MID_EXTENSION = "urn:ietf:params:rtp-hdrext:sdes:mid"


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


def negotiated_media(answer_sdp: str) -> dict[str, NegotiatedMedia]:
    """Per kind, the first (only) codec of each active m-section of our answer, its RTX
    payload type and the ``mid`` header-extension id (aiortc's SDP parser)."""
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
        mid_id = next((e.id for e in section.rtp.headerExtensions if e.uri == MID_EXTENSION), None)
        media[section.kind] = NegotiatedMedia(
            section.kind, section.rtp.muxId, codec.mimeType.lower(), codec.clockRate, codec.payloadType, rtx, mid_id
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
