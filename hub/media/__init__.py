"""Media relay: WHIP publishers in, WHEP viewers out, encoded media forwarded without
transcoding. Imports nothing from HTTP; ``hub.routes.media`` is the HTTP edge.

Modules, top to bottom: ``relay`` (sessions, caps, lifecycle) → ``peers`` (answering an
offer), ``ingest`` (a publisher's packets from the socket) and ``station_stream`` (fan-out) →
``viewer_egress``, ``packet_cache``, ``keyframes``, ``thumbnails``, ``offer``, ``rtp``,
``bitrate`` → the seam modules, the only ones importing aiortc / aioice, each for one part
of the media path: ``seams_peers`` (building and closing peer connections, SDP, codecs),
``seams_keyframes`` (encoded frames, keyframe requests both ways, depayloading),
``seams_egress`` (a viewer's wire, NACKs, sender reports) and ``seams_ingest`` (a
publisher's packets from the socket). ICE host addresses: ``jaga.ice_hosts``.
"""

from hub.media.relay import MediaRelay
from hub.media.sessions import MediaEvents, MediaSession

__all__ = ["MediaEvents", "MediaRelay", "MediaSession"]
