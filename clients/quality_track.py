"""The video track the publisher sends: the source's frames at the current quality level.

:class:`LevelledVideo` wraps one reader of the source (a :class:`~clients.tee.TeeTrack`) and
applies a :class:`~clients.quality.Level` to every frame: scaled to the level's size
(``frame.reformat``), thinned to its frame rate (by the frames' own timestamps, so 15 → 12
fps keeps 4 frames of 5 and 15 → 10 keeps 2 of 3), and, at audio only, not sent at all:
frames are read and dropped, ``recv`` returns nothing and the video RTP stops, which is how
the hub tells "audio only". The level changes at run time with :meth:`apply`; the encoder
sees a new size at its next frame (aiortc then builds a new encoder, which starts with a
keyframe), and nothing is renegotiated. The source keeps running at its own size for the
thumbnails.
"""

from __future__ import annotations

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients.quality import Level

_EARLY_S = 0.002  # a frame this close to its slot is on time (capture timestamps jitter)


class LevelledVideo(MediaStreamTrack):
    kind = "video"

    def __init__(self, source: MediaStreamTrack, level: Level) -> None:
        super().__init__()
        self.source = source
        self.level = level
        self.frames_sent = 0
        self._next_at: float | None = None  # the source time of the next frame to keep

    def apply(self, level: Level) -> None:
        """Send ``level`` from the next frame on."""
        if level.fps != self.level.fps or not self.level.video:
            self._next_at = None
        self.level = level

    async def recv(self) -> av.VideoFrame:
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            frame = await self.source.recv()
            if not isinstance(frame, av.VideoFrame):
                raise MediaStreamError(f"not a video frame: {type(frame).__name__}")
            level = self.level
            if level.video and self._due(frame, level.fps):
                break
        if (frame.width, frame.height) != (level.width, level.height):
            scaled = frame.reformat(width=level.width, height=level.height, format="yuv420p")
            scaled.pts, scaled.time_base = frame.pts, frame.time_base
            frame = scaled
        # A frame marked I makes libvpx encode a keyframe (see clients.sources); keyframes
        # are the encoder's decision or the agent's request, never the source's.
        frame.pict_type = av.video.frame.PictureType.NONE
        self.frames_sent += 1
        return frame

    def _due(self, frame: av.VideoFrame, fps: int) -> bool:
        """Keep this frame for ``fps``? Slots 1/fps apart on the source's clock."""
        if frame.pts is None or frame.time_base is None:
            return True
        at = float(frame.pts * frame.time_base)
        period = 1.0 / fps
        if self._next_at is not None and at < self._next_at - _EARLY_S:
            return False
        if self._next_at is None or at - self._next_at > period:
            self._next_at = at + period  # first frame, or the source paused: start again here
        else:
            self._next_at += period
        return True

    def stop(self) -> None:
        super().stop()
        self.source.stop()
