"""Citizens' questions end to end in headless Chromium: a watch page asks through its real
form (the page solves the proof of work itself), the operator's wall sees it on the
*Pertanyaan* tab and approves it, two other watch pages show it, an upvote on one reorders
the other, and a question that is markup and script shows as text and runs nothing."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout
from tests.wall.conftest import OPERATOR, PASSWORD, open_wall
from tests.web.browser import open_page

pytestmark = pytest.mark.browser

STATION = "35.09.01"
# A question that is markup and script: it must show as typed, and set no flag.
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script> Siapa kepala dinasnya?'
SCREENSHOTS = Path("/tmp")


@pytest.fixture
async def questions_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path, questions={"difficulty": 8}))
    await running.hub.auth.add_operator(OPERATOR, PASSWORD)
    try:
        yield running
    finally:
        await stop_hub(running)


async def watch_page(browser: Browser, hub: RunningHub) -> Page:
    page, log = await open_page(browser, f"{hub.http}/watch/{STATION}")
    page.jaga_log = log  # type: ignore[attr-defined]  # checked clean at the end
    await expect(page.locator("#questions")).to_be_visible()
    return page


def shown(page: Page, text: str):  # type: ignore[no-untyped-def]  # a Locator
    return page.locator("#questions-list li", has_text=text)


async def ask(page: Page, text: str, name: str = "") -> None:
    await page.fill("#ask-text", text)
    await page.fill("#ask-name", name)
    await page.click("#ask-send")
    await expect(page.locator("#ask-status")).to_contain_text("menunggu moderasi")


async def test_ask_moderate_show_vote_and_markup_stays_text(browser: Browser, questions_hub: RunningHub) -> None:
    hub = questions_hub
    wall, wall_log = await open_wall(browser, hub)
    await wall.click('a.tab[data-view="questions"]')
    await expect(wall.locator("#view-questions")).to_be_visible()
    await expect(wall.locator("#link-state")).to_have_attribute("data-state", "open")

    citizen = await watch_page(browser, hub)
    viewers = [await watch_page(browser, hub), await watch_page(browser, hub)]
    await expect(citizen.locator("#questions-empty")).to_be_visible()

    # The citizen asks through the form; the page fetches a challenge and solves it.
    first = "Kapan pasar desa dibuka lagi?"
    await ask(citizen, first, name="Siti")
    asked_at = time.monotonic()
    await citizen.screenshot(path=str(SCREENSHOTS / "jaga-questions-citizen-asked.png"), full_page=True)
    row = wall.locator("#questions-queue .question", has_text=first)
    await expect(row).to_be_visible(timeout=timeout(3) * 1000)
    seen_after = time.monotonic() - asked_at
    await expect(row.locator(".q-state")).to_have_text("Menunggu")
    await expect(wall.locator("#questions-badge")).to_have_text("1")
    await wall.screenshot(path=str(SCREENSHOTS / "jaga-questions-wall-pending.png"))
    for page in (citizen, *viewers):
        await expect(shown(page, first)).to_have_count(0)  # pending: nobody sees it yet

    await row.locator('button[data-action="approve"]').click()
    await expect(row.locator(".q-state")).to_have_text("Tampil")
    for page in viewers:
        await expect(shown(page, first)).to_be_visible(timeout=timeout(3) * 1000)
        await expect(shown(page, first).locator(".meta")).to_contain_text("Siti")

    # Markup and script as a question: shown as typed on every page, nothing runs.
    await ask(citizen, HOSTILE)
    hostile_row = wall.locator("#questions-queue .question", has_text="Siapa kepala dinasnya?")
    await expect(hostile_row.locator(".q-text")).to_have_text(HOSTILE)
    await hostile_row.locator('button[data-action="approve"]').click()
    for page in viewers:
        await expect(shown(page, "Siapa kepala dinasnya?").locator(".text")).to_have_text(HOSTILE)
        await expect(page.locator("#questions-list img, #questions-list script")).to_have_count(0)

    # Equal votes: the earlier question first. An upvote on one page reorders the other.
    a, b = viewers
    await expect(b.locator("#questions-list li .text")).to_have_text([first, HOSTILE])
    await shown(a, "Siapa kepala dinasnya?").locator("button.vote").click()
    await expect(shown(a, "Siapa kepala dinasnya?").locator("button.vote")).to_have_text("▲ 1")
    await expect(b.locator("#questions-list li .text")).to_have_text([HOSTILE, first])
    await expect(shown(b, "Siapa kepala dinasnya?").locator("button.vote")).to_have_text("▲ 1")

    # Answered: it moves down, marked "Terjawab".
    await wall.locator("#questions-queue .question", has_text="Siapa kepala dinasnya?") \
        .locator('button[data-action="answered"]').click()
    await expect(b.locator("#questions-list li .text")).to_have_text([first, HOSTILE])
    await expect(shown(b, "Siapa kepala dinasnya?").locator(".badge")).to_have_text("Terjawab")

    await b.screenshot(path=str(SCREENSHOTS / "jaga-questions-watch-phone.png"), full_page=True)
    await wall.screenshot(path=str(SCREENSHOTS / "jaga-questions-wall.png"))
    for page in (wall, citizen, *viewers):
        assert await page.evaluate("window.__pwned") is None, "a question's markup ran"
    wall_log.assert_clean()
    for page in (citizen, *viewers):
        page.jaga_log.assert_clean()  # type: ignore[attr-defined]
    print(f"the wall showed the question {seen_after:.2f} s after the page said it was sent")
