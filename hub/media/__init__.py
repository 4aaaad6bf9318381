"""Media relay: WHIP publishers in, WHEP viewers out, encoded media forwarded without
transcoding. Imports nothing from HTTP; ``hub.routes.media`` is the HTTP edge.

Modules, top to bottom: ``relay`` (sessions, caps, lifecycle) → ``peers`` (answering an
offer), ``ingest`` (a publisher's packets from the socket) and ``station_stream`` (fan-out) →
``viewer_egress``, ``packet_cache``, ``keyframes``, ``thumbnails``, ``offer``, ``rtp``,
``bitrate`` → ``aiortc_seams`` (the only module touching aiortc / aioice internals).
"""

from hub.media.relay import MediaRelay
from hub.media.sessions import MediaEvents, MediaSession

__all__ = ["MediaEvents", "MediaRelay", "MediaSession"]
