"""One station's live media: the current publisher's encoded frames, fanned out to viewers.

Theory of operation. A station has at most one *source* (the publisher whose frames are
forwarded) and any number of viewer tracks. Each encoded frame from the source is wrapped
once in an ``av.Packet`` and pushed to every viewer track of its kind, without awaiting
(see ``viewer_track`` for the per-viewer queue and slow-viewer policy).

When a new publisher replaces the source, viewers keep their peer connections and tracks:
every video track goes back to waiting for a keyframe, the new source is asked for one,
and timestamps are rebased so that each viewer's RTP clock keeps running forward across
the switch (aiortc's receiver counts each publisher's timestamps from zero).

Thumbnails: at most one keyframe every ``thumbnail_s`` is decoded to a JPEG in a worker
thread; if none arrived when one is due, the source is asked for a keyframe.
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections.abc import Callable

import av

from hub.media.counters import MediaCounters
from hub.media.keyframes import is_keyframe
from hub.media.thumbnails import keyframe_to_jpeg
from hub.media.viewer_track import ViewerTrack

logger = logging.getLogger(__name__)

# How far the rebased timestamp moves on at a source switch: about one frame.
SWITCH_STEP = {"video": 90000 // 30, "audio": 960}


class StationStream:
    def __init__(
        self,
        station_id: str,
        counters: MediaCounters,
        thumbnail_s: float,
        on_thumbnail: Callable[[str, bytes], None],
    ) -> None:
        self.station_id = station_id
        self._counters = counters
        self._thumbnail_s = thumbnail_s
        self._on_thumbnail = on_thumbnail
        self.source_id: str | None = None
        self._request_source_keyframe: Callable[[], None] = lambda: None
        self._tracks: dict[str, set[ViewerTrack]] = {"audio": set(), "video": set()}
        self._time_bases: dict[int, fractions.Fraction] = {}
        self._rebase: dict[str, tuple[str, int]] = {}  # kind -> (source id, offset)
        self._last_pts: dict[str, int] = {}
        self._next_thumbnail_at = 0.0
        self._thumbnail_keyframe_asked = False
        self._thumbnail_job: asyncio.Future[bytes | None] | None = None

    # --- source ---------------------------------------------------------------------

    def switch_source(self, source_id: str, request_keyframe: Callable[[], None]) -> None:
        """Forward ``source_id``'s frames from now on; viewers resync at its next keyframe."""
        self.source_id = source_id
        self._request_source_keyframe = request_keyframe
        self._thumbnail_keyframe_asked = False
        for track in self._tracks["video"]:
            track.resync()

    def clear_source(self, source_id: str) -> None:
        if self.source_id == source_id:
            self.source_id = None
            self._request_source_keyframe = lambda: None

    def request_keyframe(self) -> None:
        self._request_source_keyframe()

    # --- viewers --------------------------------------------------------------------

    def add_track(self, track: ViewerTrack) -> None:
        self._tracks[track.kind].add(track)

    def remove_track(self, track: ViewerTrack) -> None:
        self._tracks[track.kind].discard(track)

    # --- the hot path ---------------------------------------------------------------

    def forward(self, source_id: str, kind: str, mime_type: str, clock_rate: int, data: bytes, timestamp: int) -> None:
        """Called on the event loop for every encoded frame of every publisher."""
        if source_id != self.source_id:
            return  # a replacement publisher that has not taken over yet, or a stale one
        counters = self._counters
        counters.frames_received += 1
        keyframe = kind == "audio" or is_keyframe(mime_type, data)
        if kind == "video" and keyframe:
            counters.keyframes_received += 1
        tracks = self._tracks.get(kind)
        if tracks:
            packet = av.Packet(data)
            packet.pts = self._rebased(source_id, kind, timestamp)
            packet.time_base = self._time_base(clock_rate)
            for track in tracks:
                track.push(packet, keyframe)
        if kind == "video" and self._thumbnail_s > 0:
            self._maybe_thumbnail(mime_type, data, keyframe)

    def _rebased(self, source_id: str, kind: str, timestamp: int) -> int:
        rebase = self._rebase.get(kind)
        if rebase is None or rebase[0] != source_id:
            last = self._last_pts.get(kind)
            offset = 0 if last is None else last + SWITCH_STEP[kind] - timestamp
            rebase = self._rebase[kind] = (source_id, offset)
        pts = timestamp + rebase[1]
        self._last_pts[kind] = pts
        return pts

    def _time_base(self, clock_rate: int) -> fractions.Fraction:
        time_base = self._time_bases.get(clock_rate)
        if time_base is None:
            time_base = self._time_bases[clock_rate] = fractions.Fraction(1, clock_rate)
        return time_base

    # --- thumbnails -----------------------------------------------------------------

    def _maybe_thumbnail(self, mime_type: str, data: bytes, keyframe: bool) -> None:
        now = time.monotonic()
        if now < self._next_thumbnail_at or self._thumbnail_job is not None:
            return
        if not keyframe:
            if not self._thumbnail_keyframe_asked:
                self._thumbnail_keyframe_asked = True
                self._request_source_keyframe()
            return
        self._next_thumbnail_at = now + self._thumbnail_s
        self._thumbnail_keyframe_asked = False
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(None, keyframe_to_jpeg, mime_type, data)
        self._thumbnail_job = job
        job.add_done_callback(self._thumbnail_done)

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
