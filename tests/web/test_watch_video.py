"""The watch page plays a real publisher: aiortc over WHIP in, Chromium over WHEP out.

``framesDecoded`` from ``getStats()`` is the signal that video really plays. The page's own
RTCPeerConnection is reached through an init script that records every one created (test
side only: the page keeps no global).
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from playwright.async_api import expect

from tests.conftest import RunningHub, timeout
from tests.web.browser import open_page
from tests.web.helpers import heartbeat_forever
from tests.wsclient import station

pytestmark = pytest.mark.browser

RECORD_PEERS = """
(() => {
  const Original = window.RTCPeerConnection;
  if (!Original) return;
  window.__jagaPeers = [];
  window.RTCPeerConnection = class extends Original {
    constructor(...args) { super(...args); window.__jagaPeers.push(this); }
  };
})();
"""
FRAMES_DECODED = """
async () => {
  let frames = 0;
  for (const pc of window.__jagaPeers || []) {
    (await pc.getStats()).forEach((r) => {
      if (r.type === "inbound-rtp" && r.kind === "video") frames += r.framesDecoded || 0;
    });
  }
  return frames;
}
"""


async def until(check, deadline_s: float, what: str):  # type: ignore[no-untyped-def]
    """Poll ``check`` (async, returns a value or None/False) until truthy or the deadline."""
    deadline = time.monotonic() + timeout(deadline_s)
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)  # polling interval, not a settle delay


async def publish_over_whip(hub: RunningHub, station_id: str, token: str):  # type: ignore[no-untyped-def]
    from aiortc import RTCSessionDescription

    from hub.media.aiortc_seams import new_peer_connection
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


async def test_watch_page_decodes_a_whip_publisher(browser, web_hub: RunningHub) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("hub.routes.media", reason="WHIP/WHEP routes (hub/routes/media.py) not wired yet")
    station_id = "35.09.01"
    token = await web_hub.token(station_id)
    client, _ = await station(web_hub.ws, station_id, token)
    beat = asyncio.create_task(heartbeat_forever(client))
    publisher, _ = await publish_over_whip(web_hub, station_id, token)
    http = httpx.AsyncClient(base_url=web_hub.http, timeout=timeout(5))
    try:
        async def station_is(field: str, value: object) -> bool:
            return (await http.get(f"/api/v1/stations/{station_id}")).json()[field] == value

        await until(lambda: station_is("state", "live"), 10, "the station to go live")
        page, log = await open_page(browser, f"{web_hub.http}/watch/{station_id}", init_script=RECORD_PEERS)
        await expect(page.locator("#video")).to_be_visible()
        first = await until(lambda: page.evaluate(FRAMES_DECODED), 10, "a first decoded frame")
        await until(lambda: _more(page, first), 5, "more decoded frames")
        await until(lambda: station_is("viewers", 1), 5, "the hub to count one viewer")

        await expect(page.locator("#unmute")).to_be_visible()  # muted autoplay, sound after a tap
        await page.locator("#unmute").click()
        assert await page.evaluate("document.getElementById('video').muted") is False
        await expect(page.locator("#unmute")).to_be_hidden()

        await page.goto("about:blank")  # pagehide: the page DELETEs its WHEP session
        await until(lambda: station_is("viewers", 0), 10, "the viewer to be gone")
        log.assert_clean()
    finally:
        await http.aclose()
        await publisher.close()
        beat.cancel()
        await client.close()


async def _more(page, than: int) -> bool:  # type: ignore[no-untyped-def]
    return await page.evaluate(FRAMES_DECODED) > than
