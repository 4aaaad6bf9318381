"""What a field scenario's samples mean, as pure functions (no I/O; times are monotonic seconds).

- **Station polls**: ``(t, state, media)`` every 0.5 s from ``GET /api/v1/stations/{id}``.
  The live fraction is the share of polls in the window that said ``live``; ``media`` fractions
  likewise, over the polls that carried a ``media`` field (hubs without one report nothing).
- **Viewer frames**: the time of every decoded video frame. Median fps is over 1 s bins of the
  window; "worst 5 s" is the fewest frames in any of the window's consecutive 5 s slices, per
  second; the longest freeze is the longest stretch without a decoded frame, counting from the
  window's start to the first frame and from the last frame to its end.
- **Recovery**: the first poll saying ``live`` (or the first frame) at or after a moment.
- **Ledger gaps**: the on-intervals (``online``/``live``) merged when they touch or are less than
  ``contiguous_s`` apart (as ``hub.core.attendance`` merges them); each merged period that ends
  inside a window is one gap.
"""

from __future__ import annotations

import bisect
import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any


def live_fraction(polls: Sequence[tuple[float, str, str | None]], start: float, end: float) -> float | None:
    states = [state for t, state, _ in polls if start <= t < end]
    return sum(state == "live" for state in states) / len(states) if states else None


def media_fractions(polls: Sequence[tuple[float, str, str | None]], start: float, end: float) -> dict[str, float]:
    """Share of the window's polls per ``media`` value (``""`` shown as ``none``); empty when the
    hub's station objects carry no ``media``."""
    values = [media for t, _, media in polls if start <= t < end and media is not None]
    if not values:
        return {}
    counts = Counter(value or "none" for value in values)
    return {name: count / len(values) for name, count in sorted(counts.items())}


def fps_bins(frames: Sequence[float], start: float, end: float, width: float) -> list[float]:
    """Frames per second in consecutive ``width``-second slices of [start, end) (a partial last
    slice is left out)."""
    ordered = sorted(frames)
    out = []
    edge = start
    while edge + width <= end + 1e-9:
        count = bisect.bisect_left(ordered, edge + width) - bisect.bisect_left(ordered, edge)
        out.append(count / width)
        edge += width
    return out


def longest_freeze(frames: Sequence[float], start: float, end: float) -> float:
    inside = sorted(t for t in frames if start <= t < end)
    edges = [start, *inside, end]
    return max(b - a for a, b in zip(edges, edges[1:], strict=False))


def viewer_summary(frames: Sequence[float], start: float, end: float) -> dict[str, Any]:
    per_second = fps_bins(frames, start, end, 1.0)
    per_five = fps_bins(frames, start, end, 5.0)
    return {"median_fps": statistics.median(per_second) if per_second else None,
            "worst_5s_fps": min(per_five) if per_five else None,
            "longest_freeze_s": longest_freeze(frames, start, end),
            "frames": sum(1 for t in frames if start <= t < end)}


def first_at_or_after(times: Sequence[float], moment: float) -> float | None:
    ordered = sorted(times)
    index = bisect.bisect_left(ordered, moment)
    return ordered[index] if index < len(ordered) else None


def first_live_after(polls: Sequence[tuple[float, str, str | None]], moment: float,
                     media: str | None = None) -> float | None:
    """The first poll at or after ``moment`` saying ``live`` (and, if given, that ``media``)."""
    for t, state, polled_media in polls:
        if t >= moment and state == "live" and (media is None or polled_media in (None, media)):
            return t
    return None


def video_back_after(frames: Sequence[float], moment: float, fps: float, span: float = 2.0) -> float | None:
    """When video is "back" after ``moment``: the end of the first ``span``-second stretch (sliding
    frame by frame) holding at least ``fps`` × ``span`` frames."""
    ordered = [t for t in sorted(frames) if t >= moment]
    need = max(1, round(fps * span))
    for i in range(need - 1, len(ordered)):
        if ordered[i] - ordered[i - need + 1] <= span:
            return ordered[i]
    return None


def ledger_gaps(intervals: Sequence[tuple[str, float, float | None]], start: float, end: float,
                contiguous_s: float = 1.0) -> int:
    """On-periods (``online``/``live`` intervals ``(state, start, end)``, ``end`` None while
    open, merged) that end inside [start, end): each is a hole in the station's attendance, as
    the daily row's ``interruptions`` counts them (wall-clock times, as the ledger keeps them)."""
    on = sorted((s, e if e is not None else float("inf")) for state, s, e in intervals if state in ("online", "live"))
    merged: list[list[float]] = []
    for s, e in on:
        if merged and s <= merged[-1][1] + contiguous_s:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    return sum(1 for _, period_end in merged if start <= period_end < end)
