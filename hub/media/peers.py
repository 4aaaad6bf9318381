"""Answering a checked offer with an aiortc peer connection, for a publisher or a viewer.

Transceivers are created *before* the offer is applied, with codec preferences, so aiortc
matches the offer's sections to them and the answer carries exactly one codec per kind
(plus RTX for video): the publisher's choice, or for a viewer the codec the publisher
sends. The caller owns the peer connection and must close it if these functions raise.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hub.errors import ProtocolViolation
from hub.media import aiortc_seams as seams
from hub.media.offer import CheckedOffer
from hub.media.viewer_track import ViewerTrack

# (kind, mime type, clock rate, encoded data, timestamp)
KindFrameSink = Callable[[str, str, int, bytes, int], None]


def _prefer(transceiver, kind: str, codec: seams.RTCRtpCodecParameters) -> None:  # type: ignore[no-untyped-def]
    preferences = [seams.capability_for(codec)]
    rtx = seams.rtx_capability(kind) if kind == "video" else None
    if rtx is not None:
        preferences.append(rtx)
    transceiver.setCodecPreferences(preferences)


async def _apply_offer_and_answer(
    pc: seams.RTCPeerConnection, offer: CheckedOffer, host_addresses: Sequence[str], who: str
) -> str:
    try:
        await pc.setRemoteDescription(seams.RTCSessionDescription(sdp=offer.sdp, type="offer"))
    except Exception as exc:  # aiortc raises ValueError / OperationError / InvalidStateError
        raise ProtocolViolation(f"{who} offer cannot be applied: {exc}") from None
    answer = await pc.createAnswer()
    with seams.announced_host_addresses(host_addresses):
        await pc.setLocalDescription(answer)
    return pc.localDescription.sdp


async def answer_publisher(
    pc: seams.RTCPeerConnection,
    offer: CheckedOffer,
    codecs: dict[str, seams.RTCRtpCodecParameters],
    host_addresses: Sequence[str],
    on_frame: KindFrameSink,
) -> tuple[str, dict[str, object]]:
    """Answer a WHIP offer; encoded frames go to ``on_frame``. Returns (answer, receivers)."""
    receivers: dict[str, object] = {}
    for kind in offer.kinds:
        transceiver = pc.addTransceiver(kind, direction="recvonly")
        _prefer(transceiver, kind, codecs[kind])
        receivers[kind] = transceiver.receiver
    answer_sdp = await _apply_offer_and_answer(pc, offer, host_addresses, "WHIP")
    for kind, receiver in receivers.items():
        seams.take_encoded_frames(
            receiver,  # type: ignore[arg-type]
            lambda mime, rate, data, ts, kind=kind: on_frame(kind, mime, rate, data, ts),
        )
    return answer_sdp, receivers


async def answer_viewer(
    pc: seams.RTCPeerConnection,
    offer: CheckedOffer,
    publisher_codecs: dict[str, seams.RTCRtpCodecParameters],
    host_addresses: Sequence[str],
    make_track: Callable[[str], ViewerTrack],
    on_keyframe_request: Callable[[], None],
) -> tuple[str, dict[str, ViewerTrack]]:
    """Answer a WHEP offer with the publisher's codecs. Returns (answer, tracks by kind)."""
    tracks: dict[str, ViewerTrack] = {}
    for kind in offer.kinds:
        codec = publisher_codecs.get(kind)
        if codec is None:
            continue  # the station does not send this kind; aiortc answers it inactive
        offered = next(s for s in offer.sections if s.kind == kind).codecs
        if not any(seams.supported_codec(kind, c) == codec for c in offered):
            raise ProtocolViolation(
                f"this station sends {kind} as {codec.name}; the offer does not accept it"
                + (" (constrained baseline, packetization-mode 1)" if codec.name == "H264" else "")
            )
        track = make_track(kind)
        transceiver = pc.addTransceiver(track, direction="sendonly")
        _prefer(transceiver, kind, codec)
        seams.on_keyframe_request(transceiver.sender, on_keyframe_request)
        tracks[kind] = track
    if not tracks:
        raise ProtocolViolation("the offer receives nothing this station sends")
    answer_sdp = await _apply_offer_and_answer(pc, offer, host_addresses, "WHEP")
    return answer_sdp, tracks
