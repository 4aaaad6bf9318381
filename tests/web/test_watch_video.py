"""The watch page plays a real publisher: aiortc over WHIP in, Chromium over WHEP out.

``framesDecoded`` from ``getStats()`` is the signal that video really plays (see
:func:`tests.web.browser.frames_decoded`).
"""

from __future__ import annotations

import asyncio

import httpx
import pytest
from aiortc import RTCPeerConnection
from playwright.async_api import Browser, expect

from tests.kit import RunningHub, timeout, wait_until
from tests.web.browser import RECORD_PEERS, frames_decoded, open_page
from tests.wsclient import heartbeat, station

pytestmark = pytest.mark.browser

async def publish_over_whip(hub: RunningHub, station_id: str, token: str) -> tuple[RTCPeerConnection, str]:
    from aiortc import RTCSessionDescription

    from hub.media.seams_peers import new_peer_connection
    from tests.media.peers import PatternTrack, ToneTrack, make_offer, prefer

    pc = new_peer_connection(())
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    prefer(pc, "video", "VP8")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    offer = await make_offer(pc)
    async with httpx.AsyncClient(base_url=hub.http, timeout=timeout(10)) as http:
        response = await http.post(f"/whip/{station_id}", content=offer,
                                   headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
    assert response.status_code == 201, response.text
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return pc, response.headers["Location"]


async def test_watch_page_decodes_a_whip_publisher(browser: Browser, web_hub: RunningHub) -> None:
    station_id = "35.09.01"
    token = await web_hub.token(station_id)
    client, _ = await station(web_hub.ws, station_id, token)
    beat = asyncio.create_task(heartbeat(client))
    publisher, _ = await publish_over_whip(web_hub, station_id, token)
    http = httpx.AsyncClient(base_url=web_hub.http, timeout=timeout(5))
    try:
        async def station_is(field: str, value: object) -> bool:
            return bool((await http.get(f"/api/v1/stations/{station_id}")).json()[field] == value)

        await wait_until(lambda: station_is("state", "live"), 10, "the station to go live", every=0.1)
        page, log = await open_page(browser, f"{web_hub.http}/watch/{station_id}", init_script=RECORD_PEERS)
        await expect(page.locator("#video")).to_be_visible()
        first = await wait_until(lambda: frames_decoded(page), 10, "a first decoded frame", every=0.1)
        await wait_until(lambda: frames_decoded(page, beyond=first), 5, "more decoded frames", every=0.1)
        await wait_until(lambda: station_is("viewers", 1), 5, "the hub to count one viewer", every=0.1)

        await expect(page.locator("#unmute")).to_be_visible()  # muted autoplay, sound after a tap
        await page.locator("#unmute").click()
        assert await page.evaluate("document.getElementById('video').muted") is False
        await expect(page.locator("#unmute")).to_be_hidden()

        await page.goto("about:blank")  # pagehide: the page DELETEs its WHEP session
        await wait_until(lambda: station_is("viewers", 0), 10, "the viewer to be gone", every=0.1)
        log.assert_clean()
    finally:
        await http.aclose()
        await publisher.close()
        beat.cancel()
        await client.close()
