"""When to record, what to keep, when the disk is too full: the recordings' rules, no I/O.

Theory of operation
-------------------
Whether a station is being recorded follows from facts the hub observes (docs/recordings.md):

* ``activity`` — the station's running kegiatan (title, since), or None;
* ``live`` — its publisher's stream is on this node;
* ``override`` — an operator's *Rekam* (True) or stop (False), or None; it lasts until the
  station's activity next starts or stops;
* ``disk_low`` — the recordings' disk is below its floor (:class:`DiskFloor`).

    wanted  = enabled and (override if override is not None
                           else activity is not None and kind in kinds)
    writing = wanted and live and not disk_low

:func:`decide` compares that with what the service holds for the station (an open recording,
whether a part is being written, since when its publisher is away) and names one
:class:`Action`. A recording belongs to one activity (its ``key``: the activity's title and
``since``, or None for an operator's recording without an activity): another key finishes it
and starts a new one. A publisher away closes the part but keeps the recording open; back
within ``resume_s`` it continues in a new part, later the recording is finished. A low disk
closes the part too, and the recording waits for the disk (or the activity's end) however long.

After a hub restart the index holds recordings left open; :func:`may_resume` says whether one
continues when its station announces an activity again: same title, within ``resume_s`` of
when its last part was written (the new ``since`` is the restarted hub's, so only the title
and the time can match).

Retention (:func:`expired`) and the disk floor (:class:`DiskFloor`) are separate rules the
service applies on its timer. Time never advances by itself: every function takes ``now``.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

DAY_S = 86_400.0
FINISHED_STATES = ("done", "failed")
# The floor lifts once free space is this much above it: a disk hovering at the floor must
# not start and stop recordings (and write a new part) every tick.
RESUME_MARGIN = 0.10


@dataclass(frozen=True)
class ActivityKey:
    """Which activity a recording belongs to; ``since`` is the hub's clock at its start."""

    title: str
    since: float


@dataclass(frozen=True)
class StationFacts:
    kind: str
    activity: ActivityKey | None
    live: bool
    override: bool | None = None


@dataclass(frozen=True)
class Held:
    """What the service holds for one station: an open recording (of ``key``), whether a part
    is being written, and since when its publisher has been away (None: not away)."""

    key: ActivityKey | None
    writing: bool
    away_since: float | None = None


class Action(enum.Enum):
    NONE = "none"
    START = "start"  # open a recording and its first part
    NEW_PART = "new_part"  # the open recording continues in a new part
    PAUSE = "pause"  # close the part; the recording stays open
    FINISH = "finish"  # close the part (if any) and finish the recording
    RESTART = "restart"  # finish the open recording, then START one for the new activity


def wanted(facts: StationFacts, kinds: Iterable[str], enabled: bool = True) -> bool:
    """Whether the station should have a recording (whether or not media is flowing)."""
    if not enabled:
        return False
    if facts.override is not None:
        return facts.override
    return facts.activity is not None and facts.kind in kinds


def decide(facts: StationFacts, held: Held | None, *, kinds: Iterable[str], enabled: bool, disk_low: bool,
           now: float, resume_s: float) -> Action:
    want = wanted(facts, kinds, enabled)
    can_write = facts.live and not disk_low
    if held is None:
        return Action.START if want and can_write else Action.NONE
    if not want:
        return Action.FINISH
    if held.key != facts.activity and facts.activity is not None:
        return Action.RESTART if can_write else Action.FINISH
    if held.writing:
        return Action.NONE if can_write else Action.PAUSE
    if can_write:
        return Action.NEW_PART
    if not disk_low and held.away_since is not None and now - held.away_since > resume_s:
        return Action.FINISH  # the publisher did not come back in time
    return Action.NONE


def may_resume(left_title: str, last_written: float, title: str, now: float, resume_s: float) -> bool:
    """A recording a previous hub process left open continues for this activity start."""
    return left_title == title and 0 <= now - last_written <= resume_s


@dataclass(frozen=True)
class Kept:
    """A recording as retention sees it."""

    id: str
    start: float
    bytes: int
    finished: bool


def expired(oldest: Sequence[Kept], now: float, retention_days: float, max_bytes: int,
            total_bytes: int | None = None) -> list[str]:
    """Ids to delete, oldest first: finished recordings older than ``retention_days``, then
    more of the oldest finished ones while the total exceeds ``max_bytes`` (0: no limit).
    Open recordings are never deleted (nor counted out). ``oldest`` may be the oldest few of
    many: ``total_bytes`` is then the total of all of them (default: the sum of ``oldest``)."""
    cutoff = now - retention_days * DAY_S
    total = sum(r.bytes for r in oldest) if total_bytes is None else total_bytes
    chosen: list[str] = []
    for r in sorted(oldest, key=lambda r: (r.start, r.id)):
        if not r.finished:
            continue
        if r.start < cutoff or (max_bytes > 0 and total > max_bytes):
            chosen.append(r.id)
            total -= r.bytes
    return chosen


class FloorChange(enum.Enum):
    NONE = "none"
    LOW = "low"  # free space fell below the floor: stop recording, raise the alarm
    RECOVERED = "recovered"  # back above floor + margin: recording may resume


class DiskFloor:
    """Free space against ``min_free_bytes``, with hysteresis (:data:`RESUME_MARGIN`)."""

    def __init__(self, min_free_bytes: int) -> None:
        self.min_free_bytes = min_free_bytes
        self.low = False
        self.since = 0.0
        self.free_bytes: int | None = None

    @property
    def resume_bytes(self) -> int:
        return int(self.min_free_bytes * (1 + RESUME_MARGIN))

    def observe(self, free_bytes: int, now: float) -> FloorChange:
        self.free_bytes = free_bytes
        if not self.low and free_bytes < self.min_free_bytes:
            self.low, self.since = True, now
            return FloorChange.LOW
        if self.low and free_bytes >= self.resume_bytes:
            self.low, self.since = False, now
            return FloorChange.RECOVERED
        return FloorChange.NONE
