"""One viewer's copy of a station's audio or video: a bounded queue of encoded frames.

The station's forwarder pushes each encoded frame (one shared ``av.Packet``) into every
viewer's track without awaiting anything, so one viewer can never delay another. aiortc's
``RTCRtpSender`` pulls from ``recv()`` in its own task and only packetizes (no encoder
runs for ``av.Packet`` input), giving each viewer its own SSRC, sequence numbers, RTP
timestamps, RTCP sender reports and NACK retransmission history.

Slow-viewer policy: at most ``capacity`` frames wait. When video overflows, the queue is
emptied and the viewer waits for the next keyframe (delta frames without their reference
would only decode as garbage), and the hub asks the publisher for one. When audio
overflows, the oldest frame goes: Opus frames decode independently.

States of a video track: ``inactive`` (viewer not connected yet: frames are not queued,
or the viewer would start with a burst of stale frames) → ``waiting`` (for a keyframe) →
``flowing``; an overflow or a new publisher goes back to ``waiting``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import av

from hub.media.aiortc_seams import MediaStreamError, MediaStreamTrack


class ViewerTrack(MediaStreamTrack):
    def __init__(
        self,
        kind: str,
        capacity: int,
        on_keyframe_needed: Callable[[], None],
        on_dropped: Callable[[int], None],
        on_sent: Callable[[int], None],
    ) -> None:
        super().__init__()
        self.kind = kind
        self._capacity = capacity
        self._on_keyframe_needed = on_keyframe_needed
        self._on_dropped = on_dropped
        self._on_sent = on_sent
        self._frames: deque[av.Packet] = deque()
        self._has_frames = asyncio.Event()
        self._active = False
        self._waiting_for_keyframe = kind == "video"
        self._overflowed = False  # waiting because this viewer was too slow: count what it misses

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._waiting_for_keyframe

    @property
    def queued(self) -> int:
        return len(self._frames)

    def activate(self) -> None:
        """The viewer is connected: start queueing (video from the next keyframe)."""
        if not self._active:
            self._active = True
            self.resync()

    def resync(self) -> None:
        """Drop what is queued and restart at the next keyframe (e.g. a new publisher)."""
        if self.kind != "video":
            return
        self._frames.clear()
        self._waiting_for_keyframe = True
        self._overflowed = False
        if self._active:
            self._on_keyframe_needed()

    def push(self, packet: av.Packet, keyframe: bool) -> None:
        """Queue one encoded frame; never blocks. Called by the station's forwarder."""
        if not self._active or self.readyState != "live":
            return
        if self._waiting_for_keyframe:
            if not keyframe:
                if self._overflowed:
                    self._on_dropped(1)
                return
            self._waiting_for_keyframe = self._overflowed = False
        if len(self._frames) >= self._capacity:
            if self.kind == "video":
                self._on_dropped(len(self._frames))
                self._frames.clear()
                if not keyframe:
                    self._waiting_for_keyframe = self._overflowed = True
                    self._on_dropped(1)
                    self._on_keyframe_needed()
                    return
            else:
                self._frames.popleft()
                self._on_dropped(1)
        self._frames.append(packet)
        self._has_frames.set()

    async def recv(self) -> av.Packet:
        while not self._frames:
            if self.readyState != "live":
                raise MediaStreamError
            self._has_frames.clear()
            await self._has_frames.wait()
        packet = self._frames.popleft()
        self._on_sent(packet.size)
        return packet

    def stop(self) -> None:
        self._frames.clear()
        super().stop()
        self._has_frames.set()  # wake recv() so the sender's loop ends
