"""A kind's RTP timestamps on the arrival clock: the recorder's and the HLS packager's timeline. Pure."""

from __future__ import annotations

REANCHOR_S = 3.0  # an RTP clock further than this from the arrival clock is not trusted


class MediaTimeline:
    """One kind's RTP timestamps → seconds on the arrival clock (since a recording or
    packaging started): RTP-timed within one publisher, re-anchored at arrival after a
    change or when the RTP clock strays more than ``REANCHOR_S`` from the arrival clock."""

    __slots__ = ("_anchor_ext", "_anchor_s", "_ext", "_last_s", "_rate", "_step_s")

    def __init__(self, rate: int, step_s: float) -> None:
        self._rate = rate
        # a new anchor is at least this after the last frame (the old publisher's RTP-timed
        # frames may run ahead of the arrival clock): about one frame, not one tick, so
        # players that map times onto a frame rate do not see two frames at one time
        self._step_s = step_s
        self._ext: int | None = None  # the last timestamp, extended past 32 bits
        self._anchor_ext = 0
        self._anchor_s = 0.0
        self._last_s = -1.0

    def reanchor(self) -> None:
        self._ext = None

    def time_s(self, ts: int, arrival_s: float) -> float:
        ext = self._ext
        if ext is not None:
            delta = (ts - ext) & 0xFFFFFFFF
            ext = ext + delta if delta < 0x80000000 else ext - (0x100000000 - delta)
            time_s = self._anchor_s + (ext - self._anchor_ext) / self._rate
            if abs(time_s - arrival_s) <= REANCHOR_S:
                self._ext = ext
                self._last_s = max(self._last_s, time_s)
                return time_s
        # first frame, a new publisher, or a clock not to be trusted: the arrival time
        # (never before what was written, the muxer would refuse it)
        self._ext = self._anchor_ext = ts
        self._anchor_s = max(arrival_s, self._last_s + self._step_s)
        self._last_s = self._anchor_s
        return self._anchor_s
