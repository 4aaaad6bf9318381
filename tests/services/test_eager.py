from __future__ import annotations

import asyncio

import pytest

from hub.services import eager
from tests.kit import timeout


async def test_a_coroutine_that_never_suspends_runs_inline() -> None:
    done = []

    async def write() -> None:
        done.append(1)

    assert eager.start(write()) is None
    assert done == [1]


async def test_a_blocked_coroutine_is_finished_by_awaiting_the_continuation() -> None:
    gate = asyncio.Event()
    steps = []

    async def write() -> str:
        steps.append("before")
        await gate.wait()
        steps.append("after")
        await asyncio.sleep(0)  # a bare yield in the middle is handled too
        return "written"

    continuation = eager.start(write())
    assert continuation is not None and steps == ["before"]
    task = asyncio.ensure_future(continuation)
    await asyncio.sleep(0)
    assert not task.done()
    gate.set()
    assert await asyncio.wait_for(task, timeout(5)) == "written"
    assert steps == ["before", "after"]


async def test_errors_before_and_after_suspension_propagate() -> None:
    async def fails_at_once() -> None:
        raise ConnectionError("gone")

    with pytest.raises(ConnectionError):
        eager.start(fails_at_once())

    gate = asyncio.Event()

    async def fails_later() -> None:
        await gate.wait()
        raise ConnectionError("gone later")

    continuation = eager.start(fails_later())
    assert continuation is not None
    task = asyncio.ensure_future(continuation)
    gate.set()
    with pytest.raises(ConnectionError):
        await task


async def test_cancelling_the_task_cancels_the_coroutine() -> None:
    cleaned = []

    async def blocked() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.append(True)

    continuation = eager.start(blocked())
    assert continuation is not None
    task = asyncio.ensure_future(continuation)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
