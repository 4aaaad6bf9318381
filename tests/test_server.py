"""The hub's uvicorn server ticks once a second and stops at once (uvicorn seam 10, hub/server.py)."""

from __future__ import annotations

import asyncio
import inspect
import signal
import threading
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from hub import server as server_module
from hub.beat import next_beat
from hub.server import HubServer
from tests.kit import _InProcessServer, timeout, wait_until


def test_uvicorns_main_loop_and_on_tick_are_what_hub_server_replaces() -> None:
    main_loop = inspect.getsource(uvicorn.Server.main_loop)
    assert "await asyncio.sleep(0.1)" in main_loop
    assert "should_exit = await self.on_tick(counter)" in main_loop
    on_tick = inspect.getsource(uvicorn.Server.on_tick)
    assert "if counter % 10 == 0:" in on_tick  # the only use of the counter: renew the Date header
    assert on_tick.count("counter") == 2
    assert "if self.should_exit:" in on_tick
    assert "self.should_exit = False" in inspect.getsource(uvicorn.Server.__init__)
    assert "self.should_exit = True" in inspect.getsource(uvicorn.Server.handle_exit)


@pytest.mark.parametrize(("now", "period", "beat"), [(12.3, 1.0, 13.0), (13.0, 1.0, 14.0), (0.0, 1.0, 1.0),
                                                     (7.05, 0.5, 7.5), (99.99, 2.0, 100.0)])
def test_next_beat_is_the_next_multiple_of_the_period(now: float, period: float, beat: float) -> None:
    assert next_beat(now, period) == pytest.approx(beat)


class _CountingServer(_InProcessServer):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.counters: list[int] = []

    async def on_tick(self, counter: int) -> bool:
        self.counters.append(counter)
        return await super().on_tick(counter)


async def _serve(server_class: type[HubServer]) -> tuple[Any, asyncio.Task[None]]:
    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/", hello)])
    server = server_class(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, timeout=15, message="the server to listen", every=0.01)
    return server, task


async def test_every_tick_renews_the_date_header() -> None:
    server, task = await _serve(_CountingServer)
    try:
        await wait_until(lambda: len(server.counters) >= 3, timeout=10, message="three ticks")
        assert all(counter % 10 == 0 for counter in server.counters)  # each one renews the headers
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/")
        assert response.text == "ok"
        assert parsedate_to_datetime(response.headers["date"]).year >= 2026
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout(20))


async def test_setting_should_exit_wakes_the_server_without_waiting_for_the_tick(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The next tick an hour away: the server can only stop because setting should_exit woke it.
    monkeypatch.setattr(server_module, "next_beat", lambda now, period: now + 3600)
    server, task = await _serve(_InProcessServer)
    await wait_until(lambda: server._woken is not None, timeout=10, message="the server to sleep")
    server.should_exit = True
    await asyncio.wait_for(task, timeout(20))
    assert server.should_exit


async def test_a_signal_from_another_thread_wakes_the_server(monkeypatch: pytest.MonkeyPatch) -> None:
    # As the signal handler does inside the loop's select: only the loop's self-pipe wakes it.
    monkeypatch.setattr(server_module, "next_beat", lambda now, period: now + 3600)
    server, task = await _serve(_InProcessServer)
    await wait_until(lambda: server._woken is not None, timeout=10, message="the server to sleep")
    thread = threading.Thread(target=server.handle_exit, args=(signal.SIGTERM, None))
    thread.start()
    await asyncio.wait_for(task, timeout(20))
    thread.join()
