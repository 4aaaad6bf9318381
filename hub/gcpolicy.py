"""Garbage collection that does not stop the media for long.

CPython's full collection (generation 2) walks every tracked object while it holds the GIL.
A hub relaying a Jember day holds about a million of them (each peer connection is over a
thousand: aiortc's transports, codecs, tasks), so each full collection stopped the event loop
for 0.2-0.5 s (docs/benchmarks.md, "A Jember day", fifth step). The one media UDP port's receive
buffer holds a fraction of a second of 303 publishers' packets: the kernel dropped what came
meanwhile, the hub NACKed it, the publishers resent into the same full buffer.

The policy: the survivors of every full collection are frozen (``gc.freeze``: moved to the
permanent generation, which no collection walks), so the next full collection walks only what
was promoted since: milliseconds, not half a second. Objects that die by reference count are
freed as before, frozen or not; what a freeze keeps is *cyclic* garbage that was alive when
frozen (a session that ended later). That is reclaimed by a thaw (``gc.unfreeze`` and one full
collection) when no station publishes, so no media waits behind the pause (the office day is
08:00-15:00; the evening is idle, whoever still watches), or, as a bound on what a long busy
stretch can keep, once the Python heap has grown past ``thaw_blocks`` and twice its size
after the last thaw.

Plain logic: the collector and the clock are passed in (:class:`RealCollector` and the loop's
clock in the hub, fakes in tests); :func:`run_on_beat` is the I/O edge, one tick a second on the
hub's beat (no wake-up of its own).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from hub.beat import SECOND_BEAT_S, sleep_to_beat

logger = logging.getLogger(__name__)

OLDEST = 2  # CPython's generations: 0, 1, 2
IDLE_THAW_GAP_S = 60.0  # at most one thaw a minute while idle (sessions that come and go)


class Collector(Protocol):
    """What the policy uses of the ``gc`` and ``sys`` modules. ``get_freeze_count`` walks the
    whole permanent generation (≈ 15 ms a million objects), so it is read only at start and
    after a thaw; the heap's size between them is ``sys.getallocatedblocks`` (a walk over
    arenas: ≈ 0.3 ms for six million blocks), read only after a freeze."""

    def get_stats(self) -> list[dict[str, Any]]: ...
    def collect(self, generation: int = 2) -> int: ...
    def freeze(self) -> None: ...
    def unfreeze(self) -> None: ...
    def get_freeze_count(self) -> int: ...
    def heap_blocks(self) -> int: ...


class RealCollector:
    """The interpreter's own collector."""

    get_stats = staticmethod(gc.get_stats)
    collect = staticmethod(gc.collect)
    freeze = staticmethod(gc.freeze)
    unfreeze = staticmethod(gc.unfreeze)
    get_freeze_count = staticmethod(gc.get_freeze_count)
    heap_blocks = staticmethod(sys.getallocatedblocks)


class FreezeSurvivors:
    """Freezes the survivors of CPython's full collections; thaws when idle or past a bound.

    ``idle()`` says no station publishes (a pause would hold up no media). ``tick`` is called
    once a second and costs a look at the collector's counters (and ``idle()``) unless it has
    work; it returns what it did (``"freeze"``, ``"thaw"`` or None) for the log and the tests.
    ``thaw_blocks`` bounds the Python heap (``sys.getallocatedblocks``) while busy.
    """

    def __init__(self, collector: Collector, idle: Callable[[], bool], clock: Callable[[], float],
                 thaw_blocks: int) -> None:
        self.collector = collector
        self.idle = idle
        self.clock = clock
        self.thaw_blocks = thaw_blocks
        self.freezes = 0
        self.thaws = 0
        self.frozen_after_thaw = 0  # objects frozen right after start or the last thaw
        self._full_seen = 0  # CPython's count of full collections, as of our last look
        self._blocks_after_thaw = 0  # the heap then: what the busy bound doubles
        self._frozen_since_thaw = False
        self._last_thaw = -IDLE_THAW_GAP_S

    def start(self) -> None:
        """Once the hub is up: collect, then freeze what start-up built (modules, the registry)."""
        self.collector.collect()
        self.collector.freeze()
        self._settled()

    def tick(self) -> str | None:
        if self._frozen_since_thaw and self.idle() and self.clock() - self._last_thaw >= IDLE_THAW_GAP_S:
            self._thaw()
            return "thaw"
        if self.full_collections() == self._full_seen:
            return None
        self._freeze()
        if self.collector.heap_blocks() > max(self.thaw_blocks, 2 * self._blocks_after_thaw):
            self._thaw()
            return "thaw"
        return "freeze"

    def full_collections(self) -> int:
        return full_collections(self.collector)

    def _freeze(self) -> None:
        # Young survivors first into the oldest generation, so that what is frozen is what
        # a collection found alive (a young cycle that is already garbage is not kept).
        self.collector.collect(1)
        self.collector.freeze()
        self._full_seen = self.full_collections()
        self._frozen_since_thaw = True
        self.freezes += 1

    def _thaw(self) -> None:
        reason = "idle" if self.idle() else "past the bound"
        self.collector.unfreeze()
        started = time.perf_counter()
        collected = self.collector.collect()
        took = time.perf_counter() - started
        self.collector.freeze()
        self._settled()
        self._frozen_since_thaw = False
        self._last_thaw = self.clock()
        self.thaws += 1
        logger.info("gc thaw (%s): %d objects collected in %.3f s, %d frozen", reason, collected, took,
                    self.frozen_after_thaw)

    def _settled(self) -> None:
        self.frozen_after_thaw = self.collector.get_freeze_count()
        self._blocks_after_thaw = self.collector.heap_blocks()
        self._full_seen = self.full_collections()


def full_collections(collector: Collector) -> int:
    """CPython's count of full collections so far (its own and ours)."""
    return int(collector.get_stats()[OLDEST]["collections"])


class PauseClock:
    """The longest full collection seen, from ``gc.callbacks`` (called by CPython around every
    collection, in whichever thread triggered it; only generation 2 is timed)."""

    def __init__(self) -> None:
        self.longest_s = 0.0
        self.last_s = 0.0
        self.total_s = 0.0
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != OLDEST:
            return
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.last_s = time.perf_counter() - self._started
            self.longest_s = max(self.longest_s, self.last_s)
            self.total_s += self.last_s
            self._started = None


async def run_on_beat(policy: FreezeSurvivors) -> None:
    """Tick the policy on the hub's once-a-second beat until cancelled."""
    policy.start()
    while True:
        await sleep_to_beat(SECOND_BEAT_S)
        policy.tick()


def install(idle: Callable[[], bool], thaw_blocks: int, freeze: bool) -> tuple[FreezeSurvivors | None, PauseClock]:
    """The process's pause clock, and its policy on the real collector unless ``freeze`` is
    off (``hub serve`` only: both are the whole process's, so tests that run hubs in-process
    do not install them)."""
    pauses = PauseClock()
    gc.callbacks.append(pauses)
    if not freeze:
        return None, pauses
    loop = asyncio.get_running_loop()
    return FreezeSurvivors(RealCollector(), idle, loop.time, thaw_blocks), pauses


def gauges(policy: FreezeSurvivors | None, pauses: PauseClock) -> dict[str, float]:
    """For ``/metrics`` (``jaga_gc``); nothing here walks the heap."""
    collector = RealCollector()
    figures = {"full_collections": float(full_collections(collector)),
               "heap_blocks": float(collector.heap_blocks()),
               "longest_full_collection_seconds": pauses.longest_s,
               "last_full_collection_seconds": pauses.last_s,
               "full_collection_seconds": pauses.total_s}
    if policy is not None:
        figures.update(freezes=policy.freezes, thaws=policy.thaws, frozen_after_thaw=policy.frozen_after_thaw)
    return figures
