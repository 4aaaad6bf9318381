"""The wall's recordings in headless Chromium: the low-disk alarm shows when the service says
the disk is below the floor, and the focus view of a station has the *Rekam* toggle (which
the hub audits) and the station's recordings, hidden through an inline reason form."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, wait_until
from tests.recording_files import add_recording, make_webm
from tests.wall.conftest import OPERATOR, PASSWORD, open_wall, wall_registry

pytestmark = pytest.mark.browser

STATION = "35.09.19.1006"  # a kelurahan in the wall's slice of the registry
SCREENSHOTS = Path("/tmp")


@pytest.fixture
async def rekam_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    (tmp_path / "stations.csv").write_text(wall_registry(), encoding="utf-8")
    recordings_dir = tmp_path / "rekaman"
    # A floor no disk reaches: recording stops at once and the wall must say so.
    running = await start_hub(hub_settings(tmp_path, recording={"dir": str(recordings_dir),
                                                                "min_free_bytes": 10**18}))
    await running.hub.auth.add_operator(OPERATOR, PASSWORD)
    webm = make_webm(tmp_path / "sample.webm", seconds=2)
    await add_recording(running.hub.backend.recordings, recordings_dir, STATION, "Pelayanan Warga",
                        time.time() - 3600, webm, duration_s=2.0)
    try:
        yield running
    finally:
        await stop_hub(running)


async def test_rekam_toggle_recordings_hide_and_the_disk_alarm(browser: Browser, rekam_hub: RunningHub) -> None:
    hub = rekam_hub
    await wait_until(lambda: hub.hub.recordings.floor.low, timeout=10, message="the disk floor to trip")
    page, log = await open_wall(browser, hub)
    await expect(page.locator("#disk-alarm")).to_be_visible()
    await expect(page.locator("#disk-alarm")).to_contain_text("Ruang disk rekaman hampir habis")

    await page.locator(f'.tile[data-id="{STATION}"]').click()
    await expect(page.locator("#focus")).to_be_visible()
    rekam = page.locator("#rekam")
    await expect(rekam).to_be_enabled()
    await expect(rekam).to_have_attribute("aria-pressed", "false")
    row = page.locator("#focus-recordings .focus-recording", has_text="Pelayanan Warga")
    await expect(row).to_be_visible()

    await rekam.click()  # no video from the station: asked for, and audited
    await expect(page.locator("#rekam-state")).to_contain_text("Rekam diminta")
    log_entries = await hub.hub.credentials.audit_log(50)
    assert any(e["action"] == "recording.start" and e["detail"] == STATION for e in log_entries), log_entries

    await row.locator('button[data-action="hide"]').click()
    form = row.locator("form.hide-form")
    await form.locator("button[type=submit]").click()  # no reason: the form says so, nothing sent
    await expect(form).to_contain_text("Tulis alasannya dulu")
    await form.locator("input[name=reason]").fill("Terekam data pribadi warga")
    await page.screenshot(path=str(SCREENSHOTS / "jaga-wall-rekaman-hide.png"))
    await form.locator("button[type=submit]").click()
    hidden = page.locator("#focus-recordings .focus-recording[data-visible=false]")
    await expect(hidden).to_contain_text("Disembunyikan: Terekam data pribadi warga")
    await page.screenshot(path=str(SCREENSHOTS / "jaga-wall-rekaman.png"))
    (stored,) = await hub.hub.backend.recordings.list(STATION)
    assert stored.visible is False and stored.hidden_reason == "Terekam data pribadi warga"
    log.assert_clean()
