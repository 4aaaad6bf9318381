"""The watch page's second way to play: HLS (the hub's low-latency HLS, remuxed H.264).

A real aiortc publisher over WHIP, the hub's real ``/hls`` routes, Chromium playing them with
the vendored hls.js. WebRTC is refused by setting the viewer cap to 0 (WHEP answers 503), so
the fallback is the page's own decision. ``document.body.dataset.playMode`` and ``delayMs``
are what the page exposes for these tests; the picture plays when ``currentTime`` advances
(HLS) or ``framesDecoded`` grows (WebRTC).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from aiortc import RTCSessionDescription
from playwright.async_api import Browser, Page, expect

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout, wait_until
from tests.web.browser import RECORD_PEERS, PageLog, frames_decoded, open_page
from tests.web.helpers import WEB_REGISTRY
from tests.wsclient import heartbeat, station

pytestmark = pytest.mark.browser

STATION = "35.09.01"
HLS_JS = "/static/vendor/hls.light.min.js"
MAX_DELAY_MS = 20000


@contextlib.asynccontextmanager
async def hub_with(tmp_path: Path, **media: float) -> AsyncIterator[RunningHub]:
    """A hub on the web registry with these ``[media]`` settings."""
    (tmp_path / "stations.csv").write_text(WEB_REGISTRY)
    running = await start_hub(hub_settings(tmp_path, media=media))
    try:
        yield running
    finally:
        await stop_hub(running)


@pytest.fixture
async def full_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub whose WebRTC viewer cap is already reached: every WHEP offer gets 503."""
    async with hub_with(tmp_path, max_viewers_per_station=0) as running:
        yield running


@contextlib.asynccontextmanager
async def publishing(hub: RunningHub, station_id: str, codec: str) -> AsyncIterator[None]:
    """The station connected, heartbeating and publishing ``codec`` video and a tone over WHIP
    (aiortc: H264 through libx264, or VP8); entered once the hub says it is live."""
    from hub.media.seams_peers import close_peer_connection, new_peer_connection
    from tests.media.peers import PatternTrack, ToneTrack, make_offer, prefer

    token = await hub.token(station_id)
    client, _ = await station(hub.ws, station_id, token)
    beat = asyncio.create_task(heartbeat(client))
    pc = new_peer_connection(())
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    prefer(pc, "video", codec)
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    async with httpx.AsyncClient(base_url=hub.http, timeout=timeout(10)) as http:
        try:
            offer = await make_offer(pc)
            response = await http.post(f"/whip/{station_id}", content=offer,
                                       headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
            assert response.status_code == 201, response.text
            await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))

            async def live() -> bool:
                return bool((await http.get(f"/api/v1/stations/{station_id}")).json()["state"] == "live")

            await wait_until(live, 10, "the station to go live", every=0.1)
            yield
        finally:
            await close_peer_connection(pc)
            beat.cancel()
            await client.close()


@contextlib.asynccontextmanager
async def another_viewer_took_the_turn(hub: RunningHub) -> AsyncIterator[None]:
    """A public WHEP viewer answered first (aiortc, never connected): with joins paced, the
    current turn is taken and the page's offer gets the next one."""
    from hub.media.seams_peers import close_peer_connection, new_peer_connection
    from tests.media.peers import make_offer

    ahead = new_peer_connection(())
    ahead.addTransceiver("video", direction="recvonly")
    try:
        async with httpx.AsyncClient(base_url=hub.http, timeout=timeout(10)) as http:
            answered = await http.post(f"/whep/{STATION}", content=await make_offer(ahead),
                                       headers={"Content-Type": "application/sdp"})
            assert answered.status_code == 201, answered.text
        yield
    finally:
        await close_peer_connection(ahead)


async def wait_for_mode(page: Page, mode: str, seconds: float = 20) -> None:
    await page.wait_for_function("(mode) => document.body.dataset.playMode === mode", arg=mode,
                                 timeout=timeout(seconds) * 1000)


async def hls_plays(page: Page) -> None:
    """The HLS picture moves: ``currentTime`` advances by more than a second."""
    await page.wait_for_function("() => document.getElementById('video').currentTime > 0",
                                 timeout=timeout(30) * 1000)
    start = float(await page.evaluate("() => document.getElementById('video').currentTime"))
    await page.wait_for_function("(t) => document.getElementById('video').currentTime > t + 1", arg=start,
                                 timeout=timeout(15) * 1000)


async def delay_shown(page: Page) -> int:
    """The page's delay (``dataset.delayMs``) once it is known, after a few readings."""
    await page.wait_for_function("() => Number(document.body.dataset.delayMs) > 0", timeout=timeout(15) * 1000)
    readings = await page.evaluate("() => Number(document.body.dataset.delayReadings)")
    # a later reading (every 2 s): the first one may still carry the start-up. Counted, not
    # compared: a steady WebRTC delay reads the same milliseconds twice
    await page.wait_for_function("(n) => Number(document.body.dataset.delayReadings) > n", arg=readings,
                                 timeout=timeout(10) * 1000)
    await page.wait_for_function("() => Number(document.body.dataset.delayMs) > 0", timeout=timeout(15) * 1000)
    return int(await page.evaluate("() => Number(document.body.dataset.delayMs)"))


def assert_clean_but(log: PageLog, *statuses: int) -> None:
    """No page errors other than the console's own line for an expected HTTP refusal."""
    expected = tuple(f"status of {status}" for status in statuses)
    log.errors = [e for e in log.errors if not (e.startswith("Failed to load resource") and e.endswith(")")
                                                and any(x in e for x in expected))]
    log.assert_clean()


async def test_webrtc_refused_at_the_cap_plays_hls_without_a_click(browser: Browser, full_hub: RunningHub) -> None:
    async with publishing(full_hub, STATION, "H264"):
        page, log = await open_page(browser, f"{full_hub.http}/watch/{STATION}")
        await wait_for_mode(page, "hls")
        await hls_plays(page)
        delay = await delay_shown(page)
        print(f"\nHLS fallback delay: {delay} ms")
        assert 0 < delay < MAX_DELAY_MS
        await expect(page.locator("#play-mode-text")).to_have_text(
            re.compile(r"^Mode: HLS \(cadangan\) · tunda ±\d+,\d dtk$"))
        await expect(page.locator("#mode-switch")).to_have_text("Pakai WebRTC")
        await expect(page.locator("#message")).to_be_hidden()
        assert await _loaded(page, HLS_JS)  # fetched now, not with the page
        assert any(f"503 {full_hub.http}/whep/{STATION}" == f for f in log.failed), log.failed
        assert_clean_but(log, 503)


async def test_a_shared_hls_link_plays_hls_and_the_switch_moves_to_webrtc(browser: Browser,
                                                                          web_hub: RunningHub) -> None:
    async with publishing(web_hub, STATION, "H264"):
        page, log = await open_page(browser, f"{web_hub.http}/watch/{STATION}?mode=hls", init_script=RECORD_PEERS)
        await wait_for_mode(page, "hls")
        await hls_plays(page)
        hls_delay = await delay_shown(page)
        print(f"\nHLS (chosen) delay: {hls_delay} ms")
        assert 0 < hls_delay < MAX_DELAY_MS
        await expect(page.locator("#play-mode-text")).to_contain_text("Mode: HLS · tunda ±")
        assert await page.evaluate("() => window.__jagaPeers.length") == 0  # no WebRTC was tried

        await page.locator("#mode-switch").click()
        await wait_for_mode(page, "webrtc")
        first = await wait_until(lambda: frames_decoded(page), 10, "a first decoded frame", every=0.1)
        await wait_until(lambda: frames_decoded(page, beyond=first), 5, "more decoded frames", every=0.1)
        await page.wait_for_function("() => document.getElementById('video').srcObject !== null")
        rtc_delay = await delay_shown(page)
        print(f"WebRTC delay: {rtc_delay} ms")
        assert 0 < rtc_delay < MAX_DELAY_MS
        await expect(page.locator("#play-mode-text")).to_contain_text("Mode: WebRTC · tunda ±")
        await expect(page.locator("#mode-switch")).to_have_text("Pakai HLS")
        assert "mode=hls" not in page.url  # the address follows the choice (a link shared now plays WebRTC)
        assert_clean_but(log, 503)  # 503 hls_starting: the hub began packaging on the first request


# WebRTC that can never connect, as on a network that drops UDP with no TURN server: every
# peer connection the page makes may use relay candidates only, and there are none.
NO_ICE = """
(() => {
  const Original = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Original {
    constructor(config) { super({ ...(config || {}), iceTransportPolicy: "relay" }); }
  };
})();
"""


async def test_webrtc_that_brings_no_media_gives_way_to_hls(browser: Browser, web_hub: RunningHub) -> None:
    async with publishing(web_hub, STATION, "H264"):
        page, log = await open_page(browser, f"{web_hub.http}/watch/{STATION}", init_script=NO_ICE)
        await wait_for_mode(page, "webrtc")
        await wait_for_mode(page, "hls", seconds=30)  # the page gives WebRTC about 8 s (or ICE fails first)
        await hls_plays(page)
        await expect(page.locator("#play-mode-text")).to_contain_text("Mode: HLS (cadangan)")

        relay = web_hub.hub.media  # the WHEP session that never connected was deleted
        await wait_until(lambda: relay.metrics()["viewers"] == 0, 10, "the failed WebRTC session to end", every=0.1)
        assert_clean_but(log, 503)


@pytest.fixture
async def pacing_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub giving public viewers a turn to join every 15 s, an offer waiting up to 20 s."""
    async with hub_with(tmp_path, public_joins_per_s=1 / 15, public_join_wait_s=20.0) as running:
        yield running


@pytest.fixture
async def busy_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub giving public viewers a turn to join every 15 s, an offer waiting up to 5 s: the
    second viewer within 10 s of the first is refused 503 ``busy``."""
    async with hub_with(tmp_path, public_joins_per_s=1 / 15, public_join_wait_s=5.0) as running:
        yield running


async def test_a_webrtc_offer_waiting_for_its_turn_is_not_given_up_for_hls(browser: Browser,
                                                                           pacing_hub: RunningHub) -> None:
    """In a crowd the hub holds an offer for its turn (``media.public_joins_per_s``): the page's
    no-media watchdog (8 s) counts from the answer, so an offer that waits ≈ 15 s for its turn
    still plays WebRTC, and HLS is never tried."""
    async with publishing(pacing_hub, STATION, "H264"), another_viewer_took_the_turn(pacing_hub):
        page, log = await open_page(browser, f"{pacing_hub.http}/watch/{STATION}", init_script=RECORD_PEERS)
        await wait_for_mode(page, "webrtc")
        relay = pacing_hub.hub.media
        await wait_until(lambda: relay.metrics()["joins_waiting"] == 1, 10, "the page's offer waiting", every=0.1)
        first = await wait_until(lambda: frames_decoded(page), 30, "a first decoded frame", every=0.2)
        await wait_until(lambda: frames_decoded(page, beyond=first), 5, "more decoded frames", every=0.1)
        assert relay.metrics()["join_wait_ms"] > 8000  # longer than the watchdog: it counted from the answer
        assert await page.evaluate("() => document.body.dataset.playMode") == "webrtc"
        assert not await _loaded(page, HLS_JS)
        log.assert_clean()


async def test_a_vp8_station_refused_busy_tries_webrtc_again_after_retry_after(browser: Browser,
                                                                              busy_hub: RunningHub) -> None:
    """A crowd joining at once (here: another viewer took the turn, the next is 15 s away and an
    offer may wait 5): the page is refused 503 ``busy`` with Retry-After ≈ 10 s. A VP8 station
    has no HLS, so the page says a turn is coming and offers again after the Retry-After plus
    at most 5 s — not the 30 s of a full station — and then plays WebRTC."""
    relay = busy_hub.hub.media
    async with publishing(busy_hub, STATION, "VP8"), another_viewer_took_the_turn(busy_hub):
        page, log = await open_page(browser, f"{busy_hub.http}/watch/{STATION}", init_script=RECORD_PEERS)
        await expect(page.locator("#message-title")).to_have_text(
            "Banyak penonton sedang bergabung; giliran Anda sebentar lagi…", timeout=timeout(15) * 1000)
        assert relay.metrics()["joins_refused_busy"] == 1
        # back after Retry-After (≤ 10 s) + ≤ 5 s, answered at its turn: a full station's
        # 30 s would not show a picture within 25
        first = await wait_until(lambda: frames_decoded(page), 25, "a first decoded frame", every=0.2)
        await wait_for_mode(page, "webrtc", 5)
        await wait_until(lambda: frames_decoded(page, beyond=first), 5, "more decoded frames", every=0.1)
        assert relay.metrics()["joins_refused_busy"] == 1  # told when, it came back in time
        assert not await _loaded(page, HLS_JS)
        assert_clean_but(log, 503, 409)


async def test_a_vp8_station_with_webrtc_full_says_so_and_loads_no_hls_player(browser: Browser,
                                                                             full_hub: RunningHub) -> None:
    async with publishing(full_hub, STATION, "VP8"):
        page, log = await open_page(browser, f"{full_hub.http}/watch/{STATION}")
        await expect(page.locator("#message-title")).to_have_text(
            "Kantor ini hanya bisa ditonton lewat WebRTC; kapasitas penuh, coba lagi sebentar lagi.",
            timeout=timeout(15) * 1000)
        assert await page.evaluate("() => document.body.dataset.playMode") == ""
        await expect(page.locator("#video")).to_be_hidden()
        await expect(page.locator("#play-mode")).to_be_hidden()
        assert f"409 {full_hub.http}/hls/{STATION}/index.m3u8" in log.failed, log.failed
        assert not await _loaded(page, HLS_JS)  # the 409 came before any of hls.js was fetched
        assert_clean_but(log, 503, 409)

        # A shared ?mode=hls link to it: told why, then WebRTC (full here, so the same message)
        await page.goto(f"{full_hub.http}/watch/{STATION}?mode=hls")
        await expect(page.locator("#mode-note")).to_have_text("Kantor ini hanya bisa ditonton lewat WebRTC.")
        await expect(page.locator("#message-title")).to_have_text(
            "Kantor ini hanya bisa ditonton lewat WebRTC; kapasitas penuh, coba lagi sebentar lagi.",
            timeout=timeout(15) * 1000)
        assert "mode=hls" not in page.url
        assert not await _loaded(page, HLS_JS)
        assert_clean_but(log, 503, 409)


async def _loaded(page: Page, path: str) -> bool:
    """Whether the page fetched ``path`` (the resource timing list: lazy scripts included)."""
    return bool(await page.evaluate(
        "(path) => performance.getEntriesByType('resource').some((e) => new URL(e.name).pathname === path)", path))
