"""The relay's running totals, read by ``MediaRelay.metrics()`` (exported to Prometheus)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class MediaCounters:
    frames_received: int = 0  # publishers' frames: video packets with the marker bit, audio packets
    keyframes_received: int = 0
    packets_forwarded: int = 0  # RTP packets sent to viewers (one per viewer)
    frames_forwarded: int = 0  # frames whose last packet was sent to a viewer (one per viewer)
    bytes_forwarded: int = 0  # payload bytes of those packets
    packets_retransmitted: int = 0  # viewers' NACKs answered from the station's cache
    dropped_packets: int = 0  # packets a viewer did not get: socket backed up, or waiting for a keyframe after that
    keyframe_requests: int = 0  # PLIs sent to publishers (after rate limiting)
    viewer_keyframe_requests: int = 0  # PLI/FIR received from viewers
    thumbnails: int = 0
    sessions_refused: int = 0  # offers refused for caps, rate limits or overload
    viewers_shed: int = 0  # of those, public viewers refused while the media port dropped (hub.media.overload)
    joins_refused_busy: int = 0  # of those, public viewers refused for a full join queue (hub.media.overload)
    joins_waited: int = 0  # public viewers' offers that waited for their turn to join
    join_wait_ms: int = 0  # how long they waited, in all
    joins_abandoned: int = 0  # of those, offers whose client left while they waited: nothing was built for them
    # viewers' video fallback (hub.media.congestion): their link could not carry video
    video_fallbacks: int = 0  # a viewer's video switched off (audio and thumbnails only)
    video_probes: int = 0  # a viewer's video tried again after its back-off
    video_recoveries: int = 0  # a probe that held: that viewer's video stays on

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
