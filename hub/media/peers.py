"""Answering a checked offer with an aiortc peer connection, for a publisher or a viewer.

Transceivers are created *before* the offer is applied, with codec preferences, so aiortc
matches the offer's sections to them and the answer carries exactly one codec per kind
(plus RTX for video): the publisher's choice, or for a viewer the codec the publisher
sends. The caller owns the peer connection and must close it if these functions raise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hub.errors import ProtocolViolation
from hub.media import seams_egress, seams_ice, seams_ingest, seams_keyframes, seams_peers
from hub.media.ingest import KindRtpSink, ingest_publisher
from hub.media.offer import CheckedOffer
from hub.media.seams_peers import (
    RTCPeerConnection,
    RTCRtpCodecParameters,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from hub.media.viewer_egress import EgressParameters, IdleTrack, ViewerEgress, mid_extension_block
from jaga.ice_hosts import announced_host_addresses


def _prefer(transceiver: RTCRtpTransceiver, kind: str, codec: RTCRtpCodecParameters) -> None:
    preferences = [seams_peers.capability_for(codec)]
    rtx = seams_peers.rtx_capability(kind) if kind == "video" else None
    if rtx is not None:
        preferences.append(rtx)
    transceiver.setCodecPreferences(preferences)


async def _apply_offer_and_answer(
    pc: RTCPeerConnection, offer: CheckedOffer, host_addresses: Sequence[str], who: str
) -> str:
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        # A hostile offer can pass aiortc's parser and still break its answer (found by
        # tests/faults/test_fuzz.py: a transceiver left without a transport raises
        # AttributeError in createAnswer). Whatever aiortc raises here is the offer's fault.
        answer = await pc.createAnswer()
        with announced_host_addresses(host_addresses):
            await pc.setLocalDescription(answer)
    except Exception as exc:  # ValueError / OperationError / InvalidStateError / AttributeError ...
        raise ProtocolViolation(f"{who} offer cannot be negotiated: {type(exc).__name__}: {exc}"[:300]) from None
    seams_ice.consent_on_beat(pc)  # before ICE completes, when aioice would start its own checks
    return pc.localDescription.sdp


async def answer_publisher(
    pc: RTCPeerConnection,
    offer: CheckedOffer,
    codecs: dict[str, RTCRtpCodecParameters],
    host_addresses: Sequence[str],
    on_rtp: KindRtpSink,
    receiver_reports: seams_ingest.ReceiverReports | None = None,
    own_loss: seams_ingest.OwnLoss | None = None,
) -> tuple[str, dict[str, RTCRtpReceiver]]:
    """Answer a WHIP offer. RTP packets go to ``on_rtp`` as they arrive, on the ingest fast
    path (``hub.media.ingest``); the receiver reports go out on ``receiver_reports``' timer
    (if given; else on aiortc's loop per receiver); ``own_loss``: the hub's socket is dropping
    packets (gaps not NACKed meanwhile). Returns (answer, receivers by kind)."""
    receivers: dict[str, RTCRtpReceiver] = {}
    for kind in offer.kinds:
        transceiver = pc.addTransceiver(kind, direction="recvonly")
        _prefer(transceiver, kind, codecs[kind])
        receivers[kind] = transceiver.receiver
    answer_sdp = await _apply_offer_and_answer(pc, offer, host_addresses, "WHIP")
    for receiver in receivers.values():
        seams_keyframes.take_encoded_frames(receiver, _never_called)  # no decoder thread
    ingest_publisher(receivers, seams_peers.negotiated_media(answer_sdp), on_rtp, receiver_reports, own_loss)
    return answer_sdp, receivers


def _never_called(*_: object) -> None:
    """Frames would come from aiortc's jitter buffer, which the fast path bypasses."""


async def answer_viewer(
    pc: RTCPeerConnection,
    offer: CheckedOffer,
    publisher_codecs: dict[str, RTCRtpCodecParameters],
    host_addresses: Sequence[str],
    make_egress: Callable[[EgressParameters], ViewerEgress],
    on_keyframe_request: Callable[[], None],
    tracks: list[IdleTrack],
    sender_reports: seams_egress.SenderReports | None = None,
) -> tuple[str, dict[str, ViewerEgress], dict[str, RTCRtpSender]]:
    """Answer a WHEP offer with the publisher's codecs.

    Each kind gets a sender whose track never yields (``IdleTrack``, appended to
    ``tracks`` so the caller can stop them on any failure) and a ``ViewerEgress`` that
    sends the media itself once connected; its RTCP sender reports go out on
    ``sender_reports``' timer (if given; else on aiortc's loop per sender). Returns
    (answer, egresses, senders by kind).
    """
    senders: dict[str, RTCRtpSender] = {}
    for kind in offer.kinds:
        codec = publisher_codecs.get(kind)
        if codec is None:
            continue  # the station does not send this kind; aiortc answers it inactive
        offered = next(s for s in offer.sections if s.kind == kind).codecs
        if not any(seams_peers.supported_codec(kind, c) == codec for c in offered):
            raise ProtocolViolation(
                f"this station sends {kind} as {codec.name}; the offer does not accept it"
                + (" (constrained baseline, packetization-mode 1)" if codec.name == "H264" else "")
            )
        track = IdleTrack(kind)
        tracks.append(track)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        _prefer(transceiver, kind, codec)
        seams_keyframes.on_keyframe_request(transceiver.sender, on_keyframe_request)
        senders[kind] = transceiver.sender
    if not senders:
        raise ProtocolViolation("the offer receives nothing this station sends")
    answer_sdp = await _apply_offer_and_answer(pc, offer, host_addresses, "WHEP")
    # the viewer's receiver reports, NACKs and PLIs: handled in the socket callback
    for dtls in {id(sender.transport): sender.transport for sender in senders.values()}.values():
        seams_ingest.divert_srtp(dtls, None, seams_ingest.viewer_rtcp(dtls))
    negotiated = seams_peers.negotiated_media(answer_sdp)
    egresses: dict[str, ViewerEgress] = {}
    for kind, sender in senders.items():
        media = negotiated.get(kind)
        if media is None:
            raise ProtocolViolation(f"no {kind} codec could be negotiated with this offer")
        ssrc, rtx_ssrc = seams_egress.sender_ssrcs(sender)
        extensions = b""
        if media.mid_extension_id is not None and 1 <= media.mid_extension_id <= 14 and 1 <= len(media.mid) <= 16:
            extensions = mid_extension_block(media.mid_extension_id, media.mid)
        egress = make_egress(EgressParameters(
            kind=kind,
            payload_type=media.payload_type,
            clock_rate=media.clock_rate,
            ssrc=ssrc,
            rtx_payload_type=media.rtx_payload_type,
            rtx_ssrc=rtx_ssrc if media.rtx_payload_type is not None else None,
            extensions=extensions,
        ))
        seams_egress.on_nack(sender, egress.retransmit)
        seams_egress.report_with(sender, egress.sender_report, sender_reports)
        egresses[kind] = egress
    return answer_sdp, egresses, senders
