"""Chromium plays a test-pattern agent's LL-HLS and plain HLS through the shipped nginx, its
HLS cache on (issue 17): the watch page in HLS mode over HTTPS/2, and hls.js on the plain
playlist; each delay (wall clock minus the program date-time at the playhead) is reported."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page

from tests.clients.helpers import agent_config, start_agent
from tests.kit import timeout
from tests.proxy.conftest import Proxied
from tests.web.browser import open_page

pytestmark = pytest.mark.browser

STATION = "35.09.01"
HLS = {"hls": {"part_s": 0.5, "segment_s": 2.0}, "recording": {"enabled": False}}
MAX_DELAY_MS = 20_000

# hls.js on the plain playlist in the page's own origin (the same vendored module the watch
# page loads); resolves with the delay once the picture has moved for two seconds
PLAY_PLAIN = """async (url) => {
  const Hls = (await import('/static/vendor/hls.light.min.js')).default;
  const video = document.createElement('video');
  video.muted = true;
  document.body.append(video);
  const hls = new Hls({lowLatencyMode: false, enableWorker: false});
  hls.loadSource(url);
  hls.attachMedia(video);
  video.play().catch(() => {});
  const started = await new Promise((resolve, reject) => {
    hls.on(Hls.Events.ERROR, (_, data) => { if (data.fatal) reject(new Error(data.details)); });
    const check = () => video.currentTime > 0 ? resolve(video.currentTime) : setTimeout(check, 100);
    check();
  });
  await new Promise((resolve) => {
    const check = () => video.currentTime > started + 2 ? resolve() : setTimeout(check, 100);
    check();
  });
  return Date.now() - hls.playingDate.getTime();
}"""


async def test_chromium_plays_ll_hls_and_plain_hls_through_the_nginx_cache(
        proxied: Callable[..., Awaitable[Proxied]], trusting_browser: Browser, tmp_path: Path) -> None:
    deployment = await proxied(**HLS)
    hub = deployment.running
    agent = await start_agent(agent_config(tmp_path, hub, STATION, await hub.token(STATION), video={"codec": "H264"}))
    pages: list[Page] = []
    try:
        await agent.wait_until(lambda a: a.state == "live", 20)
        page, log = await open_page(trusting_browser, ignore_https_errors=False)
        pages.append(page)
        await page.goto(f"{deployment.url}/watch/{STATION}?mode=hls")
        await page.wait_for_function("() => document.body.dataset.playMode === 'hls'", timeout=timeout(20) * 1000)
        await page.wait_for_function("() => document.getElementById('video').currentTime > 2",
                                     timeout=timeout(30) * 1000)
        await page.wait_for_function("() => Number(document.body.dataset.delayMs) > 0", timeout=timeout(15) * 1000)
        low_latency_ms = int(await page.evaluate("() => Number(document.body.dataset.delayMs)"))

        plain_page, plain_log = await open_page(trusting_browser, ignore_https_errors=False)
        pages.append(plain_page)
        await plain_page.goto(f"{deployment.url}/watch/{STATION}?mode=hls")
        plain_ms = int(await plain_page.evaluate(PLAY_PLAIN, f"/hls/{STATION}/plain.m3u8"))
    finally:
        # The players go before the station does: a blocking playlist request still waiting
        # when the publisher stops is (rightly) answered 404 "hls_gone", which a page that
        # is still open logs as an error of its own.
        for opened in pages:
            await opened.context.close()
        await agent.stop()

    print(f"\nthrough nginx: LL-HLS delay {low_latency_ms} ms, plain HLS delay {plain_ms} ms")
    assert 0 < low_latency_ms < MAX_DELAY_MS and 0 < plain_ms < MAX_DELAY_MS
    served = (deployment.nginx.home / "access.log").read_text()
    assert f"/hls/{STATION}/index.m3u8" in served and f"/hls/{STATION}/plain.m3u8" in served  # through nginx
    assert hub.hub.hls.metrics()["requests_blocking"] > 0  # LL: blocking playlist reloads
    log.assert_clean()
    plain_log.assert_clean()
