"""End to end: the Pendopo wall in headless Chromium against a real hub and real stations.

Two tests, each one browser (the machine has two cores): the overview (login, counters,
tiles, a tile turning `missing`, alarms, an announcement reaching a station, the README
screenshot), and live video (a WHIP publisher, a WHEP grid tile decoding frames, the tile
closed when the grid is left, push-to-talk reaching the station).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest
from aiortc import RTCSessionDescription

from tests.kit import RunningHub, wait_until
from tests.wall.conftest import HOSTILE_TITLE, OPERATOR, REPO, Agent, open_wall, sample_jpeg

pytestmark = pytest.mark.browser

# The README's picture of the wall; refreshed only on request (JAGA_SCREENSHOTS=1), so a test
# run leaves the tracked file alone.
SCREENSHOT = REPO / "docs" / "img" / "wall-overview.png"
ONLINE = ["35.09.01", "35.09.01.2001", "35.09.01.2002", "35.09.01.2003", "35.09.01.2004",
          "35.09.02", "35.09.02.2001", "35.09.19.1004", "35.09.19.1006", "opd.setda"]
SHOWN_LIVE = ["35.09.01", "35.09.01.2002", "35.09.19.1004"]


async def counter(page: Any, status: str) -> int:
    return int(await page.locator(f'#counters [data-status="{status}"] b').text_content())


async def tile_status(page: Any, station_id: str) -> str | None:
    status: str | None = await page.locator(f'.tile[data-id="{station_id}"]').get_attribute("data-status")
    return status


async def tile_is(page: Any, station_id: str, status: str) -> bool:
    return await tile_status(page, station_id) == status


async def _text_is(locator: Any, text: str) -> bool:
    shown: str | None = await locator.text_content()
    return shown == text


async def test_overview_counters_missing_alarm_and_announce(wall_hub: RunningHub, browser: Any) -> None:
    hub = wall_hub
    total = len(hub.hub.registry)
    agents = {sid: await Agent.connect(hub, sid) for sid in ONLINE}
    try:
        for i, agent in enumerate(agents.values()):
            await agent.send({"t": "thumb", "jpeg": sample_jpeg(80 + 11 * i, 100 + 9 * i, 150 - 5 * i)})
        # Shown as live for the screenshot: the same call the relay makes when a WHIP
        # publisher connects (real WHIP is exercised by the live-video test below).
        for sid in SHOWN_LIVE:
            await hub.hub.stations.set_publishing(sid, True)
        await agents["35.09.01.2001"].send({"t": "activity.start", "title": "Musyawarah Desa"})

        page, log = await open_wall(browser, hub)
        live, online = len(SHOWN_LIVE), len(ONLINE) - len(SHOWN_LIVE)
        await wait_until(lambda: _counts_are(page, live=live, online=online, missing=total - len(ONLINE)),
                         message="counters from the snapshot", every=0.1)
        assert await tile_status(page, "35.09.01.2003") == "online"
        assert await tile_status(page, "35.09.01") == "live"
        assert await tile_status(page, "35.09.02.2003") == "missing"

        # What the media watchdog reports (hub.services.media_presence): a station stepped down
        # to audio is still live, told as such; a stalled one is not live, and says why.
        badge = page.locator('.tile[data-id="35.09.01"] .status-badge')
        await hub.hub.stations.set_media("35.09.01", "audio")
        await wait_until(lambda: _text_is(badge, "Live · hanya suara"), message="hanya suara", every=0.1)
        assert await page.locator('.tile[data-id="35.09.01"]').get_attribute("data-media") == "audio"
        await hub.hub.stations.set_media("35.09.01", "")
        await wait_until(lambda: tile_is(page, "35.09.01", "reconnecting"), message="a stall ends live", every=0.1)
        await wait_until(lambda: _text_is(badge, "Siaran terhenti"), message="the stall's label", every=0.1)
        await hub.hub.stations.set_media("35.09.01", "video")
        await wait_until(lambda: _text_is(badge, "Live"), message="live again", every=0.1)

        activity = page.locator('.tile[data-id="35.09.01.2001"] .activity')
        assert await activity.text_content() == "Kegiatan: Musyawarah Desa"

        # Lazy thumbnails: tiles on screen load theirs.
        first = page.locator('.tile[data-id="35.09.01.2003"] img')
        await wait_until(lambda: first.evaluate("img => img.complete && img.naturalWidth > 0"),
                         message="a thumbnail on screen", every=0.1)
        await wait_until(lambda: page.evaluate(
            "() => [...document.querySelectorAll('.tile img')].filter(i => i.naturalWidth > 0).length >= 8"),
            message="thumbnails of the first rows", every=0.1)
        picture = await page.screenshot(path=str(SCREENSHOT) if os.environ.get("JAGA_SCREENSHOTS") == "1" else None)
        assert picture.startswith(b"\x89PNG")

        # What stations send is text, never markup.
        await agents["35.09.01.2003"].send({"t": "activity.start", "title": HOSTILE_TITLE})
        hostile = page.locator('.tile[data-id="35.09.01.2003"] .activity')
        await hostile.wait_for()
        assert await hostile.text_content() == f"Kegiatan: {HOSTILE_TITLE}"
        assert await page.locator(".tile b, img[src='x']").count() == 0
        assert await page.evaluate("window.pwned") is None

        # A station that goes away during office hours turns missing and raises an alarm.
        await agents.pop("35.09.01.2004").close()
        await wait_until(lambda: tile_is(page, "35.09.01.2004", "missing"), message="tile turns missing", every=0.1)
        assert await counter(page, "missing") == total - len(ONLINE) + 1
        badge = page.locator("#alarm-badge")
        assert await badge.is_visible()
        await page.keyboard.press("2")
        row = page.locator('.alarm[data-id="35.09.01.2004"]')
        await row.wait_for()
        ids = await page.locator(".alarm").evaluate_all("rows => rows.map(r => r.dataset.id)")
        assert ids[-1] == "35.09.01.2004", "longest absence first: the newest one comes last"
        before = int(await badge.text_content() or 0)
        await row.locator("button.ack").click()
        assert "acknowledged" in (await row.get_attribute("class") or "")
        acknowledged = await row.locator(".ack-state").text_content() or ""
        assert acknowledged.startswith(f"Diketahui oleh {OPERATOR} pukul ")
        assert int(await badge.text_content() or 0) == before - 1

        # Focus on a station, then announce to it; the station's socket receives it.
        today = hub.hub.schedule.local_date(hub.hub.clock()).isoformat()
        await wait_until(lambda: hub.hub.jejak.day("35.09.19.1006", today), message="its thumbnail kept as jejak")
        await page.keyboard.press("1")
        await page.locator('.tile[data-id="35.09.19.1006"]').click()
        focus = page.locator("#focus")
        await focus.wait_for(state="visible")
        assert await page.locator("#focus-name").text_content() == "Kelurahan Kepatihan"
        await page.locator("#focus-attendance dt", has_text="Status hari ini").wait_for()
        await page.locator("#focus-jejak img").first.wait_for()  # today's jejak strip
        await page.click("#focus-announce")
        await page.fill("#announce-text", "Rapat koordinasi pukul 10.00 di Pendopo")
        await page.click("#announce-send")
        await page.locator("#announce-result", has_text="Terkirim ke 1 stasiun").wait_for()
        message = await agents["35.09.19.1006"].wait_for("announce")
        assert message["text"] == "Rapat koordinasi pukul 10.00 di Pendopo"
        assert message["from"] == OPERATOR
        assert not [m for a in agents.values() if a.id != "35.09.19.1006" for m in a.received if m["t"] == "announce"]
        log.assert_clean()
    finally:
        for agent in agents.values():
            await agent.close()


async def _counts_are(page: Any, **expected: int) -> bool:
    return all([await counter(page, status) == n for status, n in expected.items()])


async def test_live_tile_decodes_and_talk_back(wall_hub: RunningHub, browser: Any) -> None:
    from hub.media.seams_peers import new_peer_connection
    from tests.media.peers import PatternTrack, ToneTrack, make_offer

    hub = wall_hub
    station_id = "35.09.02"
    agent = await Agent.connect(hub, station_id)
    publisher = new_peer_connection(())
    try:
        publisher.addTransceiver(PatternTrack(), direction="sendonly")
        publisher.addTransceiver(ToneTrack(), direction="sendonly")
        offer = await make_offer(publisher)
        async with httpx.AsyncClient(base_url=hub.http) as http:
            answer = await http.post(f"/whip/{station_id}", content=offer, headers={
                "Content-Type": "application/sdp", "Authorization": f"Bearer {agent.token}"})
        assert answer.status_code == 201, answer.text
        await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer.text, type="answer"))

        page, log = await open_wall(browser, hub)
        await wait_until(lambda: tile_is(page, station_id, "live"), 15, "station goes live", every=0.1)

        # The grid opens a WHEP session for the live tile; its frames are decoded.
        await page.keyboard.press("3")
        await page.locator(f'.live-tile[data-id="{station_id}"]').wait_for()
        first = await wait_until(lambda: _frames(page, station_id, at_least=5), 20, "decoded frames", every=0.1)
        await wait_until(lambda: _frames(page, station_id, at_least=first + 10), 10, "frames keep coming", every=0.1)
        assert hub.hub.media.viewer_count(station_id) == 1

        # Focus: the grid behind closes, the focused player decodes with sound.
        await page.locator(f'.live-tile[data-id="{station_id}"]').click()
        await page.locator("#focus").wait_for(state="visible")
        await wait_until(lambda: page.evaluate("async () => (await jagaWall.focus.player.framesDecoded()) > 5"),
                         timeout=20, message="focus video decodes", every=0.1)
        assert await page.locator(".live-tile").count() == 0

        # Push-to-talk: the mic is published as `pendopo`, then the station is told to listen.
        talk = page.locator("#talk")
        await talk.hover()
        await page.mouse.down()
        start = await agent.wait_for("talk.start", wait=15)
        assert start["from"] == OPERATOR
        await wait_until(lambda: hub.hub.media.is_publishing("pendopo"), message="pendopo publishes", every=0.1)
        await page.locator("#talk[data-state=on]").wait_for()
        await page.mouse.up()
        await agent.wait_for("talk.stop")
        await wait_until(lambda: not hub.hub.media.is_publishing("pendopo"), message="pendopo stops", every=0.1)

        # Leaving the video views ends every WHEP session on the relay (DELETE).
        await page.keyboard.press("Escape")
        await page.keyboard.press("1")
        await wait_until(lambda: hub.hub.media.viewer_count(station_id) == 0, message="viewers closed", every=0.1)
        log.assert_clean()
    finally:
        await publisher.close()
        await agent.close()


async def _frames(page: Any, station_id: str, at_least: int) -> int:
    stats = await page.evaluate("() => jagaWall.grid.stats()")
    frames = int(stats.get(station_id, 0))
    return frames if frames >= at_least else 0
