"""Fixtures for every test folder; the plain helpers they use are in :mod:`tests.kit`.

``hub`` is a real hub on a real uvicorn, port 0, with its own ``data_dir``; ``nodes`` starts
cluster nodes on the test's private Redis. The fixtures of
:mod:`tests.redis_server` (``redis_server``, ``redis_url``) and :mod:`tests.web.browser`
(``browser``) are registered here once, so test modules use them without importing them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.kit import RunningHub, cluster_node, hub_settings, start_hub, stop_hub

pytest_plugins = ["tests.redis_server", "tests.web.browser"]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path))
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


@pytest.fixture
async def nodes(tmp_path: Path, redis_url: str) -> AsyncIterator[Callable[..., Awaitable[RunningHub]]]:
    """``await nodes("node-a", **sections)``: a hub node on the test's private Redis, each
    with its own data_dir; all stopped at the end, newest first."""
    started: list[RunningHub] = []

    async def start(name: str, **sections: dict[str, Any]) -> RunningHub:
        hub = {**cluster_node(redis_url, name), **sections.pop("hub", {})}
        started.append(await start_hub(hub_settings(tmp_path / name, hub=hub, **sections)))
        return started[-1]

    try:
        yield start
    finally:
        for running in reversed(started):
            await stop_hub(running)
