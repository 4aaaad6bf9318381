"""One source, many readers: the publisher's tracks, the thumbnailer, later a local preview.

A :class:`Tee` runs one task that pulls frames from a source track as fast as the source
paces them, remembers the latest, and hands each frame to every subscriber's queue. A queue
holds at most ``depth`` frames; when a reader falls behind (an encoder stalled by a slow
link) the oldest frame is dropped, never the source's pace. Without subscribers the source
still runs, so thumbnails keep coming while WHIP is down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

log = logging.getLogger("jaga.station.tee")


class TeeTrack(MediaStreamTrack):
    def __init__(self, tee: Tee, depth: int) -> None:
        super().__init__()
        self.kind = tee.source.kind
        self.queue: asyncio.Queue[Any] = asyncio.Queue(depth)
        self._tee = tee

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.queue.get()
        if frame is None:
            raise MediaStreamError
        return frame

    def stop(self) -> None:
        super().stop()
        self._tee.unsubscribe(self)


class Tee:
    def __init__(self, source: MediaStreamTrack, depth: int = 2) -> None:
        self.source = source
        self.depth = depth
        self.latest: Any = None
        self.frames = 0
        self.first_frame = asyncio.Event()
        self._subscribers: set[TeeTrack] = set()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def subscribe(self) -> TeeTrack:
        track = TeeTrack(self, self.depth)
        self._subscribers.add(track)
        return track

    def unsubscribe(self, track: TeeTrack) -> None:
        self._subscribers.discard(track)

    async def _run(self) -> None:
        try:
            while True:
                frame = await self.source.recv()
                self.latest = frame
                self.frames += 1
                self.first_frame.set()
                for track in list(self._subscribers):
                    if track.queue.full():
                        track.queue.get_nowait()  # drop the oldest for a slow reader
                    track.queue.put_nowait(frame)
        except MediaStreamError:
            log.info("%s source ended", self.source.kind)
        finally:
            for track in list(self._subscribers):
                if track.queue.full():
                    track.queue.get_nowait()
                track.queue.put_nowait(None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self.source.stop()
