"""The recordings' pages in headless Chromium: /rekaman lists a recording, its player page
plays the real file (``currentTime`` advances) and seeks to the middle over HTTP Range
(``seeked`` fires, ``currentTime`` near the target). The file is a PyAV-made WebM
(tests/recording_files.py), not the recorder's: this tests the routes and the pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub
from tests.recording_files import WIB, add_recording, make_webm
from tests.web.browser import open_page, plays_and_seeks

pytestmark = pytest.mark.browser

STATION = "35.09.01"
HOSTILE = '<img src=x onerror="window.__pwned=1">Rapat <b>RT</b>'
SECONDS = 8.0
SCREENSHOTS = Path("/tmp")


@pytest.fixture
async def rekaman_hub(tmp_path: Path) -> AsyncIterator[tuple[RunningHub, str]]:
    recordings_dir = tmp_path / "rekaman"
    running = await start_hub(hub_settings(tmp_path, recording={"dir": str(recordings_dir)}))
    webm = make_webm(tmp_path / "sample.webm", seconds=SECONDS)
    store = running.hub.backend.recordings
    start = dt.datetime.combine(dt.date(2026, 5, 5), dt.time(9, 30), WIB).timestamp()
    await add_recording(store, recordings_dir, STATION, HOSTILE, start - 86400, webm, duration_s=SECONDS)
    recording = await add_recording(store, recordings_dir, STATION, "Musyawarah Rencana Pembangunan", start, webm,
                                    duration_s=SECONDS)
    try:
        yield running, recording.id
    finally:
        await stop_hub(running)


async def test_the_list_shows_it_and_the_player_plays_and_seeks(browser: Browser,
                                                                rekaman_hub: tuple[RunningHub, str]) -> None:
    hub, recording_id = rekaman_hub
    page, log = await open_page(browser, f"{hub.http}/rekaman")
    row = page.locator(f'li.recording[data-id="{recording_id}"]')
    await expect(row).to_contain_text("Musyawarah Rencana Pembangunan")
    await expect(row).to_contain_text("Kecamatan Jombang")
    await expect(row).to_contain_text("09.30")
    await expect(page.locator(".recording-day h2").first).to_have_text("Selasa, 5 Mei 2026")
    # The newest first; a title that is markup shows as text and runs nothing.
    await expect(page.locator("li.recording").first).to_have_attribute("data-id", recording_id)
    await expect(page.locator("li.recording").nth(1)).to_contain_text(HOSTILE)
    assert await page.evaluate("() => window.__pwned") is None
    await expect(page.locator("#open-csv")).to_have_attribute("href", "/api/v1/recordings.csv?")
    await page.screenshot(path=str(SCREENSHOTS / "jaga-rekaman-list.png"), full_page=True)

    # Filtered by station through the form: the URL carries the API's own parameters.
    await page.select_option("#f-station", STATION)
    async with page.expect_navigation():
        await page.click("#filters button[type=submit]")
    assert page.url.endswith(f"/rekaman?station={STATION}")
    await expect(page.locator("#open-json")).to_have_attribute("href", f"/api/v1/recordings?station={STATION}")

    await page.locator(f'li.recording[data-id="{recording_id}"] a').click()
    await page.wait_for_url(f"**/rekaman/{recording_id}")
    await expect(page.locator("#title")).to_have_text("Musyawarah Rencana Pembangunan")
    await expect(page.locator("#facts")).to_contain_text("Kecamatan Jombang")
    await expect(page.locator("#facts")).to_contain_text("0:08")
    download = page.locator("#download")
    await expect(download).to_have_attribute("href", f"/recordings/{recording_id}.webm")
    await expect(download).to_have_attribute("download", f"jaga-{STATION}-2026-05-05-{recording_id}.webm")

    await page.wait_for_function("() => document.getElementById('video').readyState >= 1")
    duration = await page.evaluate("() => document.getElementById('video').duration")
    assert abs(duration - SECONDS) < 0.5, duration
    landed = await plays_and_seeks(page, SECONDS / 2)
    assert abs(landed - SECONDS / 2) < 0.6, landed
    await page.evaluate("() => document.getElementById('video').pause()")
    await page.screenshot(path=str(SCREENSHOTS / "jaga-rekaman-player.png"), full_page=True)
    log.assert_clean()

    # An unknown id: the page says so in Bahasa Indonesia.
    missing, missing_log = await open_page(browser, f"{hub.http}/rekaman/tidak-ada")
    await expect(missing.locator("#not-found")).to_be_visible()
    await expect(missing.locator("#title")).to_have_text("Rekaman tidak ditemukan")
