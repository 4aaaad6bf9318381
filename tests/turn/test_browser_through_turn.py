"""Chromium plays a station through coturn: the portal's watch page (hub/static/whep.js) and
the wall's WHEP session (pendopo_wall/static/js/rtc.js), each relay-only.

A test init script makes every ``RTCPeerConnection`` the page creates relay-only
(``iceTransportPolicy: "relay"``, kept across ``setConfiguration``) and records the
``iceServers`` it was given: so the pages' only way to the hub is the TURN server they learnt
from the hub's ``OPTIONS`` Link headers, and a decoded frame proves that path works. The
selected candidate pair's local candidate is checked to be ``relay`` too. The JavaScript Link
parser is checked on the page against what the hub writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiortc import RTCSessionDescription
from playwright.async_api import Browser, Page

from hub.core import turn
from hub.media.seams_peers import close_peer_connection, new_peer_connection
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout, wait_until
from tests.media.peers import PatternTrack, ToneTrack, make_offer, prefer, wait_for_state
from tests.turn.coturn import SECRET, Coturn
from tests.web.browser import frames_decoded, open_page
from tests.web.helpers import WEB_REGISTRY
from tests.wsclient import heartbeat, station

pytestmark = pytest.mark.browser

STATION = "35.09.01"

RELAY_ONLY = """
(() => {
  const Original = window.RTCPeerConnection;
  if (!Original) return;
  window.__jagaPeers = [];
  window.__jagaIceServers = [];
  const relay = (config) => ({ ...(config || {}), iceTransportPolicy: "relay" });
  window.RTCPeerConnection = class extends Original {
    constructor(config, ...rest) {
      super(relay(config), ...rest);
      window.__jagaPeers.push(this);
      window.__jagaIceServers.push((config || {}).iceServers || []);
    }
    setConfiguration(config) {
      window.__jagaIceServers.push((config || {}).iceServers || []);
      return super.setConfiguration(relay(config));
    }
  };
})();
"""

# The local candidate type of each recorded peer connection's selected (succeeded, nominated) pair.
SELECTED_TYPES = """
async () => {
  const types = [];
  for (const pc of window.__jagaPeers) {
    const stats = await pc.getStats();
    stats.forEach((r) => {
      if (r.type === "candidate-pair" && r.nominated && r.state === "succeeded") {
        types.push(stats.get(r.localCandidateId).candidateType);
      }
    });
  }
  return types;
}
"""

WALL_SESSION = """
async (station) => {
  const { WhepSession } = await import("/wall/static/js/rtc.js");
  window.__wall = new WhepSession(station);
  await window.__wall.start();
}
"""


@pytest.fixture
async def hub(tmp_path: Path, coturn: Coturn) -> AsyncIterator[RunningHub]:
    (tmp_path / "stations.csv").write_text(WEB_REGISTRY)
    running = await start_hub(hub_settings(tmp_path, turn={"urls": [coturn.url()], "secret": SECRET, "ttl_s": 600}))
    try:
        yield running
    finally:
        await stop_hub(running)


async def relayed(page: Page, count: int) -> list[str]:
    types: list[str] = await page.evaluate(SELECTED_TYPES)
    return types if len(types) >= count else []


async def test_watch_page_and_wall_decode_through_turn_with_the_hubs_credentials(
        browser: Browser, hub: RunningHub, coturn: Coturn) -> None:
    token = await hub.token(STATION)
    client, _ = await station(hub.ws, STATION, token)
    beat = asyncio.create_task(heartbeat(client))
    publisher = new_peer_connection(())  # a plain publisher: host candidates on loopback
    try:
        publisher.addTransceiver(PatternTrack(), direction="sendonly")
        prefer(publisher, "video", "VP8")
        publisher.addTransceiver(ToneTrack(), direction="sendonly")
        async with httpx.AsyncClient(base_url=hub.http, timeout=timeout(10)) as http:
            created = await http.post(f"/whip/{STATION}", content=await make_offer(publisher),
                                      headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
            assert created.status_code == 201, created.text
            await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
            await wait_for_state(publisher, "connected")
            await wait_until(lambda: _live(http), 10, "the station to go live", every=0.1)

        page, log = await open_page(browser, f"{hub.http}/watch/{STATION}", init_script=RELAY_ONLY)
        first = await wait_until(lambda: frames_decoded(page), 15, "a frame decoded through TURN", every=0.1)
        await wait_until(lambda: frames_decoded(page, beyond=first), 5, "more frames", every=0.1)
        given = await page.evaluate("window.__jagaIceServers")
        assert len(given[0]) == 1 and given[0][0]["urls"] == coturn.url()
        assert given[0][0]["username"].endswith(":viewer") and given[0][0]["credential"]
        assert await wait_until(lambda: relayed(page, 1), 5, "the selected pair") == ["relay"]

        await page.evaluate(WALL_SESSION, STATION)  # the wall's session, on the same (public) station
        await wait_until(lambda: page.evaluate("window.__wall.framesDecoded()"), 15,
                         "the wall's session to decode through TURN", every=0.1)
        assert await wait_until(lambda: relayed(page, 2), 5, "both selected pairs") == ["relay", "relay"]
        assert page_servers_are_fresh(await page.evaluate("window.__jagaIceServers"), coturn)
        assert coturn.allocated_for("viewer")

        # The page's Link parser reads what the hub writes (quoted, escaped, several links in one field).
        header = ", ".join([turn.link_value(turn.IceServer("stun:s:3478")),
                            turn.link_value(turn.IceServer(coturn.url(), '1:a "b", <c>', "x\\y"))])
        parsed = await page.evaluate("""async (header) => {
            const { parseIceServerLinks } = await import("/static/ice_servers.js");
            return parseIceServerLinks(header).concat(parseIceServerLinks('<turn:z>; rel="next", junk'));
        }""", header)
        assert parsed == [{"urls": "stun:s:3478"},
                          {"urls": coturn.url(), "username": '1:a "b", <c>', "credential": "x\\y"}]
        log.assert_clean()
    finally:
        await close_peer_connection(publisher)
        beat.cancel()
        await client.close()


def page_servers_are_fresh(given: list[list[dict[str, str]]], coturn: Coturn) -> bool:
    """The wall set its TURN server (from OPTIONS) on its peer connection before gathering."""
    last = given[-1]
    return len(last) == 1 and last[0]["urls"] == coturn.url() and last[0]["username"].endswith(":viewer")


async def _live(http: httpx.AsyncClient) -> bool:
    return bool((await http.get(f"/api/v1/stations/{STATION}")).json()["state"] == "live")
