"""Shared fixtures: a real hub on a real uvicorn, on port 0, with its own data_dir.

Timeouts scale with ``JAGA_TEST_TIMEOUT_FACTOR`` (as websockets' own tests do) so a slow CI
machine can be given more time without touching a test.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from hub.app import Hub, create_app
from hub.cli import WS_MAX_SIZE
from hub.settings import Settings, settings_from_mapping

TIMEOUT_FACTOR = float(os.environ.get("JAGA_TEST_TIMEOUT_FACTOR", "1"))

TEST_REGISTRY = """id,name,kind,kecamatan,public
35.09.01,Kecamatan Jombang,kecamatan,Jombang,true
35.09.01.2001,Desa Padomasan,desa,Jombang,true
35.09.01.2002,Desa Keting,desa,Jombang,true
35.09.02,Kecamatan Kencong,kecamatan,Kencong,true
35.09.02.1001,Kelurahan Kencong,kelurahan,Kencong,true
opd.dinkes,Dinas Kesehatan,opd,,true
opd.bakesbangpol,"Badan Kesatuan Bangsa dan Politik, Rahasia",opd,,false
"""


def timeout(seconds: float) -> float:
    return seconds * TIMEOUT_FACTOR


def test_settings(tmp_path: Path, **sections: dict[str, Any]) -> Settings:
    registry = tmp_path / "stations.csv"
    if not registry.exists():
        registry.write_text(TEST_REGISTRY)
    raw: dict[str, Any] = {
        "hub": {"host": "127.0.0.1", "port": 0, "data_dir": str(tmp_path / "data"), "checkpoint_s": 0.2},
        "stations": {"registry": str(registry)},
        "presence": {"heartbeat_s": 0.2, "timeout_s": 1.0, "hello_timeout_s": 1.0},
        "schedule": {"workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
                     "end": "23:59", "national_holidays": False},
        "media": {"host_addresses": ["127.0.0.1"]},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return settings_from_mapping(raw, base_dir=str(tmp_path))


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@dataclass
class RunningHub:
    hub: Hub
    port: int
    server: uvicorn.Server

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def token(self, station: str) -> str:
        return await self.hub.auth.rotate_token(station)


async def start_hub(settings: Settings, clock: Any = None, port: int = 0,
                    per_message_deflate: bool = False) -> RunningHub:
    """A hub on a real uvicorn, configured as ``jaga-hub serve`` does; ``port`` 0 picks a free
    one (pass the old one to restart a hub where its agents expect it)."""
    app = create_app(settings, clock) if clock else create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", ws_max_size=WS_MAX_SIZE,
                            ws_per_message_deflate=per_message_deflate, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + timeout(15)
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("hub did not start")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("hub did not start in time")
        await asyncio.sleep(0.01)  # uvicorn offers no start event; poll with a deadline
    bound = server.servers[0].sockets[0].getsockname()[1]
    server._jaga_task = task  # type: ignore[attr-defined]
    return RunningHub(app.state.hub, bound, server)


async def stop_hub(running: RunningHub) -> None:
    running.server.should_exit = True
    await asyncio.wait_for(running.server._jaga_task, timeout(20))  # type: ignore[attr-defined]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(test_settings(tmp_path))
    try:
        yield running
    finally:
        await stop_hub(running)


# On CI a skipped test means a missing service or tool: fail the run instead of passing it.
_skipped_on_ci: list[str] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("CI") == "true" and report.skipped:
        _skipped_on_ci.append(f"{report.nodeid}: {report.longrepr}")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _skipped_on_ci:
        print("\nCI=true and these tests were skipped (a missing service is a failure on CI):")
        for line in _skipped_on_ci:
            print(f"  {line}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
