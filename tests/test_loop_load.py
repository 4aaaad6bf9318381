"""The event loop's load in /metrics (hub/core/loop_load.py): the loop thread's CPU seconds
and how late the once-a-second beat woke, what tells an operator a node is near full."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from hub.beat import sleep_to_beat
from hub.core.loop_load import BeatLag, thread_cpu_clock
from tests.kit import hub_settings, start_hub, stop_hub, wait_until

SCRAPER = {"Authorization": "Bearer scraper"}


def test_beat_lag_is_the_longest_of_the_last_window() -> None:
    lag = BeatLag(period_s=1.0, window_s=3.0)
    assert lag.longest_s() == 0.0  # nothing yet
    lag.note(-0.001)  # a timer may fire a clock tick early: not a negative lag
    assert lag.longest_s() == 0.0
    for late in (0.4, 0.01, 0.02):
        lag.note(late)
    assert lag.longest_s() == 0.4
    lag.note(0.03)  # three beats later the 0.4 s one has left the window
    assert lag.longest_s() == 0.03


def test_a_shorter_beat_keeps_as_many_readings_as_the_window_holds() -> None:
    lag = BeatLag(period_s=0.5, window_s=3.0)  # six readings
    lag.note(1.0)
    for _ in range(5):
        lag.note(0.0)
    assert lag.longest_s() == 1.0
    lag.note(0.0)
    assert lag.longest_s() == 0.0


def test_the_thread_cpu_clock_is_this_threads() -> None:
    clock = thread_cpu_clock()
    before, own = clock(), time.thread_time()
    _spin_cpu(0.05)
    assert clock() - before >= 0.05 and abs((clock() - before) - (time.thread_time() - own)) < 0.01


async def test_sleep_to_beat_says_how_late_it_woke() -> None:
    waking = asyncio.create_task(sleep_to_beat(0.1))
    await asyncio.sleep(0)  # it asked for the next multiple of 0.1 s, ≤ 0.1 s away
    _spin_cpu(0.4)  # the loop held ≥ 0.3 s past it
    assert await waking >= 0.25


async def test_a_blocked_loop_shows_in_metrics_as_cpu_and_lag(tmp_path: Path) -> None:
    """The hub runs on this test's loop: 1.5 s of CPU here blocks it, so a beat (≤ 1 s apart)
    comes due meanwhile and wakes ≥ 0.5 s late; the loop thread's CPU seconds grow by at least
    what was spun."""
    running = await start_hub(hub_settings(tmp_path, hub={"metrics_token": "scraper"}))
    try:
        async with httpx.AsyncClient(base_url=running.http) as http:
            async def loop_load() -> dict[str, float]:
                reply = await http.get("/metrics", headers=SCRAPER)
                assert reply.status_code == 200
                family = next(f for f in text_string_to_metric_families(reply.text) if f.name == "jaga_event_loop")
                return {sample.labels["what"]: sample.value for sample in family.samples}

            before = await loop_load()
            assert before["cpu_seconds"] > 0.0
            _spin_cpu(1.5)  # longer than the beat's period: one is due while the loop is held
            lagged = await wait_until(lambda: _lag_at_least(loop_load, 0.4), 10, "a late beat in lag_seconds",
                                      every=0.05)
            assert lagged["cpu_seconds"] - before["cpu_seconds"] >= 1.5
    finally:
        await stop_hub(running)


async def _lag_at_least(read: Callable[[], Awaitable[dict[str, float]]], seconds: float) -> dict[str, float] | None:
    load = await read()
    return load if load["lag_seconds"] >= seconds else None


def _spin_cpu(seconds: float) -> None:
    """Busy this thread for ``seconds`` of its own CPU time (not wall time: a loaded machine
    may preempt it)."""
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass
