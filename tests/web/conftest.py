"""Browser tests of the public pages against a real hub on a real uvicorn."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub
from tests.web.helpers import WEB_REGISTRY


@pytest.fixture
async def web_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    (tmp_path / "stations.csv").write_text(WEB_REGISTRY)
    running = await start_hub(hub_settings(tmp_path))
    try:
        yield running
    finally:
        await stop_hub(running)
