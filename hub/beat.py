"""The hub's beat: periodic work on whole multiples of its period on the loop's clock.

A wake-up of an idle Python process is not free: on the virtual machines the hub runs on,
each costs ~100-200 µs of CPU whatever it then does (docs/benchmarks.md, section 4). Timers
that each draw their own phase (uvicorn's tick, aiortc's RTCP loops, one per receiver and
sender) wake the process once each; timers due at the same multiple of a common period
fire in one turn of the loop, so every periodic job here is scheduled on the beat:
``next_beat`` of the loop's clock, never ``now + period``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

# The period of the hub's once-a-second jobs (uvicorn's tick, receiver reports, consent
# checks): one value, so that they come due together.
SECOND_BEAT_S = 1.0


def next_beat(now: float, period: float) -> float:
    """The first multiple of ``period`` after ``now``: timers with the same period that
    sleep to it wake together, in one turn of the loop."""
    return (math.floor(now / period) + 1) * period


async def sleep_to_beat(period: float) -> float:
    """Sleep until the loop's clock reaches the next multiple of ``period``; returns how late
    it woke (seconds): how long the loop was busy with other work when the beat came due."""
    loop = asyncio.get_running_loop()
    now = loop.time()
    due = next_beat(now, period)
    await asyncio.sleep(due - now)
    return loop.time() - due


def call_on_beat(period: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
    """Call ``callback`` (once) on the next multiple of ``period`` of the running loop's clock."""
    loop = asyncio.get_running_loop()
    return loop.call_at(next_beat(loop.time(), period), callback)


class BeatTimer:
    """Calls ``tick`` on the beat of ``period`` while ``busy()`` says there is work, from
    the first ``wake`` on; ``close`` stops it for good (a shutdown). One of these serves
    every member of a job (every viewer's sender reports, every publisher's receiver
    reports): one wake-up per period for all of them, shared with the hub's other timers."""

    def __init__(self, period: float, tick: Callable[[], object], busy: Callable[[], bool]) -> None:
        self.period = period
        self._tick = tick
        self._busy = busy
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    def wake(self) -> None:
        """Work arrived: tick on the next beat (if not already due to)."""
        if self._timer is None and not self._closed:
            self._timer = call_on_beat(self.period, self._run)

    def _run(self) -> None:
        self._timer = None
        self._tick()
        if self._busy():
            self.wake()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
