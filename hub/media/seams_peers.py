"""Peer connections: building and closing them, and aiortc's SDP and codec helpers.

One seam, pinned with the public behaviour below by ``tests/media/test_seams_peers.py``
against the locked aiortc:

5. ``close_peer_connection``: aiortc's connect task (started by ``setLocalDescription``,
   never awaited) can start a sender or receiver *while* ``close()`` awaits the DTLS
   shutdown; that sender's RTCP loop then runs forever on a dead transport (found by the
   join/leave test). We stop every sender and receiver again once ``close()`` returns
   (``stop()`` is idempotent). Then every event listener of the connection and of its DTLS
   and ICE transports is removed (pyee's ``remove_all_listeners``): aiortc's listeners are
   bound methods of the connection, the reference cycle that kept a closed one alive until
   a full garbage collection.

Everything else here is aiortc's public API: peer connections with exactly the configured
ICE servers (``RTCIceGatherer`` falls back to Google's STUN only when ``iceServers`` is
``None``), its SDP parser, its codec table and ``is_codec_compatible``, codec preferences.
It is reached through here so that, in ``hub.media``, aiortc is imported only by the
``seams_*`` modules: ``seams_keyframes`` (seams 1-3, 12), ``seams_egress`` (6-9),
``seams_ingest`` (10, 11) and this one. Seam 4, the ICE host addresses, is
``jaga.ice_hosts`` (shared with the station agent).

Consumers: ``relay`` (peer connections), ``peers`` (codecs, the negotiated answer),
``offer`` (SDP, codecs), ``ingest``, ``sessions`` and ``viewer_egress`` (types).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDtlsTransport,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc import sdp as aiortc_sdp
from aiortc.codecs import CODECS
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcpeerconnection import is_codec_compatible
from aiortc.rtcrtpparameters import RTCRtpCodecCapability, RTCRtpCodecParameters

__all__ = [
    "ABS_SEND_TIME_EXTENSION",
    "MID_EXTENSION",
    "MediaStreamError",
    "MediaStreamTrack",
    "NegotiatedMedia",
    "RTCDtlsTransport",
    "RTCPeerConnection",
    "RTCRtpCodecCapability",
    "RTCRtpCodecParameters",
    "RTCRtpReceiver",
    "RTCRtpSender",
    "RTCRtpTransceiver",
    "RTCSessionDescription",
    "capability_for",
    "close_peer_connection",
    "negotiated_media",
    "new_peer_connection",
    "parse_sdp",
    "rtx_capability",
    "supported_codec",
]


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
    _drop_listeners(pc)


def _drop_listeners(pc: RTCPeerConnection) -> None:
    """Forget every event listener of ``pc`` and of its DTLS and ICE transports.

    Those listeners (aiortc's own bound methods, and ours) are what makes a peer connection a
    reference cycle: without them a closed one is freed by reference counting, at once, with
    its TLS context, SRTP sessions and buffers. Left in the cycle it waited for a full garbage
    collection — and after ``hub.gcpolicy`` froze the heap it was part of, for the next thaw:
    ≈ 1.4 MB of resident memory per viewer that had come and gone (docs/benchmarks.md, "A
    Jember day", tenth step)."""
    emitters: list[Any] = [pc]
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is not None:  # a section a hostile offer left without one
            emitters += [dtls, dtls.transport]
    for emitter in emitters:
        emitter.remove_all_listeners()


# --- public API -------------------------------------------------------------------------


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
    for section in parse_sdp(answer_sdp).media:
        codecs = [c for c in section.rtp.codecs if c.mimeType.lower() != f"{section.kind}/rtx"]
        if section.port == 0 or not codecs or section.kind in media:
            continue
        codec = codecs[0]
        payload_type = codec.payloadType
        if payload_type is None:  # never: the parser takes each codec from the m= line's payload types
            continue
        rtx = next(
            (c.payloadType for c in section.rtp.codecs
             if c.mimeType.lower().endswith("/rtx") and c.parameters.get("apt") == payload_type),
            None,
        )
        extension_ids = {e.uri: e.id for e in section.rtp.headerExtensions}
        media[section.kind] = NegotiatedMedia(
            section.kind, section.rtp.muxId, codec.mimeType.lower(), codec.clockRate, payload_type, rtx,
            extension_ids.get(MID_EXTENSION), extension_ids.get(ABS_SEND_TIME_EXTENSION),
        )
    return media


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
