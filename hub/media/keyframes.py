"""Recognising keyframes in encoded frames, and asking publishers for them sparingly.

A viewer can only start decoding at a keyframe, so the relay holds back delta frames from
a new (or resynchronising) viewer and asks the publisher for a keyframe. Many viewers
joining at once, or a viewer spamming PLIs, must not make the publisher send a keyframe
per request: ``KeyframeRequester`` sends at most one request per interval, and a request
that arrives inside the interval is not lost but folded into one sent when it ends.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

H264_NAL_IDR = 5
H264_NAL_SPS = 7


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """True if this encoded video frame can be decoded on its own. Audio: always True."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        # RFC 6386 §9.1: bit 0 of the first byte is 0 for a key frame.
        return bool(data) and data[0] & 0x01 == 0
    if mime == "video/h264":
        return H264_NAL_IDR in h264_nal_types(data)
    return not mime.startswith("video/")


def h264_nal_types(data: bytes) -> set[int]:
    """NAL unit types in an Annex B access unit (aiortc's depayloader writes Annex B)."""
    types: set[int] = set()
    position = data.find(b"\x00\x00\x01")
    while position != -1 and position + 3 < len(data):
        types.add(data[position + 3] & 0x1F)
        position = data.find(b"\x00\x00\x01", position + 3)
    return types


class KeyframeRequester:
    """At most one keyframe request per ``min_interval_s``, none dropped.

    ``send`` is the coroutine that actually asks the publisher (a PLI); it runs as a task
    this object owns. Call ``close`` when the publisher goes away.
    """

    def __init__(
        self,
        send: Callable[[], Awaitable[bool]],
        min_interval_s: float,
        on_sent: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self._min_interval_s = min_interval_s
        self._on_sent = on_sent
        self._clock = clock
        self._last_sent = -float("inf")
        self._deferred: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def request(self) -> None:
        """Ask for a keyframe now, or as soon as the rate limit allows."""
        if self._closed or self._deferred is not None:
            return  # closed, or a request is already scheduled for the end of the interval
        wait = self._last_sent + self._min_interval_s - self._clock()
        if wait <= 0:
            self._fire()
        else:
            self._deferred = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._deferred = None
        if self._closed:
            return
        self._last_sent = self._clock()
        task = asyncio.get_running_loop().create_task(self._send_once())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_once(self) -> None:
        try:
            if await self._send():
                self._on_sent()
        except (ConnectionError, OSError):
            pass  # the publisher's transport is going away; its session ends elsewhere

    async def close(self) -> None:
        self._closed = True
        if self._deferred is not None:
            self._deferred.cancel()
            self._deferred = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
