"""Fixtures for the deployment tests: the hub behind the shipped nginx configuration, over
HTTPS with a private CA made by the test, and a Chromium that trusts that server's key.

``proxied(**sections)`` starts a real hub (:func:`tests.kit.start_hub`, ``hub.trusted_proxies
= ["127.0.0.1"]``, ``secure_cookies = true``, ``sections`` as for :func:`tests.kit.hub_settings`)
and nginx in front of it (:class:`tests.proxy.nginx.Nginx`); once nginx listens, the hub's
``public_url`` is its HTTPS address, as docs/operations.md "Deployment" sets it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout
from tests.proxy.nginx import Nginx, require_nginx
from tests.proxy.tls import Tls, make_tls
from tests.web.browser import CHROMIUM, chromium_args, require_chromium

if TYPE_CHECKING:
    from playwright.async_api import Browser


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("tls"))


@dataclass
class Proxied:
    """A hub and the nginx in front of it."""

    running: RunningHub
    nginx: Nginx

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def wss(self) -> str:
        return self.nginx.wss


@pytest.fixture
async def proxied(tmp_path: Path, tls: Tls) -> AsyncIterator[Callable[..., Awaitable[Proxied]]]:
    require_nginx()
    started: list[Proxied] = []

    async def start(**sections: dict[str, Any]) -> Proxied:
        home = tmp_path / f"deployment{len(started)}"
        hub = {"trusted_proxies": ["127.0.0.1"], "secure_cookies": True, **sections.pop("hub", {})}
        running = await start_hub(hub_settings(home / "hub", hub=hub, **sections))
        nginx = Nginx(home / "nginx", tls, running.port)
        started.append(Proxied(running, nginx))
        await nginx.start()
        running.hub.settings = running.hub.settings.replace(hub={"public_url": nginx.url})
        return started[-1]

    try:
        yield start
    finally:
        for deployment in reversed(started):
            deployment.nginx.stop()
            await stop_hub(deployment.running)


@pytest.fixture
async def trusting_browser(tls: Tls) -> AsyncIterator[Browser]:
    """Headless Chromium (tests/web/browser.py's switches) that accepts the test server's
    certificate through ``--ignore-certificate-errors-spki-list``: Chromium on Linux trusts
    CAs from an NSS database only (certutil, not installed here), and this switch is scoped to
    one key, unlike ``ignore_https_errors``, which would accept any certificate at all."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, timeout=timeout(30) * 1000,
            args=[*chromium_args(), f"--ignore-certificate-errors-spki-list={tls.spki}"])
        try:
            yield launched
        finally:
            await launched.close()
