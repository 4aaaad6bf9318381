"""The public portal and the Pendopo wall in headless Chromium over HTTPS through the shipped
nginx: pages over HTTP/2, their watch WebSocket over ``wss://`` (the portal says *Terhubung*,
the wall *Tersambung* with the operator's view, which needs the hub's ``public_url`` to match
the page's origin), the operator's cookies ``Secure``.

Chromium verifies the certificate (``ignore_https_errors`` stays False): the test's server
key is accepted through ``--ignore-certificate-errors-spki-list`` (tests/proxy/conftest.py),
and a Chromium without that switch refuses the site.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from playwright.async_api import expect

from tests.proxy.conftest import Proxied
from tests.web.browser import open_page

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page, ViewportSize

pytestmark = pytest.mark.browser

OPERATOR, PASSWORD = "pendopo1", "kata-sandi-uji-panjang"
PRIVATE = "opd.bakesbangpol"  # in tests.kit's registry, not public: only the operator's view has it
WALL: ViewportSize = {"width": 1600, "height": 1000}


async def protocol(page: Page) -> str:
    return str(await page.evaluate("performance.getEntriesByType('navigation')[0].nextHopProtocol"))


async def test_portal_and_wall_over_https_and_wss(proxied: Callable[..., Awaitable[Proxied]],
                                                   trusting_browser: Browser) -> None:
    deployment = await proxied()
    await deployment.running.hub.auth.add_operator(OPERATOR, PASSWORD)
    sockets: list[str] = []

    page, log = await open_page(trusting_browser, ignore_https_errors=False)
    page.on("websocket", lambda socket: sockets.append(socket.url))
    await page.goto(f"{deployment.url}/")
    await expect(page.locator("#conn")).to_have_class(re.compile(r"\bup\b"))
    await expect(page.locator("#conn")).to_contain_text("Terhubung")
    assert await protocol(page) == "h2"
    assert sockets and all(url.startswith(f"{deployment.wss}/ws/watch") for url in sockets), sockets
    log.assert_clean()

    wall, wall_log = await open_page(trusting_browser, viewport=WALL, ignore_https_errors=False)
    await wall.goto(f"{deployment.url}/wall")
    assert urlsplit(wall.url).path == "/login"
    await wall.fill("input[name=username]", OPERATOR)
    await wall.fill("input[name=password]", PASSWORD)
    async with wall.expect_navigation():
        await wall.click("button[type=submit]")
    assert wall.url.partition("#")[0] == f"{deployment.url}/wall"
    await expect(wall.locator("#link-state")).to_have_attribute("data-state", "open")
    await expect(wall.locator("#link-state")).to_have_text("Tersambung")
    await expect(wall.locator(f'.tile[data-id="{PRIVATE}"]')).to_have_count(1)  # the operator's view
    assert await protocol(wall) == "h2"
    cookies = {cookie["name"]: cookie for cookie in await wall.context.cookies()}
    assert cookies["jaga_session"]["secure"] and cookies["jaga_session"]["httpOnly"]
    wall_log.assert_clean()


async def test_a_browser_without_the_key_refuses_the_site(proxied: Callable[..., Awaitable[Proxied]],
                                                          browser: Browser) -> None:
    """The plain launcher (no SPKI switch): the certificate is checked, not waved through."""
    deployment = await proxied()
    page, _ = await open_page(browser, ignore_https_errors=False)
    with pytest.raises(Exception, match="ERR_CERT_AUTHORITY_INVALID"):
        await page.goto(f"{deployment.url}/")
