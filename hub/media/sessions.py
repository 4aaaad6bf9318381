"""What the relay hands out (``MediaSession``), what it calls back (``MediaEvents``), and
the records it keeps per peer connection and per station."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

from hub.media.keyframes import KeyframeRequester
from hub.media.seams_peers import RTCPeerConnection, RTCRtpCodecParameters, RTCRtpSender
from hub.media.station_stream import StationStream
from hub.media.viewer_egress import IdleTrack, ViewerEgress

PUBLIC_OWNER = "public"  # a session anyone opened: a citizen watching a public station


class MediaEvents(Protocol):
    """Called on the event loop; must not block. Exceptions are logged and ignored."""

    def publishing_started(self, station_id: str) -> None: ...  # first publisher connected
    def publishing_stopped(self, station_id: str) -> None: ...  # last publisher gone
    def thumbnail(self, station_id: str, jpeg: bytes) -> None: ...
    # False while someone else (the station's agent) supplies thumbnails: the relay then
    # neither decodes a keyframe nor asks the publisher for one just for a thumbnail.
    def wants_thumbnail(self, station_id: str) -> bool: ...


@dataclass
class MediaSession:
    id: str  # unguessable: the WHIP/WHEP resource URL carries it
    kind: str  # "whip" | "whep"
    station_id: str
    owner: str  # the credential identity that created it (PUBLIC_OWNER: anyone); DELETE/PATCH must present the same
    answer_sdp: str
    etag: str


@dataclass(eq=False)
class Peer:
    session: MediaSession
    pc: RTCPeerConnection
    client_addr: str
    connected: bool = False
    watchdog: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class PublisherPeer(Peer):
    codecs: dict[str, RTCRtpCodecParameters] = field(default_factory=dict)
    requester: KeyframeRequester | None = None


@dataclass(eq=False)
class ViewerPeer(Peer):
    codecs: dict[str, RTCRtpCodecParameters] = field(default_factory=dict)
    egresses: dict[str, ViewerEgress] = field(default_factory=dict)
    senders: dict[str, RTCRtpSender] = field(default_factory=dict)
    tracks: list[IdleTrack] = field(default_factory=list)


@dataclass(eq=False)
class StationState:
    """``active`` is forwarded to viewers; ``pending`` is a replacement publisher that takes
    over when it connects (make-before-break: a failed replacement costs viewers nothing)."""

    stream: StationStream
    active: PublisherPeer | None = None
    pending: PublisherPeer | None = None
    viewers: set[ViewerPeer] = field(default_factory=set)
    live: bool = False  # publishing_started was reported and publishing_stopped not yet
    # no publisher, viewers kept for media.viewer_grace_s: the timer that ends them
    grace: asyncio.TimerHandle | None = None
