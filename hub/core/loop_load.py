"""How busy the hub's one event loop is: a node's capacity signal (docs/operations.md,
"Capacity").

Everything a node does — every publisher's and viewer's packets, presence, HTTP — runs on one
event loop. When it is busy most of the time, the media socket's receive buffer fills during
its busy spells and the kernel drops what arrives (``udp_port_kernel_drops``: every publisher's
picture suffers, and new public viewers are refused). The loop thread's CPU time shows how
close that is (its rate is the share of a core the loop uses: the capacity figure); how late
the hub's once-a-second beat wakes shows what held the loop up (its thread waiting for a CPU,
a long collection, a burst of joins) — a loop simply full of packets still runs its beat
within ~70 ms of due, so the lag alone does not show it full (docs/benchmarks.md, "A Jember
day", twelfth step).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable


class BeatLag:
    """The longest lateness of the beat over the last ``window_s``: one reading per beat, so
    a loop blocked for seconds shows as one late beat, which stays in view for the window."""

    __slots__ = ("_recent",)

    def __init__(self, period_s: float, window_s: float = 60.0) -> None:
        self._recent: deque[float] = deque(maxlen=max(1, math.ceil(window_s / period_s)))

    def note(self, late_s: float) -> None:
        self._recent.append(max(0.0, late_s))

    def longest_s(self) -> float:
        return max(self._recent, default=0.0)


def thread_cpu_clock() -> Callable[[], float]:
    """The calling thread's CPU seconds, readable from any thread (a scrape may be answered on
    a worker thread): call it on the loop's thread."""
    clock_id = time.pthread_getcpuclockid(threading.get_ident())
    return lambda: time.clock_gettime(clock_id)
