"""One station's live media: the current publisher's RTP packets, fanned out to viewers.

Theory of operation. A station has at most one *source* (the publisher whose media is
forwarded) and any number of viewer egresses per kind. Each RTP packet of the source is
forwarded as it arrives (``forward_rtp``): stored once in the station's ``PacketCache``
(video, for NACKs; a duplicate stops here), its payload joined once to each distinct
header-extension block, and every viewer's ``ViewerEgress`` writes its own 12-byte header
in front and sends it, synchronously, without awaiting (see ``viewer_egress``).

Nothing is reassembled per frame: frames are counted by their last packet (the marker bit;
audio: every packet) and keyframes by their first (``starts_keyframe``). A thumbnail's
keyframe is rebuilt from the cache when its last packet arrives.

When a new publisher replaces the source, viewers keep their peer connections: the cache
is emptied, every egress starts a new era (video at the new source's next keyframe, which
it is asked for), and each viewer's sequence numbers and timestamps run on without a jump
backwards (see ``viewer_egress``).

Taps (recorders, ``hub.media.recorder``): every forwarded packet of the source is also
handed, synchronously, to each function added with ``add_tap``; with none, the hot path
pays one attribute check per packet.

Thumbnails: at most one keyframe every ``thumbnail_s`` is decoded to a JPEG in a worker
thread; if none arrived when one is due, the source is asked for a keyframe. Stations whose
agent sends its own thumbnails get none from the relay (no decode, no keyframe request).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable

from hub.media import seams_keyframes
from hub.media.counters import MediaCounters
from hub.media.keyframes import starts_keyframe
from hub.media.packet_cache import PacketCache
from hub.media.thumbnails import keyframe_to_jpeg
from hub.media.viewer_egress import StreamClock, ViewerEgress

logger = logging.getLogger(__name__)

KINDS = ("audio", "video")
# a recorder's tap: (kind, sequence number, timestamp, marker, payload)
RtpTap = Callable[[str, int, int, int, bytes], None]
# One decode at a time, process-wide: with one thread per due thumbnail (the default
# executor's six), hundreds of publishers made the worker threads and the event loop
# fight over the GIL and one core, and the hub's CPU per publisher jumped (ingest benchmark).
THUMBNAIL_WORKER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumbnail")


class StationStream:
    def __init__(
        self,
        station_id: str,
        counters: MediaCounters,
        thumbnail_s: float,
        on_thumbnail: Callable[[str, bytes], None],
        wants_thumbnail: Callable[[str], bool] = lambda station_id: True,
    ) -> None:
        self.station_id = station_id
        self._counters = counters
        self._thumbnail_s = thumbnail_s
        self._on_thumbnail = on_thumbnail
        self._wants_thumbnail = wants_thumbnail
        self.source_id: str | None = None
        self.source_since = 0.0  # monotonic: when the current source took over
        self._request_source_keyframe: Callable[..., None] = lambda urgent=False: None
        self._keyframe_arrived: Callable[[], None] = lambda: None
        self._mime_types: dict[str, str] = {}
        self._video_mime = ""
        # the source's latest keyframe: (timestamp, sequence number of its first packet)
        self._keyframe: tuple[int, int] | None = None
        # per kind: header-extension block -> the egresses that use it
        self._egresses: dict[str, dict[bytes, list[ViewerEgress]]] = {kind: {} for kind in KINDS}
        self.clocks = {kind: StreamClock() for kind in KINDS}
        self.cache = PacketCache()  # video only: audio is not NACKed
        self._next_thumbnail_at = 0.0
        self._thumbnail_keyframe_asked = False
        self._thumbnail_job: asyncio.Future[bytes | None] | None = None
        # recorders' taps: called with every forwarded packet (a tuple: taps may leave mid-call)
        self._taps: tuple[RtpTap, ...] = ()

    # --- source ---------------------------------------------------------------------

    def switch_source(self, source_id: str, mime_types: dict[str, str], request_keyframe: Callable[..., None],
                      keyframe_arrived: Callable[[], None] = lambda: None) -> None:
        """Forward ``source_id``'s packets from now on; viewers resync at its next keyframe.

        ``mime_types``: the source's codec per kind, lower case (``"video/vp8"``).
        """
        self.source_id = source_id
        self.source_since = time.monotonic()
        self._mime_types = dict(mime_types)
        self._video_mime = self._mime_types.get("video", "")
        self._keyframe = None
        self._request_source_keyframe = request_keyframe
        self._keyframe_arrived = keyframe_arrived
        self._thumbnail_keyframe_asked = False
        self.cache.clear()
        for groups in self._egresses.values():
            for egresses in groups.values():
                for egress in egresses:
                    egress.resync()

    def clear_source(self, source_id: str) -> None:
        if self.source_id == source_id:
            self.source_id = None
            self._request_source_keyframe = lambda urgent=False: None
            self._keyframe_arrived = lambda: None

    def media_ages(self, now: float) -> tuple[float, float]:
        """Seconds since the source's last audio and video packet (``now`` monotonic); since
        it took over, if it sent none. Read from the clocks the hot path sets anyway."""
        audio, video = self.clocks["audio"].at, self.clocks["video"].at
        return now - max(audio, self.source_since), now - max(video, self.source_since)

    def codecs(self) -> dict[str, str]:
        """The source's codec per kind, lower case: ``{"video": "video/vp8", "audio": "audio/opus"}``."""
        return dict(self._mime_types)

    def request_keyframe(self, urgent: bool = False) -> None:
        """``urgent``: the hub's own request for a viewer that waits to start (see
        :class:`~hub.media.keyframes.KeyframeRequester`); viewers' PLIs are not urgent."""
        self._request_source_keyframe(urgent=urgent)

    # --- taps (recorders) -------------------------------------------------------------

    def add_tap(self, fn: RtpTap) -> None:
        """Call ``fn(kind, seq, ts, marker, payload)`` for every packet forwarded from now on
        (the source's, RTX unwrapped, duplicates dropped), synchronously. ``fn`` must not raise.
        A new source shows as ``source_id`` changing."""
        if fn not in self._taps:
            self._taps = (*self._taps, fn)

    def remove_tap(self, fn: RtpTap) -> None:
        self._taps = tuple(tap for tap in self._taps if tap != fn)

    # --- viewers --------------------------------------------------------------------

    def add_egress(self, egress: ViewerEgress) -> None:
        self._egresses[egress.kind].setdefault(egress.parameters.extensions, []).append(egress)

    def remove_egress(self, egress: ViewerEgress) -> None:
        groups = self._egresses[egress.kind]
        egresses = groups.get(egress.parameters.extensions)
        if egresses is not None and egress in egresses:
            egresses.remove(egress)
            if not egresses:
                del groups[egress.parameters.extensions]

    # --- the hot path ---------------------------------------------------------------

    def forward_rtp(self, source_id: str, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None:
        """Called on the event loop for every RTP packet (RTX unwrapped) of every publisher."""
        if source_id != self.source_id:
            return  # a replacement publisher that has not taken over yet, or a stale one
        video = kind == "video"
        if video:
            if not self.cache.put(seq, ts, marker, payload):
                return  # already forwarded: a duplicate or a retransmission that lost the race
            keyframe_start = starts_keyframe(self._video_mime, payload)
            if keyframe_start:
                self._keyframe_started(seq, ts)
        else:
            keyframe_start = True
        clock = self.clocks[kind]
        clock.ts, clock.at = ts, time.monotonic()
        counters = self._counters
        if marker or not video:
            counters.frames_received += 1
        groups = self._egresses[kind]
        sent = 0
        for extensions, egresses in groups.items():
            rest = extensions + payload if extensions else payload
            for egress in egresses:
                sent += egress.send(seq, ts, marker, rest, keyframe_start)
        if sent:
            counters.packets_forwarded += sent
            counters.bytes_forwarded += sent * len(payload)
            if marker or not video:
                counters.frames_forwarded += sent
        if marker and video and self._thumbnail_s > 0:
            self._maybe_thumbnail(seq, ts)
        if self._taps:
            for tap in self._taps:
                tap(kind, seq, ts, marker, payload)

    def _keyframe_started(self, seq: int, ts: int) -> None:
        if self._keyframe is not None and self._keyframe[0] == ts:
            return  # H.264: the IDR slice after the SPS that started this keyframe
        self._keyframe = (ts, seq)
        self._counters.keyframes_received += 1
        self._keyframe_arrived()

    # --- thumbnails -----------------------------------------------------------------

    def _maybe_thumbnail(self, last_seq: int, ts: int) -> None:
        """At the end of each video frame: decode it if a thumbnail is due and it is a keyframe."""
        now = time.monotonic()
        if now < self._next_thumbnail_at or self._thumbnail_job is not None:
            return
        if not self._wants_thumbnail(self.station_id):  # its agent sends its own: no decode, no PLI
            self._next_thumbnail_at = now + self._thumbnail_s
            return
        keyframe = self._keyframe_data(last_seq, ts)
        if keyframe is None:
            if not self._thumbnail_keyframe_asked:
                self._thumbnail_keyframe_asked = True
                self._request_source_keyframe()
            return
        self._next_thumbnail_at = now + self._thumbnail_s
        self._thumbnail_keyframe_asked = False
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(THUMBNAIL_WORKER, keyframe_to_jpeg, self._video_mime, keyframe)
        self._thumbnail_job = job
        job.add_done_callback(self._thumbnail_done)

    def _keyframe_data(self, last_seq: int, ts: int) -> bytes | None:
        """The encoded keyframe that ends with ``last_seq``, rebuilt from the cache; None if
        this frame is not a keyframe or one of its packets is missing."""
        if self._keyframe is None or self._keyframe[0] != ts:
            return None
        first_seq = self._keyframe[1]
        count = ((last_seq - first_seq) & 0xFFFF) + 1
        if count > self.cache.size:
            return None
        parts = []
        for i in range(count):
            packet = self.cache.get((first_seq + i) & 0xFFFF)
            if packet is None or packet[1] != ts:
                return None
            try:
                parts.append(seams_keyframes.depayload(self._video_mime, packet[3]))
            except ValueError:
                return None
        return b"".join(parts)

    def _thumbnail_done(self, job: asyncio.Future[bytes | None]) -> None:
        self._thumbnail_job = None
        if job.cancelled():
            return
        error = job.exception()
        if error is not None:
            logger.warning("thumbnail for %s failed: %s", self.station_id, error)
            return
        jpeg = job.result()
        if jpeg:
            self._counters.thumbnails += 1
            try:
                self._on_thumbnail(self.station_id, jpeg)
            except Exception:
                logger.exception("thumbnail callback failed for %s", self.station_id)

    async def close(self) -> None:
        """Wait for a thumbnail being decoded (it runs in a thread and cannot be cut short)."""
        job = self._thumbnail_job
        if job is not None:
            await asyncio.wait([job])
