"""The hub's beat: periodic jobs wake on multiples of their period, together (hub/beat.py)."""

from __future__ import annotations

import asyncio

from hub.beat import BeatTimer
from tests.kit import timeout, wait_until

PERIOD = 0.02


def on_the_beat(at: float) -> bool:
    """``at`` is a multiple of PERIOD on the loop's clock, or a little after it (never early)."""
    return 0 <= at / PERIOD - round(at / PERIOD) < 0.5


async def test_ticks_on_the_beat_while_busy_then_rests_until_woken() -> None:
    loop = asyncio.get_running_loop()
    ticks: list[float] = []
    work = [3]

    def tick() -> None:
        ticks.append(loop.time())
        work[0] -= 1

    timer = BeatTimer(PERIOD, tick, lambda: work[0] > 0)
    timer.wake()
    timer.wake()  # already due: still one tick per beat
    await wait_until(lambda: len(ticks) == 3, message="three ticks")
    assert all(on_the_beat(at) for at in ticks)
    assert len({round(at / PERIOD) for at in ticks}) == 3
    rested = asyncio.Event()
    loop.call_later(5 * PERIOD, rested.set)
    await asyncio.wait_for(rested.wait(), timeout(5))
    assert len(ticks) == 3  # no work, no wake-ups
    work[0] = 1
    timer.wake()
    await wait_until(lambda: len(ticks) == 4, message="a tick once woken again")
    timer.close()


async def test_close_cancels_the_next_tick_and_later_wakes() -> None:
    ticks: list[int] = []
    timer = BeatTimer(PERIOD, lambda: ticks.append(1), lambda: True)
    timer.wake()
    timer.close()
    timer.wake()
    waited = asyncio.Event()
    asyncio.get_running_loop().call_later(5 * PERIOD, waited.set)
    await asyncio.wait_for(waited.wait(), timeout(5))
    assert ticks == []
