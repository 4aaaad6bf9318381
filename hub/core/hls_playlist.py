"""HLS media playlists, low-latency and plain, from a station's segments and parts. Pure.

Theory of operation. A packager (``hub.media.hls_packager``) cuts a live station into
*segments* (≈ ``segment_s``, each starting at a keyframe where the publisher gave one) and
each segment into *parts* (≤ ``part_s``). A :class:`Window` holds the last few segments
(complete ones plus the one being built), and renders:

- the **low-latency** playlist (RFC 8216bis §4.4.3.7–4.4.5.2, Apple's LL-HLS): every
  segment, the parts of the last few, ``EXT-X-PRELOAD-HINT`` for the next part,
  ``EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES``. A client asks for a future state with
  ``_HLS_msn`` / ``_HLS_part``; :meth:`Window.blocking_state` says whether it exists yet,
  is worth waiting for, or is a bad request.
- the **plain** playlist: complete segments only, for players and caches that do not know
  LL-HLS or cannot key on a query string.

Media sequence numbers (MSN) start from the wall clock (``epoch // segment_s``), so a
packager that stopped and started again goes on with larger numbers rather than reusing
ones a cache may still hold; URIs carry the packager's run id for the same reason.
Every segment has its ``EXT-X-PROGRAM-DATE-TIME`` (the wall clock of its first frame's
arrival), which is what the watch page measures its delay against.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

PART_HOLD_BACK_PARTS = 3  # RFC 8216bis: PART-HOLD-BACK at least 3 × PART-TARGET
PARTS_LISTED_SEGMENTS = 3  # parts are listed for this many recent segments (and the open one)
MAX_MSN_AHEAD = 2  # a blocking request further ahead than this is a bad request (§6.2.5.2)


@dataclass(frozen=True, slots=True)
class Part:
    index: int
    duration_s: float
    independent: bool  # starts with a keyframe
    size: int


@dataclass(slots=True)
class Segment:
    msn: int
    init: int  # which init segment (EXT-X-MAP) its parts need
    program_time: float  # epoch seconds of its first frame
    discontinuity: bool  # its init or timeline does not follow the previous segment's
    parts: list[Part] = field(default_factory=list)
    complete: bool = False

    @property
    def duration_s(self) -> float:
        return sum(part.duration_s for part in self.parts)


class BlockingState(Enum):
    READY = "ready"
    WAIT = "wait"
    BAD = "bad"


@dataclass(frozen=True)
class Names:
    """The URIs a playlist names, relative to it; the packager's routes serve the same names."""

    run: str

    def init(self, init: int) -> str:
        return f"{self.run}/i{init}.mp4"

    def segment(self, msn: int) -> str:
        return f"{self.run}/s{msn}.m4s"

    def part(self, msn: int, index: int) -> str:
        return f"{self.run}/p{msn}.{index}.m4s"


def first_msn(epoch_s: float, segment_s: float) -> int:
    return int(epoch_s // segment_s)


class Window:
    """The segments a playlist lists: ``keep`` complete ones and the one being built."""

    def __init__(self, names: Names, segment_s: float, part_s: float, keep: int) -> None:
        self.names = names
        self.segment_s = segment_s
        self.part_s = part_s
        self.keep = keep
        # EXT-X-TARGETDURATION: a segment is cut at the latest at segment_s + half a second,
        # which rounds to this (RFC 8216 §4.4.3.1: rounded durations ≤ target)
        self.target_duration = max(1, math.ceil(segment_s))
        self.segments: deque[Segment] = deque()
        self.discontinuity_sequence = 0
        self.version = 0  # bumps on every change (the playlists' ETag)

    # --- changes (the packager) ------------------------------------------------------

    def open_segment(self, msn: int, init: int, program_time: float, discontinuity: bool) -> Segment:
        if self.segments and not self.segments[-1].complete:
            raise ValueError("the open segment must be closed first")
        segment = Segment(msn, init, program_time, discontinuity)
        self.segments.append(segment)
        while len(self.segments) > self.keep + 1:
            if self.segments.popleft().discontinuity:
                self.discontinuity_sequence += 1  # its tag leaves the playlist (RFC 8216 §4.4.3.3)
        self.version += 1
        return segment

    def add_part(self, duration_s: float, independent: bool, size: int) -> Part:
        segment = self.open
        if segment is None:
            raise ValueError("no open segment")
        part = Part(len(segment.parts), duration_s, independent, size)
        segment.parts.append(part)
        self.version += 1
        return part

    def close_segment(self) -> None:
        segment = self.open
        if segment is not None:
            segment.complete = True
            self.version += 1

    # --- questions (the routes) --------------------------------------------------------

    @property
    def open(self) -> Segment | None:
        if self.segments and not self.segments[-1].complete:
            return self.segments[-1]
        return None

    @property
    def has_media(self) -> bool:
        return any(segment.parts for segment in self.segments)

    def find(self, msn: int) -> Segment | None:
        if not self.segments:
            return None
        index = msn - self.segments[0].msn
        if 0 <= index < len(self.segments):
            segment = self.segments[index]
            return segment if segment.msn == msn else None
        return None

    def next_part(self) -> tuple[int, int]:
        """(msn, part index) of the part being built: the preload hint."""
        segment = self.segments[-1]
        if segment.complete:
            return segment.msn + 1, 0
        return segment.msn, len(segment.parts)

    def blocking_state(self, msn: int, part: int | None) -> BlockingState:
        """Does the playlist hold segment ``msn`` (complete) or its part ``part`` yet?

        A part index past the end of a segment that completed is answered by the next
        segment's first part (the state a client asking for it wants to see).
        """
        if not self.segments:
            return BlockingState.WAIT
        if msn < 0 or (part is not None and part < 0) or msn > self.segments[-1].msn + MAX_MSN_AHEAD:
            return BlockingState.BAD
        if msn < self.segments[0].msn:
            return BlockingState.READY  # long gone: the current playlist is the answer
        segment = self.find(msn)
        if segment is None:
            return BlockingState.WAIT
        if part is None:
            return BlockingState.READY if segment.complete else BlockingState.WAIT
        if part < len(segment.parts):
            return BlockingState.READY
        following = self.find(msn + 1) if segment.complete else None
        return BlockingState.READY if following is not None and following.parts else BlockingState.WAIT

    # --- rendering ---------------------------------------------------------------------

    def render(self, low_latency: bool) -> str:
        lines = ["#EXTM3U", "#EXT-X-VERSION:9" if low_latency else "#EXT-X-VERSION:6",
                 f"#EXT-X-TARGETDURATION:{self.target_duration}"]
        segments = [s for s in self.segments if low_latency or s.complete]
        if low_latency:
            hold_back = PART_HOLD_BACK_PARTS * self.part_s
            lines.append(f"#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={hold_back:.3f}")
            lines.append(f"#EXT-X-PART-INF:PART-TARGET={self.part_s:.3f}")
        first = segments[0].msn if segments else (self.segments[-1].msn if self.segments else 0)
        lines.append(f"#EXT-X-MEDIA-SEQUENCE:{first}")
        if self.discontinuity_sequence:
            lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{self.discontinuity_sequence}")
        complete = [s for s in segments if s.complete]
        with_parts = {s.msn for s in complete[-PARTS_LISTED_SEGMENTS:]}
        init: int | None = None
        for segment in segments:
            if not segment.parts:
                continue
            if segment.discontinuity:
                lines.append("#EXT-X-DISCONTINUITY")
            if segment.init != init:
                init = segment.init
                lines.append(f'#EXT-X-MAP:URI="{self.names.init(init)}"')
            lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{program_date_time(segment.program_time)}")
            if low_latency and (segment.msn in with_parts or not segment.complete):
                for part in segment.parts:
                    independent = ",INDEPENDENT=YES" if part.independent else ""
                    lines.append(f'#EXT-X-PART:DURATION={part.duration_s:.3f},'
                                 f'URI="{self.names.part(segment.msn, part.index)}"{independent}')
            if segment.complete:
                lines.append(f"#EXTINF:{segment.duration_s:.3f},")
                lines.append(self.names.segment(segment.msn))
        if low_latency and self.segments:
            msn, index = self.next_part()
            lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="{self.names.part(msn, index)}"')
        return "\n".join(lines) + "\n"


def program_date_time(epoch_s: float) -> str:
    """ISO 8601 in UTC with milliseconds, as EXT-X-PROGRAM-DATE-TIME wants it."""
    moment = dt.datetime.fromtimestamp(epoch_s, dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
