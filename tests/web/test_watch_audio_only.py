"""The watch page on a weak link: the hub stops this browser's video (its real RTCP reports,
judged with a policy under which every interval counts as congested), the page shows the
audio-only notice over the station's thumbnail while the sound plays on, and returns to
video when the hub does. Then a station that itself sends only sound (``media: "audio"``)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from playwright.async_api import Browser, Page, Route, expect

from hub.media.congestion import CongestionPolicy
from tests.kit import RunningHub, timeout, wait_until
from tests.web.browser import RECORD_PEERS, frames_decoded, open_page
from tests.web.test_watch_video import publish_over_whip
from tests.wsclient import heartbeat, station

pytestmark = pytest.mark.browser

STATION = "35.09.01"
# Loss can never be below -1: every interval with packets is "congested", so the hub stops
# this viewer's video from its genuine reports. A 10 s back-off keeps the notice up a while.
EVERYTHING_CONGESTED = CongestionPolicy(loss_off=-1.0, congested_s=1.0, backoff_s=10.0, max_backoff_s=10.0)
AUDIO_PACKETS = """
async () => {
  let packets = 0;
  for (const pc of window.__jagaPeers || []) {
    (await pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "audio") packets += r.packetsReceived || 0;
    });
  }
  return packets;
}
"""


async def test_the_watch_page_shows_audio_only_while_the_hub_stops_its_video(browser: Browser,
                                                                            web_hub: RunningHub) -> None:
    token = await web_hub.token(STATION)
    client, _ = await station(web_hub.ws, STATION, token)
    beat = asyncio.create_task(heartbeat(client))
    publisher, _ = await publish_over_whip(web_hub, STATION, token)
    relay = web_hub.hub.media
    http = httpx.AsyncClient(base_url=web_hub.http, timeout=timeout(5))
    page: Page | None = None
    try:
        async def live_with_thumbnail() -> bool:
            found = (await http.get(f"/api/v1/stations/{STATION}")).json()
            return bool(found["state"] == "live" and found["thumb_at"])

        await wait_until(live_with_thumbnail, 15, "the station to be live with a thumbnail", every=0.1)
        relay.set_congestion_policy(EVERYTHING_CONGESTED)
        page, log = await open_page(browser, f"{web_hub.http}/watch/{STATION}", init_script=RECORD_PEERS)
        await wait_until(lambda: frames_decoded(page), 10, "a first decoded frame", every=0.1)

        note, still = page.locator("#audio-only"), page.locator("#still")
        await expect(note).to_be_visible(timeout=timeout(20) * 1000)
        await expect(note).to_contain_text("Hanya suara: jaringan Anda terlalu lambat untuk video. "
                                           "Gambar diperbarui tiap 10 detik.")
        await expect(still).to_be_visible()
        assert f"/api/v1/stations/{STATION}/thumbnail.jpg" in (await still.get_attribute("src") or "")
        assert relay.metrics()["viewers_audio_only"] == 1
        sound = int(await page.evaluate(AUDIO_PACKETS))
        await wait_until(lambda: _more(page, AUDIO_PACKETS, sound + 50), 5, "the sound to play on", every=0.1)

        relay.set_congestion_policy(CongestionPolicy())  # the link is fine: the next probe holds
        await expect(note).to_be_hidden(timeout=timeout(20) * 1000)
        await expect(still).to_be_hidden()
        frames = await frames_decoded(page)
        await wait_until(lambda: frames_decoded(page, beyond=frames + 10), 5, "video again", every=0.1)

        async def audio_station(route: Route) -> None:  # the presence field of a stepped-down station
            response = await route.fetch()
            await route.fulfill(response=response, json={**json.loads(await response.text()), "media": "audio"})

        await page.route(f"**/api/v1/stations/{STATION}", audio_station)
        await page.reload()
        await expect(note).to_have_text("Hanya suara: kantor sedang mengirim suara saja (jaringan kantor lemah).")
        await expect(still).to_be_visible()
        log.assert_clean()
    finally:
        if page is not None:  # its context would outlive the test, polling through the route
            await page.unroute_all(behavior="ignoreErrors")  # into a hub that has stopped
            await page.context.close()
        await http.aclose()
        await publisher.close()
        beat.cancel()
        await client.close()


async def _more(page: Page, script: str, than: int) -> bool:
    return int(await page.evaluate(script)) > than
