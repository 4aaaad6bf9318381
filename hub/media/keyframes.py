"""Recognising keyframes (in RTP payloads and in encoded frames), and asking publishers
for them sparingly.

A viewer can only start decoding at a keyframe, so the relay holds back every packet from
a new (or resynchronising) viewer until the first packet of a keyframe, and asks the
publisher for one. Many viewers
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
H264_STAP_A = 24
H264_FU_A = 28


def is_keyframe(mime_type: str, data: bytes) -> bool:
    """True if this encoded video frame can be decoded on its own. Audio: always True."""
    mime = mime_type.lower()
    if mime == "video/vp8":
        # RFC 6386 §9.1: bit 0 of the first byte is 0 for a key frame.
        return bool(data) and data[0] & 0x01 == 0
    if mime == "video/h264":
        return H264_NAL_IDR in h264_nal_types(data)
    return not mime.startswith("video/")


def starts_keyframe(mime_type: str, payload: bytes) -> bool:
    """True if this RTP payload is the first packet of a keyframe: where a viewer can start.

    VP8 (RFC 7741 §4.2-4.3): the payload descriptor's S bit is set with partition index 0,
    and bit 0 (P) of the VP8 payload header that follows it is 0. H.264 (RFC 6184): a
    single NAL unit that is an SPS or IDR slice, a STAP-A aggregating one, or the first
    fragment (FU-A with S set) of an IDR slice. Audio: every packet. ``mime_type`` is
    lower case. Never raises on a short or malformed payload (answers False).
    """
    if mime_type == "video/vp8":
        return _vp8_starts_keyframe(payload)
    if mime_type == "video/h264":
        return _h264_starts_keyframe(payload)
    return not mime_type.startswith("video/")


def vp8_descriptor_size(payload: bytes) -> int:
    """The length of a VP8 RTP payload descriptor (RFC 7741 §4.2); the VP8 data follows it.
    Raises ValueError if the payload holds no data after it (truncated or malformed)."""
    size = len(payload)
    position = 1
    if size and payload[0] & 0x80:  # X: extension byte I L T K
        if size < 2:
            raise ValueError("VP8 descriptor truncated")
        extension = payload[1]
        position = 2
        if extension & 0x80:  # I: picture id, 7 or 15 bits
            if position >= size:
                raise ValueError("VP8 descriptor truncated")
            position += 2 if payload[position] & 0x80 else 1
        if extension & 0x40:  # L: TL0PICIDX
            position += 1
        if extension & 0x30:  # T or K: TID / KEYIDX byte
            position += 1
    if position >= size:
        raise ValueError("VP8 payload without data")
    return position


def _vp8_starts_keyframe(payload: bytes) -> bool:
    if len(payload) < 2 or payload[0] & 0x17 != 0x10:  # S must be 1 and PID 0
        return False
    try:
        return payload[vp8_descriptor_size(payload)] & 0x01 == 0
    except ValueError:
        return False


def _h264_starts_keyframe(payload: bytes) -> bool:
    if not payload:
        return False
    nal_type = payload[0] & 0x1F
    if nal_type in (H264_NAL_IDR, H264_NAL_SPS):
        return True
    if nal_type == H264_FU_A:
        return len(payload) > 1 and payload[1] & 0x80 != 0 and payload[1] & 0x1F == H264_NAL_IDR
    if nal_type == H264_STAP_A:
        position = 1
        while position + 2 < len(payload):
            size = (payload[position] << 8) | payload[position + 1]
            if payload[position + 2] & 0x1F in (H264_NAL_IDR, H264_NAL_SPS):
                return True
            position += 2 + size
    return False


def h264_nal_types(data: bytes) -> set[int]:
    """NAL unit types in an Annex B access unit (aiortc's depayloader writes Annex B)."""
    types: set[int] = set()
    position = data.find(b"\x00\x00\x01")
    while position != -1 and position + 3 < len(data):
        types.add(data[position + 3] & 0x1F)
        position = data.find(b"\x00\x00\x01", position + 3)
    return types


JOIN_MIN_INTERVAL_S = 0.1  # the shortest gap between requests made for joining viewers


class KeyframeRequester:
    """At most one keyframe request per ``min_interval_s``, none dropped.

    One exception keeps join storms fast without opening a door to floods: a request made by
    the hub itself for a joining viewer (``urgent``) may go after only ``JOIN_MIN_INTERVAL_S``
    once the previous request was answered (a keyframe arrived since; see :meth:`answered`).
    Viewers' own PLI/FIR never take that path.

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
        self._answered_at = -float("inf")
        self._deferred: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def request(self, urgent: bool = False) -> None:
        """Ask for a keyframe now, or as soon as the rate limit allows."""
        if self._closed:
            return
        now = self._clock()
        if urgent and self._answered_at >= self._last_sent and now - self._last_sent >= JOIN_MIN_INTERVAL_S:
            if self._deferred is not None:
                self._deferred.cancel()
            self._fire()
            return
        if self._deferred is not None:
            return  # a request is already scheduled for the end of the interval
        wait = self._last_sent + self._min_interval_s - now
        if wait <= 0:
            self._fire()
        else:
            self._deferred = asyncio.get_running_loop().call_later(wait, self._fire)

    def answered(self) -> None:
        """A keyframe arrived from the publisher: the last request is satisfied."""
        self._answered_at = self._clock()

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
