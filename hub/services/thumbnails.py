"""A station's own thumbnails, taken in: the gate (how often), then a fresh JPEG.

The re-encoding (:func:`hub.media.thumbnails.reencode_jpeg`) is CPU work of a few
milliseconds, so it runs on this service's own single worker thread, never on the event
loop, and one at a time: 300 stations at one thumbnail per 10 s is ~30 a second, well within
one thread, and a burst waits in the worker's queue instead of taking the loop's time. It is
not the relay's keyframe worker, so agents' thumbnails and the relay's decodes do not queue
behind each other.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable

from hub.core.thumbnail_gate import ThumbnailGate
from hub.errors import ProtocolViolation
from hub.media.thumbnails import BadImage, reencode_jpeg


class ThumbnailIntake:
    def __init__(self, thumbnail_s: float, clock: Callable[[], float] = time.time) -> None:
        self.gate = ThumbnailGate(thumbnail_s / 2)
        self.clock = clock
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="thumb-intake")

    async def take(self, station_id: str, jpeg: bytes) -> bytes:
        """The JPEG to store and announce, or a ProtocolViolation the station is told about:
        ``thumb_dropped`` (too soon; nothing decoded) or ``bad_field`` (not a usable JPEG)."""
        now = self.clock()
        if not self.gate.admit(station_id, now):
            raise ProtocolViolation(
                f"thumb: at most one every {self.gate.interval_s:g} s; this one was dropped "
                f"(next in {self.gate.wait_s(station_id, now):.1f} s)", code="thumb_dropped")
        try:
            return await asyncio.get_running_loop().run_in_executor(self._worker, reencode_jpeg, jpeg)
        except BadImage as exc:
            raise ProtocolViolation(f"thumb: {exc}; the previous thumbnail is kept", code="bad_field") from None

    def close(self) -> None:
        self._worker.shutdown(wait=False, cancel_futures=True)
