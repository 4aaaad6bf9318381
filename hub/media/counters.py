"""The relay's running totals, read by ``MediaRelay.metrics()`` (exported to Prometheus)."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class MediaCounters:
    frames_received: int = 0  # encoded frames taken from publishers
    keyframes_received: int = 0
    frames_forwarded: int = 0  # frames handed to viewers' senders (one per viewer)
    bytes_forwarded: int = 0  # encoded payload bytes of those frames
    dropped_frames: int = 0  # frames a slow viewer lost (queue overflow)
    keyframe_requests: int = 0  # PLIs sent to publishers (after rate limiting)
    viewer_keyframe_requests: int = 0  # PLI/FIR received from viewers
    thumbnails: int = 0
    sessions_refused: int = 0  # offers refused for caps or rate limits

    def as_dict(self) -> dict[str, int]:
        return asdict(self)
