"""Checking a WHIP / WHEP offer before any peer connection exists.

Everything a hostile or broken client can send is refused here, with a message that says
what was wrong, so that the relay only ever builds a peer connection for an offer it can
answer. Nothing here allocates sockets or tasks.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.errors import ProtocolViolation, TooLarge
from hub.media import seams_peers
from hub.media.seams_peers import RTCRtpCodecParameters

MEDIA_KINDS = ("audio", "video")
# A station sends one camera and one microphone; a viewer watches one station. More
# sections would only make the hub gather more sockets for nothing.
MAX_MEDIA_SECTIONS = 2
# Every remote candidate becomes ICE checks sent from the hub: cap them so an offer cannot
# turn the hub into a packet cannon aimed at addresses of the sender's choosing.
MAX_CANDIDATES_PER_SECTION = 32
SENDING = ("sendonly", "sendrecv")
RECEIVING = ("recvonly", "sendrecv")


@dataclass(frozen=True)
class OfferedSection:
    kind: str  # "audio" | "video"
    codecs: tuple[RTCRtpCodecParameters, ...]  # as offered, in the offer's order


@dataclass(frozen=True)
class CheckedOffer:
    sdp: str
    sections: tuple[OfferedSection, ...]

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(section.kind for section in self.sections)


def check_offer(sdp: str, *, max_bytes: int, publishing: bool) -> CheckedOffer:
    """Parse and vet an offer; raise TooLarge or ProtocolViolation with a clear reason.

    ``publishing`` is True for WHIP (the client must send media) and False for WHEP (the
    client must receive media).
    """
    size = len(sdp.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise TooLarge(f"SDP offer is {size} bytes; the limit is {max_bytes}")
    if not sdp.lstrip().startswith("v=0"):
        raise ProtocolViolation("body is not an SDP offer (it must start with v=0)")
    try:
        description = seams_peers.parse_sdp(sdp)
    except Exception as exc:  # aiortc's parser raises whatever the bad line provokes
        raise ProtocolViolation(f"malformed SDP offer: {type(exc).__name__}: {exc}") from None

    sections: list[OfferedSection] = []
    for index, media in enumerate(description.media):
        where = f"m-section {index} ({media.kind})"
        if media.kind not in MEDIA_KINDS:
            raise ProtocolViolation(f"{where}: only audio and video are supported")
        if media.port == 0:
            continue  # a rejected / stopped section: nothing will flow on it
        if not media.rtp.muxId:
            raise ProtocolViolation(f"{where}: missing a=mid")
        if media.ice is None or not media.ice.usernameFragment or not media.ice.password:
            raise ProtocolViolation(f"{where}: missing a=ice-ufrag / a=ice-pwd")
        if media.dtls is None or not media.dtls.fingerprints:
            raise ProtocolViolation(f"{where}: missing a=fingerprint or a=setup")
        if not media.rtcp_mux:
            raise ProtocolViolation(f"{where}: a=rtcp-mux is required")
        if len(media.ice_candidates) > MAX_CANDIDATES_PER_SECTION:
            raise ProtocolViolation(
                f"{where}: {len(media.ice_candidates)} candidates; at most {MAX_CANDIDATES_PER_SECTION}"
            )
        direction = media.direction or "sendrecv"
        wanted = SENDING if publishing else RECEIVING
        if direction not in wanted:
            role = "a WHIP offer must send media" if publishing else "a WHEP offer must receive media"
            raise ProtocolViolation(f"{where} is {direction}: {role} ({' or '.join(wanted)})")
        if any(s.kind == media.kind for s in sections):
            raise ProtocolViolation(f"{where}: only one {media.kind} section is supported")
        sections.append(OfferedSection(media.kind, tuple(media.rtp.codecs)))

    if len(description.media) > MAX_MEDIA_SECTIONS:
        raise ProtocolViolation(f"offer has {len(description.media)} m-sections; at most {MAX_MEDIA_SECTIONS}")
    if not sections:
        raise ProtocolViolation("offer has no audio or video to " + ("send" if publishing else "receive"))
    return CheckedOffer(sdp=sdp, sections=tuple(sections))


def choose_publisher_codecs(
    offer: CheckedOffer, allowed_names: tuple[str, ...]
) -> dict[str, RTCRtpCodecParameters]:
    """Per kind, the first offered codec the hub accepts and can forward unchanged.

    The answer then carries exactly this one codec (plus RTX), so the publisher cannot
    switch codecs mid-stream and viewers can be offered exactly what it sends.
    """
    allowed = {name.lower() for name in allowed_names}
    chosen: dict[str, RTCRtpCodecParameters] = {}
    for section in offer.sections:
        for offered in section.codecs:
            if offered.name.lower() not in allowed:
                continue
            local = seams_peers.supported_codec(section.kind, offered)
            if local is not None:
                chosen[section.kind] = local
                break
        else:
            names = sorted({c.name for c in section.codecs if c.name.lower() != "rtx"})
            raise ProtocolViolation(
                f"no usable {section.kind} codec offered ({', '.join(names) or 'none'}); the hub "
                f"accepts {', '.join(allowed_names)} (H264: constrained baseline, packetization-mode 1)"
            )
    return chosen
