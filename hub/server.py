"""The uvicorn server the hub runs under, waking once a second instead of ten times.

uvicorn's ``Server.main_loop`` sleeps 0.1 s between calls to ``on_tick``, which renews the
``Date`` header once a second (every tenth call) and returns whether to stop. That is ten
wake-ups a second of an otherwise idle process, and a wake-up is not free: on this kind of
virtual machine each costs ~100-200 µs of CPU (docs/benchmarks.md, section 4: the idle hub
went from 0.25 % of a core to 0.04 % without them). uvicorn seam 10 (1-9 are in
``hub/routes/uvicorn_seams.py``), pinned by ``tests/test_server.py`` against the locked uvicorn:

10. ``main_loop`` / ``on_tick(counter)``: ``main_loop`` is the whole of the server's life
    between startup and shutdown, calling ``on_tick`` with a counter that ``on_tick`` reads
    only as ``counter % 10 == 0`` (renew the headers); ``should_exit``, an attribute set by
    ``handle_exit`` (the signal handler) or by whoever embeds the server, is read by
    ``on_tick``. :class:`HubServer` calls ``on_tick`` on whole seconds of the loop's clock,
    with a counter that is always a multiple of 10, and wakes at once when ``should_exit``
    is set, so stopping is as prompt as before.

The hub's own timers (``hub.beat``) tick on the same whole seconds, so they share its wake-up.
"""

from __future__ import annotations

import asyncio

import uvicorn

from hub.beat import SECOND_BEAT_S, next_beat

TICKS_PER_HEADER_RENEWAL = 10  # uvicorn renews the Date header when counter % 10 == 0
COUNTER_WRAP = 864000  # as uvicorn's main_loop


class HubServer(uvicorn.Server):
    """uvicorn's server, ticking on whole seconds; setting ``should_exit`` wakes it at once."""

    def __init__(self, config: uvicorn.Config) -> None:
        self._woken: asyncio.Future[None] | None = None  # what main_loop awaits between ticks
        self._exit = False
        super().__init__(config)

    @property  # uvicorn has a plain attribute: a property keeps its interface and wakes the loop
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        woken = self._woken
        if value and woken is not None:
            # Set from the signal handler too, inside the loop's select: only the loop's
            # self-pipe wakes it from there.
            woken.get_loop().call_soon_threadsafe(_resolve, woken)

    async def main_loop(self) -> None:
        loop = asyncio.get_running_loop()
        counter = 0
        should_exit = await self.on_tick(counter)
        while not should_exit:
            counter = (counter + TICKS_PER_HEADER_RENEWAL) % COUNTER_WRAP
            woken = self._woken = loop.create_future()
            timer = loop.call_at(next_beat(loop.time(), SECOND_BEAT_S), _resolve, woken)
            try:
                await woken
            finally:
                timer.cancel()
                self._woken = None
            should_exit = await self.on_tick(counter)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
