"""The portal's first page on a phone, for all of Jember: under 150 KB before any video.

Worst case on purpose: all 303 stations, twelve of them live with ~14 KB thumbnails and no
activities, so the "Sedang siaran" row sits right under the counts, on the first screen.
Bytes are what Chromium reports per response (headers + encoded body) plus every WebSocket
frame received, until the network is idle.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.kit import hub_settings, start_hub, stop_hub
from tests.web.browser import open_page
from tests.web.helpers import make_jpeg
from tests.wsclient import heartbeat, station

pytestmark = pytest.mark.browser

BUDGET = 150_000
JEMBER_REGISTRY = Path(__file__).resolve().parents[2] / "data" / "jember_stations.csv"  # the repo's copy
ONLINE = 12  # stations live, each with a ~14 KB thumbnail


async def test_first_page_of_the_portal_fits_the_budget(browser: Browser, tmp_path: Path) -> None:
    shutil.copy(JEMBER_REGISTRY, tmp_path / "stations.csv")
    hub = await start_hub(hub_settings(tmp_path))
    clients, beats = [], []
    try:
        public = [s for s in hub.hub.registry if s.public]
        for index, item in enumerate(public[:ONLINE]):
            client, _ = await station(hub.ws, item.id, await hub.token(item.id))
            await client.send({"t": "thumb", "jpeg": make_jpeg(seed=index)})
            clients.append(client)
            await hub.hub.stations.set_publishing(item.id, True)  # what the relay does on WHIP: live
            beats.append(asyncio.create_task(heartbeat(client, 0.15)))

        page, log = await open_page(browser)
        await page.goto(f"{hub.http}/", wait_until="networkidle")
        await expect(page.locator("#count-all")).to_have_text(str(len(public)))
        await expect(page.locator("#count-on")).to_have_text(str(ONLINE))
        await expect(page.locator("#live-cards .card")).to_have_count(ONLINE)  # right under the counts
        await page.wait_for_load_state("networkidle")
        await log.settle()
        snapshot = next(len(f.encode()) for f in log.ws_frames if '"t":"snapshot"' in f)
        breakdown = {url.removeprefix(hub.http): size for url, size in sorted(log.http_bytes.items())}
        print(f"\nfirst page: {log.total_bytes} bytes = HTTP {breakdown} + WebSocket {log.ws_bytes} "
              f"(snapshot of {len(public)} stations: {snapshot})")
        assert log.total_bytes < BUDGET, (log.total_bytes, breakdown, log.ws_bytes)
        thumbnails = [url for url in breakdown if "thumbnail" in url]
        assert 1 <= len(thumbnails) <= 3, thumbnails  # only the pictures on the first screen
        log.assert_clean()
    finally:
        for beat in beats:
            beat.cancel()
        for client in clients:
            await client.close()
        await stop_hub(hub)
