"""The per-viewer queue: nothing before a keyframe, overflow drops to the next keyframe."""

from __future__ import annotations

import asyncio

import av
import pytest

from hub.media.aiortc_seams import MediaStreamError
from hub.media.keyframes import KeyframeRequester, h264_nal_types, is_keyframe
from hub.media.viewer_track import ViewerTrack


class Recorder:
    def __init__(self) -> None:
        self.keyframe_requests = 0
        self.dropped = 0
        self.sent = 0

    def track(self, kind: str, capacity: int = 3) -> ViewerTrack:
        def keyframe_needed() -> None:
            self.keyframe_requests += 1

        def dropped(frames: int) -> None:
            self.dropped += frames

        def sent(size: int) -> None:
            self.sent += 1

        return ViewerTrack(kind, capacity, keyframe_needed, dropped, sent)


def frame(label: bytes) -> av.Packet:
    return av.Packet(label)


async def drain(track: ViewerTrack) -> list[bytes]:
    return [bytes(await track.recv()) for _ in range(track.queued)]


async def test_video_waits_for_connection_then_for_a_keyframe() -> None:
    calls = Recorder()
    track = calls.track("video")
    track.push(frame(b"K0"), keyframe=True)  # not connected yet: not queued
    assert track.queued == 0
    track.activate()
    assert calls.keyframe_requests == 1
    track.push(frame(b"d1"), keyframe=False)
    track.push(frame(b"K2"), keyframe=True)
    track.push(frame(b"d3"), keyframe=False)
    assert await drain(track) == [b"K2", b"d3"]


async def test_video_overflow_drops_to_the_next_keyframe() -> None:
    calls = Recorder()
    track = calls.track("video", capacity=3)
    track.activate()
    for label, key in [(b"K0", True), (b"d1", False), (b"d2", False), (b"d3", False), (b"d4", False), (b"K5", True), (b"d6", False)]:
        track.push(frame(label), key)
    assert await drain(track) == [b"K5", b"d6"]
    assert calls.dropped == 5 and calls.keyframe_requests == 2


async def test_keyframe_arriving_on_a_full_queue_restarts_it() -> None:
    calls = Recorder()
    track = calls.track("video", capacity=2)
    track.activate()
    for label, key in [(b"K0", True), (b"d1", False), (b"K2", True)]:
        track.push(frame(label), key)
    assert await drain(track) == [b"K2"]
    assert calls.dropped == 2 and calls.keyframe_requests == 1


async def test_audio_overflow_drops_the_oldest_frame() -> None:
    calls = Recorder()
    track = calls.track("audio", capacity=2)
    track.activate()
    for label in (b"a0", b"a1", b"a2"):
        track.push(frame(label), True)
    assert await drain(track) == [b"a1", b"a2"]
    assert calls.dropped == 1 and calls.keyframe_requests == 0


async def test_stop_wakes_a_waiting_sender() -> None:
    track = Recorder().track("video")
    track.activate()
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)  # let recv() start waiting
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiting


def test_keyframe_detection() -> None:
    assert is_keyframe("video/VP8", b"\x50\x00") and not is_keyframe("video/VP8", b"\x51\x00")
    idr = b"\x00\x00\x00\x01\x67\x42" + b"\x00\x00\x00\x01\x68\xce" + b"\x00\x00\x01\x65\x88"
    assert h264_nal_types(idr) == {7, 8, 5} and is_keyframe("video/H264", idr)
    assert not is_keyframe("video/H264", b"\x00\x00\x00\x01\x41\x9a")
    assert is_keyframe("audio/opus", b"\x01")


async def test_keyframe_requests_are_rate_limited_and_never_lost() -> None:
    sent: list[float] = []
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def send() -> bool:
        sent.append(loop.time())
        if len(sent) == 2:
            done.set()
        return True

    requester = KeyframeRequester(send, min_interval_s=0.2)
    for _ in range(10):
        requester.request()  # one now, the other nine folded into one at the interval's end
    async with asyncio.timeout(5):
        await done.wait()
    assert len(sent) == 2 and sent[1] - sent[0] >= 0.19
    await requester.close()
