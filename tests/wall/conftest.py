"""Fixtures for the Pendopo wall's end-to-end tests: a real hub with a slice of Jember's
registry and an operator, station sockets that keep heartbeating, and a logged-in wall page.

The browser itself (Debian's Chromium, its switches, skip-or-fail when it is missing)
comes from the shared launcher in ``tests/web/browser.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import fractions
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av
import pytest
from playwright.async_api import Browser, Page, ViewportSize

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, wait_until
from tests.web.browser import PageLog, open_page
from tests.wsclient import Client, heartbeat, station

REPO = Path(__file__).resolve().parents[2]
OPERATOR, PASSWORD = "pendopo1", "kata-sandi-uji-panjang"
WALL_VIEWPORT: ViewportSize = {"width": 1600, "height": 1000}

# A title a station could send that must show as text, never as markup.
HOSTILE_TITLE = '<img src=x onerror="window.pwned=1">Rapat <b>RT</b>'


def wall_registry() -> str:
    """A slice of Jember's registry (the repo's copy): three kecamatan and a few OPD."""
    text = (REPO / "data" / "jember_stations.csv").read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    keep = [r for r in rows if r["kecamatan"] in ("Jombang", "Kencong", "Kaliwates")]
    keep += [r for r in rows if r["kind"] == "opd"][:5]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=["id", "name", "kind", "kecamatan", "public"], lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: r[k] for k in writer.fieldnames} for r in keep)
    return out.getvalue()


@pytest.fixture
async def wall_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    (tmp_path / "stations.csv").write_text(wall_registry(), encoding="utf-8")
    running = await start_hub(hub_settings(tmp_path))
    await running.hub.auth.add_operator(OPERATOR, PASSWORD)
    try:
        yield running
    finally:
        await stop_hub(running)


def sample_jpeg(level: int, u: int = 110, v: int = 140, width: int = 320, height: int = 180) -> bytes:
    """A small real JPEG: a flat frame (brightness ``level``, colour ``u``/``v``) with a band."""
    frame = av.VideoFrame(width, height, "yuvj420p")
    luma = bytearray([level]) * (width * height)
    for y in range(height * 2 // 3, height * 2 // 3 + 20):
        luma[y * width:(y + 1) * width] = bytes([max(0, level - 90)]) * width
    frame.planes[0].update(bytes(luma))
    frame.planes[1].update(bytes([u]) * (width * height // 4))
    frame.planes[2].update(bytes([v]) * (width * height // 4))
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = fractions.Fraction(1, 1)
    frame.pts = 0
    return b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)])


@dataclass
class Agent:
    """A station socket that keeps heartbeating and records what the hub sends it."""

    id: str
    client: Client
    token: str
    received: list[dict[str, Any]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def connect(cls, hub: RunningHub, station_id: str) -> Agent:
        token = await hub.token(station_id)  # rotating: a later token() would close this session
        client, welcome = await station(hub.ws, station_id, token)
        agent = cls(station_id, client, token)
        period = welcome["heartbeat_s"]
        agent.tasks = [asyncio.create_task(heartbeat(client, period)), asyncio.create_task(agent._read())]
        return agent

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            while True:
                self.received.append(await self.client.recv(wait=3600))
                self.arrived.set()

    async def send(self, message: dict[str, Any]) -> None:
        await self.client.send(message)

    async def wait_for(self, kind: str, wait: float = 10.0) -> dict[str, Any]:
        """The first message of type ``kind`` the hub sent this station (waiting for it)."""
        def first() -> dict[str, Any] | None:
            return next((m for m in self.received if m.get("t") == kind), None)

        return await wait_until(first, wait, f"a {kind!r} message at station {self.id}", changed=self.arrived)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self.client.close()


async def open_wall(browser: Browser, hub: RunningHub, viewport: ViewportSize | None = None) -> tuple[Page, PageLog]:
    """A fresh browser context, logged in through the form, on /wall."""
    page, log = await open_page(browser, viewport=viewport or WALL_VIEWPORT, permissions=["microphone", "camera"])
    # /login has no <link rel=icon> (yet), so Chromium asks for /favicon.ico and logs its 404
    # as a console error that no page script caused; answer it here instead.
    await page.context.route("**/favicon.ico", lambda route: route.fulfill(status=204))
    await page.goto(f"{hub.http}/wall")
    assert urlsplit(page.url).path == "/login", "an anonymous visitor must be sent to log in"
    await page.fill("input[name=username]", OPERATOR)
    await page.fill("input[name=password]", PASSWORD)
    async with page.expect_navigation():
        await page.click("button[type=submit]")
    assert urlsplit(page.url).path == "/wall", page.url
    return page, log
