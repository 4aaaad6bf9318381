"""Headless Chromium for browser tests (the public portal, the Pendopo wall): one launcher.

Use it from a test module (``tests/conftest.py`` registers the ``browser`` fixture)::

    from tests.web.browser import open_page

    pytestmark = pytest.mark.browser

    async def test_something(browser, hub):
        page, log = await open_page(browser, f"{hub.http}/")
        ...
        log.assert_clean()

What it knows (see ../shared/TESTING.md):

* Debian's Chromium at ``/usr/lib/chromium/chromium`` (not the ``/usr/bin`` shell wrapper),
  driven by Playwright's Python API; ``playwright install`` is never used. ``JAGA_CHROMIUM``
  overrides the path. Missing binary: the test is skipped, unless ``CI=true``, where that
  is a failure (a CI that silently skips every browser test proves nothing).
* Only the last ``--disable-features=`` switch counts, so Playwright's own list (copied from
  Playwright 1.65's ``chromiumSwitches``) is merged with ours into one switch.
* WebRTC on loopback: ``--allow-loopback-in-peer-connection``, and
  ``WebRtcHideLocalIpsWithMdns`` disabled so host candidates are real addresses, not
  ``.local`` names that aiortc would try to resolve over multicast.
* The fake camera and microphone (a timer picture and a beep) for publishing pages.

Each ``browser`` fixture is one Chromium process (~0.3 core while busy): keep tests few and
give each one a fresh context through :func:`open_page`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.kit import timeout

if TYPE_CHECKING:  # Playwright itself is imported when a browser is launched, not by every test run
    from playwright.async_api import Browser, Page, ViewportSize

CHROMIUM = Path(os.environ.get("JAGA_CHROMIUM", "/usr/lib/chromium/chromium"))

# Playwright 1.65 passes these itself; a second --disable-features would silently drop them.
PLAYWRIGHT_DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync", "DestroyProfileOnBrowserClose", "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable", "LensOverlay", "MediaRouter", "PaintHolding",
    "ThirdPartyStoragePartitioning", "AvoidCorsURLLoaderRestartOnRedirect", "TcpPortRandomizationWin",
    "OptimizationHints", "NetworkTimeServiceQuerying", "AimEnabled", "PreconnectToSearch",
    "msForceBrowserSignIn", "msEdgeUpdateLaunchServicesPreferredVersion",
]
DISABLED_FEATURES = [*PLAYWRIGHT_DISABLED_FEATURES, "WebRtcHideLocalIpsWithMdns"]
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection", "--autoplay-policy=no-user-gesture-required",
]

PHONE: ViewportSize = {"width": 390, "height": 844}  # a common phone viewport, the portal's first target


def chromium_args(extra_disabled_features: tuple[str, ...] = ()) -> list[str]:
    """The launch switches, with every disabled feature in ONE ``--disable-features``."""
    features = ",".join(dict.fromkeys([*DISABLED_FEATURES, *extra_disabled_features]))
    return [*CHROMIUM_ARGS, f"--disable-features={features}"]


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"Chromium not found at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """One headless Chromium for one test."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                    args=chromium_args(), timeout=timeout(30) * 1000)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class PageLog:
    """What a page did: console errors, uncaught exceptions, dialogs, bytes on the wire."""

    errors: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "404 http://…" for every HTTP error response
    dialogs: list[str] = field(default_factory=list)
    http_bytes: dict[str, int] = field(default_factory=dict)  # URL → headers + encoded body
    ws_frames: list[str] = field(default_factory=list)  # text of every frame received
    ws_bytes: int = 0
    _pending: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def total_bytes(self) -> int:
        return sum(self.http_bytes.values()) + self.ws_bytes

    async def settle(self) -> None:
        """Wait for the byte counts of finished requests (sizes() is itself async)."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)

    def assert_clean(self) -> None:
        assert not self.errors, f"page errors: {self.errors}; failed responses: {self.failed}"
        assert not self.dialogs, f"page opened dialogs (script ran?): {self.dialogs}"


def _watch(page: Page, log: PageLog) -> None:
    def console(message: Any) -> None:
        if message.type == "error":
            log.errors.append(message.text)

    async def count(request: Any) -> None:
        sizes = await request.sizes()
        log.http_bytes[request.url] = log.http_bytes.get(request.url, 0) + \
            sizes["responseHeadersSize"] + sizes["responseBodySize"]

    def finished(request: Any) -> None:
        task = asyncio.ensure_future(count(request))
        log._pending.add(task)
        task.add_done_callback(log._pending.discard)

    def dialog(found: Any) -> None:
        log.dialogs.append(f"{found.type}: {found.message}")
        asyncio.ensure_future(found.dismiss())

    def websocket(socket: Any) -> None:
        def received(payload: str | bytes) -> None:
            log.ws_bytes += len(payload.encode() if isinstance(payload, str) else payload)
            log.ws_frames.append(payload if isinstance(payload, str) else payload.decode("latin-1"))

        socket.on("framereceived", received)

    def response(found: Any) -> None:
        if found.status >= 400:
            log.failed.append(f"{found.status} {found.url}")

    page.on("response", response)
    page.on("console", console)
    page.on("pageerror", lambda error: log.errors.append(f"uncaught: {error}"))
    page.on("requestfinished", finished)
    page.on("dialog", dialog)
    page.on("websocket", websocket)


async def open_page(browser: Browser, url: str | None = None, *, viewport: ViewportSize | None = None,
                    init_script: str | None = None, **context_options: Any) -> tuple[Page, PageLog]:
    """A page in a fresh context (phone-sized by default), logged; navigated to ``url`` if given.

    The context closes with the browser; call ``page.context.close()`` to end it sooner.
    """
    context = await browser.new_context(viewport=viewport or PHONE, locale="id-ID",
                                        timezone_id="Asia/Jakarta", **context_options)
    context.set_default_timeout(timeout(10) * 1000)
    if init_script:
        await context.add_init_script(init_script)
    page = await context.new_page()
    log = PageLog()
    _watch(page, log)
    if url is not None:
        await page.goto(url)
    return page, log


# -- is the video playing? ------------------------------------------------------------------

# An init script recording every RTCPeerConnection a page creates (test side only: the pages
# keep no global), so that their getStats() can be read.
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
_FRAMES_DECODED = """
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


async def frames_decoded(page: Page, beyond: int = 0) -> int:
    """Video frames the page's peer connections decoded (``framesDecoded``: the reliable sign
    that video plays), or 0 while that is not more than ``beyond``. Needs :data:`RECORD_PEERS`
    as the page's init script."""
    frames = int(await page.evaluate(_FRAMES_DECODED))
    return frames if frames > beyond else 0


async def plays_and_seeks(page: Page, target: float, video: str = "video") -> float:
    """Play the page's ``<video id=…>`` (muted), wait until its clock passes 1 s, seek to
    ``target`` and wait for ``seeked`` and for it to play on from there; returns where the
    seek landed (the browser asks the server for a byte range to get there)."""
    # the page sets the source when its metadata arrives: play() before that would be aborted by the load
    await page.wait_for_function("(id) => document.getElementById(id).readyState >= 1", arg=video,
                                 timeout=timeout(10) * 1000)
    await page.evaluate("(id) => { const v = document.getElementById(id); v.muted = true; return v.play(); }", video)
    await page.wait_for_function("(id) => document.getElementById(id).currentTime > 1.0", arg=video,
                                 timeout=timeout(10) * 1000)
    landed: float = await page.evaluate("""([id, target]) => new Promise((resolve, reject) => {
        const v = document.getElementById(id);
        const timer = setTimeout(() => reject(new Error('no seeked event')), 8000);
        v.addEventListener('seeked', () => { clearTimeout(timer); resolve(v.currentTime); }, { once: true });
        v.currentTime = target;
    })""", [video, target])
    await page.wait_for_function("([id, t]) => document.getElementById(id).currentTime > t", arg=[video, landed + 0.5],
                                 timeout=timeout(10) * 1000)
    return landed
