"""Fixtures for every test folder; the plain helpers they use are in :mod:`tests.kit`.

``hub`` is a real hub on a real uvicorn, port 0, with its own ``data_dir``. The fixtures of
:mod:`tests.redis_server` (``redis_server``, ``redis_url``) and :mod:`tests.web.browser`
(``browser``) are registered here once, so test modules use them without importing them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub

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
