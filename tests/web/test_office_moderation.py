"""The office moderates from the agent's page in a real browser: a pending question shows up,
*Setujui* makes it public on the hub, *Terjawab* marks it answered; markup stays text."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, expect

from tests.clients.helpers import agent_config, start_agent
from tests.kit import ask, hub_settings, start_hub, stop_hub, timeout, wait_until
from tests.web.browser import open_page

pytestmark = pytest.mark.browser

STATION = "35.09.01.2001"


async def test_the_office_approves_and_answers_with_the_pages_buttons(
        browser: Browser, tmp_path: Path, unused_tcp_port: int) -> None:
    hub = await start_hub(hub_settings(tmp_path / "hub", questions={"difficulty": 6,
                                                                    "station_moderation": [STATION]}))
    agent = await start_agent(agent_config(tmp_path, hub, STATION, await hub.token(STATION), media=False,
                                           questions_port=unused_tcp_port))
    citizen = httpx.AsyncClient(base_url=hub.http)
    try:
        text = '<img src=x onerror=alert(1)> Apakah posyandu buka Sabtu?'
        asked = (await ask(citizen, STATION, text, "<b>Ani</b>")).json()["question"]
        page, log = await open_page(browser, f"http://127.0.0.1:{unused_tcp_port}/")
        pending = page.locator(f'#pending li[data-id="{asked["id"]}"]')
        await expect(pending).to_be_visible(timeout=timeout(10) * 1000)
        await expect(pending.locator(".text")).to_have_text(text)  # as text, not markup

        async def public() -> list[tuple[str, str]]:
            response = await citizen.get(f"/api/v1/stations/{STATION}/questions")
            return [(q["id"], q["state"]) for q in response.json()["questions"]]

        await pending.get_by_role("button", name="Setujui").click()
        await wait_until(public, 5, "the approval to reach the hub")
        assert await public() == [(asked["id"], "approved")]
        shown = page.locator(f'#questions li[data-id="{asked["id"]}"]')
        await expect(shown).to_be_visible(timeout=timeout(5) * 1000)
        await expect(page.locator("#pending li.empty")).to_be_visible(timeout=timeout(5) * 1000)
        await shown.get_by_role("button", name="Terjawab").click()

        async def answered() -> bool:
            return await public() == [(asked["id"], "answered")]

        await wait_until(answered, 5, "the answer to reach the hub")
        await expect(shown.locator(".badge")).to_have_text("sudah dijawab", timeout=timeout(5) * 1000)
        log.assert_clean()
    finally:
        await agent.stop()
        await citizen.aclose()
        await stop_hub(hub)
