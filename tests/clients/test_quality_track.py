"""LevelledVideo (clients/quality_track.py): size, frame rate and audio only, switched at run time."""

from __future__ import annotations

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients.quality import ladder
from clients.quality_track import LevelledVideo
from tests.clients.helpers import video_frame

L0, L1, L2, L3 = ladder(640, 360, 15, 500_000)
SOURCE_FPS = 15


class Frames(MediaStreamTrack):
    """A source of ``count`` 640x360 frames at 15 fps (by their timestamps), then the end."""

    kind = "video"

    def __init__(self, count: int) -> None:
        super().__init__()
        self.sent = 0
        self.count = count

    async def recv(self) -> av.VideoFrame:
        if self.sent >= self.count:
            raise MediaStreamError
        frame = video_frame(640, 360, pts=self.sent * 90_000 // SOURCE_FPS)
        frame.pict_type = av.video.frame.PictureType.I  # as a camera's decoder marks them
        self.sent += 1
        return frame


async def received(track: LevelledVideo, count: int) -> list[av.VideoFrame]:
    return [await track.recv() for _ in range(count)]


async def drain(track: LevelledVideo) -> list[av.VideoFrame]:
    frames = []
    try:
        while True:
            frames.append(await track.recv())
    except MediaStreamError:
        return frames


async def test_the_top_level_passes_frames_through_unmarked() -> None:
    track = LevelledVideo(Frames(30), L0)
    frames = await drain(track)
    assert len(frames) == 30 and {(f.width, f.height) for f in frames} == {(640, 360)}
    assert {f.pict_type for f in frames} == {av.video.frame.PictureType.NONE}


async def test_lower_levels_scale_and_thin_by_timestamp() -> None:
    track = LevelledVideo(Frames(3 * SOURCE_FPS), L1)
    frames = await drain(track)
    assert len(frames) == 3 * 12 and {(f.width, f.height) for f in frames} == {(480, 270)}
    assert frames[0].pts == 0 and frames[0].time_base == video_frame().time_base  # the source's clock

    track = LevelledVideo(Frames(3 * SOURCE_FPS), L2)
    frames = await drain(track)
    assert len(frames) == 3 * 10 and {(f.width, f.height) for f in frames} == {(320, 180)}
    stamps = [frame.pts for frame in frames if frame.pts is not None]
    assert len(stamps) == len(frames)
    gaps = {b - a for a, b in zip(stamps, stamps[1:], strict=False)}
    assert gaps == {6000, 12000}  # two of every three source frames


async def test_audio_only_sends_nothing_and_video_resumes_at_run_time() -> None:
    source = Frames(4 * SOURCE_FPS)
    track = LevelledVideo(source, L2)
    first = await received(track, 5)
    track.apply(L3)
    resume = SOURCE_FPS * 2  # after two seconds of audio only

    original_recv = source.recv

    async def recv() -> av.VideoFrame:
        if source.sent == resume:
            track.apply(L1)
        return await original_recv()

    source.recv = recv  # type: ignore[method-assign]
    after = await track.recv()
    assert source.sent == resume + 1  # every frame of the pause was read and dropped
    assert (after.width, after.height) == (480, 270) and after.pts == resume * 6000
    assert len(first) == 5 and track.frames_sent == 6


async def test_stop_stops_the_source() -> None:
    source = Frames(1)
    track = LevelledVideo(source, L0)
    track.stop()
    assert source.readyState == "ended"
