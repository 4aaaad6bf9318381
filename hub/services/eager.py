"""Run a coroutine eagerly: up to its first real suspension, right now, without a task.

Fan-out writes the same frame to thousands of sockets. A socket write almost never blocks
(uvicorn's ``send`` only waits while the transport is paused), so a task per write per
watcher would spend most of the CPU on scheduling (measured in TESTING.md: a task per
connection per event halves throughput). :func:`start` runs the write inline; only a write
that really blocks becomes a task, which then finishes it — the same idea as Python 3.12's
eager task factory, written for 3.11.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any


class _Continuation:
    """Awaitable that resumes an already-started coroutine where it suspended.

    The coroutine yielded a future (or None) to whoever drove it; we hand that same object
    to the task that awaits us, and feed back whatever the task sends or throws.
    """

    def __init__(self, coro: Coroutine[Any, Any, Any], yielded: Any) -> None:
        self._coro = coro
        self._yielded = yielded

    def __await__(self) -> Generator[Any, Any, Any]:
        yielded = self._yielded
        while True:
            try:
                value = yield yielded
            except BaseException as exc:  # cancellation included: pass it into the coroutine
                try:
                    yielded = self._coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    yielded = self._coro.send(value)
                except StopIteration as stop:
                    return stop.value


def start(coro: Coroutine[Any, Any, Any]) -> _Continuation | None:
    """Run ``coro`` until it finishes (→ None) or suspends (→ an awaitable that finishes it).

    Exceptions raised before the first suspension propagate to the caller.
    """
    try:
        yielded = coro.send(None)
    except StopIteration:
        return None
    return _Continuation(coro, yielded)
