"""The public portal "/" and the watch page, in headless Chromium, against a real hub."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, WebSocketRoute, expect

from tests.kit import RunningHub, timeout, wait_until
from tests.web.browser import open_page
from tests.web.helpers import (
    PRIVATE_ID,
    PRIVATE_MARKERS,
    PUBLIC_IDS,
    XSS,
    XSS_STATION,
    make_jpeg,
)
from tests.wsclient import heartbeat, station

pytestmark = pytest.mark.browser


def card(page: Page, station_id: str) -> Locator:
    return page.locator(f'#directory .card[data-id="{station_id}"]')


def assert_private_absent(text: str) -> None:
    for marker in PRIVATE_MARKERS:
        assert marker.lower() not in text.lower(), f"{marker!r} leaked"


async def test_portal_lists_stations_and_follows_them_live(browser: Browser, web_hub: RunningHub) -> None:
    page, log = await open_page(browser, f"{web_hub.http}/")
    await expect(page.locator("#conn")).to_have_class(re.compile(r"\bup\b"))
    await expect(page.locator("#count-all")).to_have_text(str(len(PUBLIC_IDS)))
    for station_id in PUBLIC_IDS:
        await expect(card(page, station_id)).to_have_count(1)
    await expect(card(page, "35.09.01")).to_have_attribute("data-status", "missing")
    await expect(card(page, XSS_STATION).locator(".name")).to_have_text(XSS)  # markup shown as text

    # A public and a private station come online; only the public one shows, without a reload.
    jombang, _ = await station(web_hub.ws, "35.09.01", await web_hub.token("35.09.01"))
    secret, _ = await station(web_hub.ws, PRIVATE_ID, await web_hub.token(PRIVATE_ID))
    beats = [asyncio.create_task(heartbeat(c)) for c in (jombang, secret)]
    try:
        await expect(card(page, "35.09.01")).to_have_attribute("data-status", "online")
        await expect(card(page, "35.09.01").locator(".badge")).to_have_text("Aktif")
        await expect(page.locator("#count-on")).to_have_text("1")

        # The media watchdog's word (hub.services.media_presence), as the relay would give it.
        await web_hub.hub.stations.set_publishing("35.09.01", True)
        await web_hub.hub.stations.set_media("35.09.01", "audio")
        await expect(card(page, "35.09.01").locator(".badge")).to_have_text("Siaran langsung · hanya suara")
        await web_hub.hub.stations.set_media("35.09.01", "")
        await expect(card(page, "35.09.01").locator(".badge")).to_have_text("Siaran terhenti")
        await expect(card(page, "35.09.01")).to_have_attribute("data-status", "reconnecting")
        await web_hub.hub.stations.set_publishing("35.09.01", False)
        await expect(card(page, "35.09.01").locator(".badge")).to_have_text("Aktif")

        # An activity whose title is markup: listed live, as text, then moved to "earlier".
        await jombang.send({"t": "activity.start", "title": XSS})
        await expect(page.locator("#activities-live li strong")).to_have_text([XSS])
        await jombang.send({"t": "thumb", "jpeg": make_jpeg(seed=1)})
        await page.locator('details[data-kecamatan="Jombang"] > summary').click()
        thumb = card(page, "35.09.01").locator("img.thumb")
        await expect(thumb).to_have_attribute("src", re.compile(r"/api/v1/stations/35\.09\.01/thumbnail\.jpg\?t="))
        await page.wait_for_function("img => img.complete && img.naturalWidth === 320",
                                     arg=await thumb.element_handle())
        await jombang.send({"t": "activity.stop"})
        await expect(page.locator("#activities-earlier li strong")).to_have_text([XSS])
        await expect(page.locator("#activities-live li")).to_have_count(0)

        await jombang.close()
        await expect(card(page, "35.09.01")).to_have_attribute("data-status", "missing")
        await expect(page.locator("#count-on")).to_have_text("0")
        await expect(thumb).not_to_have_attribute("src", re.compile("."))
    finally:
        for beat in beats:
            beat.cancel()
        await secret.close()

    assert await page.locator('img[src="x"]').count() == 0
    assert_private_absent(await page.content())
    assert_private_absent("".join(log.ws_frames))
    assert any('"t":"snapshot"' in frame for frame in log.ws_frames)
    log.assert_clean()


async def test_watch_page_states_low_data_and_privacy(browser: Browser, web_hub: RunningHub) -> None:
    page, log = await open_page(browser, f"{web_hub.http}/watch/35.09.01")
    await expect(page.locator("#name")).to_have_text("Kecamatan Jombang")
    await expect(page.locator("#message-title")).to_have_text("Kantor belum terhubung")
    await expect(page.locator("#viewers")).to_have_text("0 penonton")
    await expect(page.locator("#details")).to_contain_text("00.00–23.59 WIB")
    await expect(page.locator("#today")).to_contain_text("tidak hadir")

    client, _ = await station(web_hub.ws, "35.09.01", await web_hub.token("35.09.01"))
    beat = asyncio.create_task(heartbeat(client))
    try:
        await client.send({"t": "thumb", "jpeg": make_jpeg(seed=2)})
        await client.send({"t": "activity.start", "title": XSS})
        # The hub handles the frame after the send returns: reload once it has, or the page
        # may ask before the activity exists.
        await wait_until(lambda: (web_hub.hub.watchers.view.get("35.09.01", {}).get("activity") or {}).get("title")
                         == XSS, message="the activity on the hub")
        today = web_hub.hub.schedule.local_date(web_hub.hub.clock()).isoformat()
        await wait_until(lambda: web_hub.hub.jejak.day("35.09.01", today), message="the thumbnail kept as jejak")
        await page.reload()  # the page polls every 10 s; a reload asks now
        await expect(page.locator("#jejak-strip img")).to_have_count(1)  # today's strip shows it
        await expect(page.locator("#message-title")).to_have_text("Kantor terhubung, belum siaran")
        await expect(page.locator("#activity")).to_contain_text(XSS)
        await page.locator("#low-data").check()
        still = page.locator("#still")
        await expect(still).to_be_visible()
        await expect(still).to_have_attribute("src", re.compile(r"thumbnail\.jpg"))
        await expect(page.locator("#video")).to_be_hidden()
        assert await page.evaluate("localStorage.getItem('jaga.lowData')") == "1"
    finally:
        beat.cancel()
        await client.close()

    # A station whose name is markup, and a private one: text only, and "not found" alike.
    await page.goto(f"{web_hub.http}/watch/{XSS_STATION}")
    await expect(page.locator("#name")).to_have_text(XSS)
    await page.goto(f"{web_hub.http}/watch/{PRIVATE_ID}")
    await expect(page.locator("#not-found")).to_be_visible()
    assert_private_absent(await page.content())
    assert await page.locator('img[src="x"]').count() == 0
    # The hub answers 404 for the private station's data; that console error is expected.
    log.errors = [e for e in log.errors if "404" not in e]
    log.assert_clean()
    async with httpx.AsyncClient(base_url=web_hub.http, timeout=timeout(5)) as http:
        assert (await http.get(f"/api/v1/stations/{PRIVATE_ID}/thumbnail.jpg")).status_code == 404


async def test_portal_resumes_with_since_after_a_drop(browser: Browser, web_hub: RunningHub) -> None:
    """The page's socket is cut; it reconnects with ?since= and gets only what it missed."""
    sockets: list[tuple[str, WebSocketRoute, list[str]]] = []  # (url, page-side route, frames relayed to the page)

    def relay(route: WebSocketRoute) -> None:
        frames: list[str] = []
        server = route.connect_to_server()

        def to_page(message: str | bytes) -> None:
            frames.append(message if isinstance(message, str) else message.decode())
            route.send(message)

        server.on_message(to_page)
        sockets.append((route.url, route, frames))

    page, log = await open_page(browser)
    await page.route_web_socket(re.compile(r"/ws/watch"), relay)
    await page.goto(f"{web_hub.http}/")
    await expect(page.locator("#conn")).to_have_class(re.compile(r"\bup\b"))
    await expect(page.locator("#count-all")).to_have_text(str(len(PUBLIC_IDS)))
    first_url, first_route, first_frames = sockets[0]
    assert "since=" not in first_url
    seq = json.loads(first_frames[0])["seq"]

    await first_route.close(code=4000, reason="test cuts the line")
    await expect(page.locator("#conn")).to_have_class(re.compile(r"\bdown\b"))
    client, _ = await station(web_hub.ws, "35.09.02", await web_hub.token("35.09.02"))  # changes while away
    beat = asyncio.create_task(heartbeat(client))
    try:
        await expect(card(page, "35.09.02")).to_have_attribute("data-status", "online", timeout=timeout(10) * 1000)
        second_url, _, second_frames = sockets[1]
        assert second_url.endswith(f"/ws/watch?since={seq}")
        assert not any('"t":"snapshot"' in f for f in second_frames), "resumed, so no fresh snapshot"
    finally:
        beat.cancel()
        await client.close()
    log.assert_clean()
