"""/laporan for a seeded ledger: the figures, the roll-ups, the charts, the CSV download."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect

from hub.routes.api import DAILY_COLUMNS
from tests.kit import RunningHub, timeout
from tests.web.browser import open_page
from tests.web.helpers import PRIVATE_ID, PRIVATE_MARKERS, seed_intervals, wib

pytestmark = pytest.mark.browser

DAY = dt.date(2026, 10, 5)  # a past day; the test schedule makes every day 00:00–23:59 a workday
NEXT = DAY + dt.timedelta(days=1)
WINDOW_S = 23 * 3600 + 59 * 60


async def seed(hub: RunningHub) -> None:
    ledger = hub.hub.ledger.inner
    # on time (00:05 < 15 min grace), live until 12:00, online until 13:00: sebagian, 1 interruption
    await seed_intervals(ledger, "35.09.01", [("online", wib(DAY, 0, 5)), ("live", wib(DAY, 0, 5) + 0.2),
                                              ("online", wib(DAY, 12)), (None, wib(DAY, 13))])
    # first on at 01:00: terlambat by an hour, then live to the end of the window
    await seed_intervals(ledger, "35.09.01.2001", [("live", wib(DAY, 1)), (None, wib(DAY, 23, 59))])
    # all day live: hadir
    await seed_intervals(ledger, "35.09.01.2002", [("live", wib(DAY, 0)), (None, wib(NEXT, 0))])
    # the private station was there too; it must not show anywhere
    await seed_intervals(ledger, PRIVATE_ID, [("live", wib(DAY, 0)), (None, wib(NEXT, 0))])


def cell(page: Page, table: str, row_id: str, key: str) -> Locator:
    return page.locator(f'#{table} tr[data-id="{row_id}"] td[data-key="{key}"]')


async def test_daily_and_monthly_reports_show_the_ledger(browser: Browser, web_hub: RunningHub, tmp_path: Path) -> None:
    await seed(web_hub)
    page, log = await open_page(browser, f"{web_hub.http}/laporan?date={DAY}", viewport={"width": 1280, "height": 900},
                                accept_downloads=True)
    await expect(page.locator("#title")).to_have_text("Kehadiran 5 Oktober 2026")

    live_s = 12 * 3600 - 5 * 60 - 0.2
    expected = {
        "35.09.01": {"status": "sebagian", "first_online": "00.05", "live_s": "11 j 55 m", "online_s": "12 j 55 m",
                     "coverage": f"{round(live_s / WINDOW_S * 100, 1)}%".replace(".", ","), "interruptions": "1",
                     "late_s": "0 m"},
        "35.09.01.2001": {"status": "terlambat", "late_s": "1 j 00 m", "first_live": "01.00", "coverage": "95,8%",
                          "interruptions": "0"},
        "35.09.01.2002": {"status": "hadir", "coverage": "100%", "live_s": "23 j 59 m"},
        "35.09.02": {"status": "tidak hadir", "first_online": "–", "coverage": "0%"},
    }
    for row_id, figures in expected.items():
        for key, text in figures.items():
            await expect(cell(page, "table-station", row_id, key)).to_have_text(text)
    jombang = (live_s + (WINDOW_S - 3600) + WINDOW_S) / (3 * WINDOW_S)
    for key, text in {"stations": "3", "hadir": "1", "terlambat": "1", "sebagian": "1", "tidak_hadir": "0",
                      "coverage": f"{round(jombang * 100, 1)}%".replace(".", ",")}.items():
        await expect(cell(page, "table-kecamatan", "Jombang", key)).to_have_text(text)
    await expect(cell(page, "table-kind", "desa", "hadir")).to_have_text("1")
    await expect(page.locator("#table-opd tbody tr")).to_have_count(1)  # opd.dinkes only
    bar = page.locator('#chart rect.bar[data-label="Jombang"]')
    assert abs(float(await bar.get_attribute("data-value") or "nan") - jombang) < 1e-9

    # Sorting: by coverage (descending first for numbers), then ascending.
    header = page.locator('#table-station th[data-key="coverage"] button')
    await header.click()
    await expect(page.locator("#table-station tbody tr").first).to_have_attribute("data-id", "35.09.01.2002")
    await expect(page.locator('#table-station th[data-key="coverage"]')).to_have_attribute("aria-sort", "descending")
    await header.click()
    await expect(page.locator("#table-station tbody tr").last).to_have_attribute("data-id", "35.09.01.2002")

    # The CSV the page links to is the JSON API's rows, column for column.
    async with page.expect_download() as download_info:
        await page.get_by_role("link", name="Unduh laporan harian (CSV)").click()
    download = await download_info.value
    path = tmp_path / "daily.csv"
    await download.save_as(path)
    csv_rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    async with httpx.AsyncClient(base_url=web_hub.http, timeout=timeout(5)) as http:
        json_rows = (await http.get("/api/v1/attendance/daily", params={"date": str(DAY)})).json()["rows"]
    assert list(csv_rows[0]) == DAILY_COLUMNS
    assert [r["id"] for r in csv_rows] == [r["id"] for r in json_rows]
    for from_csv, from_json in zip(csv_rows, json_rows, strict=True):
        assert from_csv == {c: "" if from_json[c] is None else str(from_json[c]) for c in DAILY_COLUMNS}
    assert PRIVATE_ID not in {r["id"] for r in csv_rows}
    text = await page.content()

    # The month: roll-ups from the API, the chart, and one station's calendar.
    await page.goto(f"{web_hub.http}/laporan?month={DAY:%Y-%m}&station=35.09.01")
    await expect(page.locator("#title")).to_have_text("Kehadiran Oktober 2026")
    await expect(cell(page, "table-station", "35.09.01", "days")).to_have_text("31")
    await expect(cell(page, "table-station", "35.09.01", "sebagian")).to_have_text("1")
    await expect(cell(page, "table-station", "35.09.01", "tidak_hadir")).to_have_text("30")
    await expect(cell(page, "table-kecamatan", "Jombang", "hadir")).to_have_text("1")
    await expect(page.locator('#heatmap g[data-date="2026-10-05"]')).to_have_attribute("data-status", "sebagian")
    await expect(page.locator('#heatmap g[data-date="2026-10-06"]')).to_have_attribute("data-status", "tidak hadir")
    await expect(page.locator('#heatmap g[data-status]')).to_have_count(31)
    await expect(page.locator("#heatmap-station option:checked")).to_have_text("Kecamatan Jombang")
    month_bar = page.locator('#chart rect.bar[data-label="Jombang"]')
    assert abs(float(await month_bar.get_attribute("data-value") or "nan") - jombang / 31) < 1e-3
    hrefs = await page.locator("#downloads a").evaluate_all("links => links.map(a => a.getAttribute('href'))")
    for group in ("station", "kecamatan", "kind", "opd"):
        assert f"/api/v1/attendance/monthly?month=2026-10&group={group}&format=csv" in hrefs
    for marker in PRIVATE_MARKERS:
        assert marker.lower() not in (text + await page.content()).lower()
    log.assert_clean()
