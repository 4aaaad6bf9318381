"""Citizens' questions under abuse, one answer each (docs/questions.md, "Abuse"), on a real hub
over real HTTP. The hub trusts 127.0.0.1 as its reverse proxy, so each request may name its
own client address in ``X-Forwarded-For`` (hub/core/proxies.py): that is how one test process
is a hundred phones. Proofs are computed here at 6 bits, so the loops stay quick; every count
is exact against the settings, since each limit lets through precisely what it allows."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.routes.bodies import MAX_BODY_BYTES
from tests.kit import (
    RunningHub,
    ask,
    hub_settings,
    moderate,
    operator_client,
    proof_for,
    start_hub,
    stop_hub,
)

STATION = "35.09.01.2001"
PER_ADDRESS, PER_DEVICE = 6, 2  # the defaults, named here so the counts below read
BASE: dict[str, Any] = {"difficulty": 6, "per_address_per_min": PER_ADDRESS, "per_device_per_min": PER_DEVICE}
XSS_TEXT = '<script>alert("x")</script><img src=x onerror=alert(document.cookie)> "quoted" & \'single\''
XSS_NAME = "<b onmouseover=alert(1)>Budi</b>"


class Clock:
    """The hub's clock, moved forward by the test (bans and limits are judged by it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


HubFactory = Callable[..., Awaitable[RunningHub]]


@pytest.fixture
async def make_hub(tmp_path: Path) -> AsyncIterator[HubFactory]:
    started: list[RunningHub] = []

    async def make(clock: Clock | None = None, **questions: Any) -> RunningHub:
        settings = hub_settings(tmp_path / f"hub{len(started)}", hub={"trusted_proxies": ["127.0.0.1"]},
                                questions={**BASE, **questions})
        started.append(await start_hub(settings, clock))
        return started[-1]

    try:
        yield make
    finally:
        for running in started:
            await stop_hub(running)


def code(response: httpx.Response) -> str:
    return str(response.json()["error"]["code"])


def client_at(hub: RunningHub, address: str) -> httpx.AsyncClient:
    """A phone (or a script) at ``address``, behind the trusted proxy; it keeps its cookies."""
    return httpx.AsyncClient(base_url=hub.http, headers={"X-Forwarded-For": address})


async def pending(operator: httpx.AsyncClient) -> list[dict[str, Any]]:
    response = await operator.get("/api/v1/questions", params={"state": "pending", "station": STATION})
    assert response.status_code == 200, response.text
    listed: list[dict[str, Any]] = response.json()["questions"]
    return listed


async def test_a_script_posting_without_a_proof_is_refused(make_hub: HubFactory) -> None:
    hub = await make_hub()
    async with httpx.AsyncClient(base_url=hub.http) as script:
        path = f"/api/v1/stations/{STATION}/questions"
        bare = await script.post(path, json={"text": "halo"})
        forged = await script.post(path, json={"text": "halo", "proof": {"token": "a.b", "nonce": "1"}})
        proof = await proof_for(script, STATION)
        unsolved = await script.post(path, json={"text": "halo", "proof": {**proof, "nonce": "x"}})
        other_station = await script.post("/api/v1/stations/35.09.01/questions", json={"text": "halo", "proof": proof})
        first = await script.post(path, json={"text": "halo", "proof": proof})
        replayed = await script.post(path, json={"text": "halo lagi", "proof": proof})
    for refused in (bare, forged, unsolved, other_station, replayed):
        assert (refused.status_code, code(refused)) == (400, "proof"), refused.text
    assert first.status_code == 202, first.text  # the same proof, once, at its own station
    operator = await operator_client(hub, hub.hub)
    try:
        assert [q["text"] for q in await pending(operator)] == ["halo"]
    finally:
        await operator.aclose()


async def test_a_thousand_questions_a_minute_from_one_address(make_hub: HubFactory) -> None:
    """A script that pays every proof and drops its cookie each time (so the per-device limit
    never sees it twice): the per-address limit lets exactly ``per_address_per_min`` through."""
    hub = await make_hub()
    outcomes: Counter[tuple[int, str]] = Counter()
    async with client_at(hub, "203.0.113.7") as script:
        for n in range(1000):
            script.cookies.clear()
            response = await ask(script, STATION, f"pertanyaan banjir nomor {n}")
            outcomes[response.status_code, "" if response.status_code == 202 else code(response)] += 1
            if response.status_code == 429:
                assert int(response.headers["Retry-After"]) >= 1
    assert outcomes == {(202, ""): PER_ADDRESS, (429, "rate_limited"): 1000 - PER_ADDRESS}, outcomes
    async with client_at(hub, "203.0.113.8") as neighbour:  # another address is not affected
        assert (await ask(neighbour, STATION, "tetangga bertanya")).status_code == 202


async def test_one_device_cookie_from_many_addresses(make_hub: HubFactory) -> None:
    hub = await make_hub()
    statuses = []
    async with httpx.AsyncClient(base_url=hub.http) as phone:  # one cookie jar: one device
        for n in range(20):
            phone.headers["X-Forwarded-For"] = f"198.51.100.{n + 1}"
            response = await ask(phone, STATION, f"satu perangkat, alamat {n}")
            statuses.append(response.status_code if response.status_code == 202 else code(response))
    assert statuses == [202] * PER_DEVICE + ["rate_limited"] * (20 - PER_DEVICE)


async def test_a_hundred_addresses_posting_ten_each_leave_the_queue_usable(make_hub: HubFactory) -> None:
    """Scripts at 100 addresses, fresh cookies every time: each address gets ``per_address_per_min``
    past the limits, and ``max_pending`` caps what waits; the moderators' list stays bounded."""
    max_pending = 100
    hub = await make_hub(max_pending=max_pending)
    outcomes: Counter[tuple[int, str]] = Counter()
    for address in range(100):
        async with client_at(hub, f"10.{address // 250}.{address % 250}.9") as script:
            for n in range(10):
                script.cookies.clear()
                response = await ask(script, STATION, f"alamat {address} pertanyaan {n}")
                outcomes[response.status_code, "" if response.status_code == 202 else code(response)] += 1
    past_limits = 100 * PER_ADDRESS
    assert outcomes == {(202, ""): max_pending, (503, "queue_full"): past_limits - max_pending,
                        (429, "rate_limited"): 1000 - past_limits}, outcomes
    operator = await operator_client(hub, hub.hub)
    try:
        started = time.monotonic()
        waiting = await pending(operator)
        assert len(waiting) == max_pending
        assert waiting[0]["asked_at"] >= waiting[-1]["asked_at"]  # newest first
        # The moderator works through it: an approval makes room for one more.
        await moderate(operator, waiting[0]["id"], "approve")
        async with client_at(hub, "192.0.2.44") as citizen:
            assert (await ask(citizen, STATION, "akhirnya ada tempat")).status_code == 202
            assert code(await ask(citizen, STATION, "dan satu lagi")) == "queue_full"
        print(f"moderator's queue of {max_pending} listed in {time.monotonic() - started:.3f} s")
    finally:
        await operator.aclose()


async def test_the_same_text_again_is_a_duplicate(make_hub: HubFactory) -> None:
    hub = await make_hub()
    async with client_at(hub, "192.0.2.1") as first, client_at(hub, "192.0.2.2") as second:
        assert (await ask(first, STATION, "Kapan pasar desa dibuka?")).status_code == 202
        for again in ("Kapan pasar desa dibuka?", "KAPAN   pasar desa dibuka!!", "kapan pasar\u200b desa dibuka"):
            response = await ask(second, STATION, again)
            assert (response.status_code, code(response)) == (409, "duplicate"), again
        assert (await ask(second, "35.09.01", "Kapan pasar desa dibuka?")).status_code == 202  # another station


async def test_markup_and_script_are_stored_as_typed_and_served_as_json_text(make_hub: HubFactory) -> None:
    hub = await make_hub()
    async with client_at(hub, "192.0.2.3") as citizen:
        asked = await ask(citizen, STATION, XSS_TEXT, XSS_NAME)
        assert asked.status_code == 202, asked.text
        assert (asked.json()["question"]["text"], asked.json()["question"]["name"]) == (XSS_TEXT, XSS_NAME)
        operator = await operator_client(hub, hub.hub)
        try:
            [held] = await pending(operator)
            assert (held["text"], held["name"]) == (XSS_TEXT, XSS_NAME)
            await moderate(operator, held["id"], "approve")
        finally:
            await operator.aclose()
        shown = await citizen.get(f"/api/v1/stations/{STATION}/questions")
    assert shown.headers["content-type"] == "application/json"
    assert shown.headers["x-content-type-options"] == "nosniff"
    [view] = shown.json()["questions"]
    assert (view["text"], view["name"]) == (XSS_TEXT, XSS_NAME)


async def test_oversize_bodies_texts_and_names_are_refused(make_hub: HubFactory) -> None:
    hub = await make_hub()
    path = f"/api/v1/stations/{STATION}/questions"
    async with client_at(hub, "192.0.2.4") as citizen:
        proof = await proof_for(citizen, STATION)
        huge = await citizen.post(path, json={"text": "a" * MAX_BODY_BYTES, "proof": proof})
        assert (huge.status_code, code(huge)) == (413, "too_large")
        long_text = await ask(citizen, STATION, "a" * 281)
        long_name = await ask(citizen, STATION, "nama yang panjang", "n" * 41)
        for refused in (long_text, long_name):
            assert (refused.status_code, code(refused)) == (400, "too_long"), refused.text
        longest = await ask(citizen, STATION, "b" * 280, "n" * 40)
        assert longest.status_code == 202, longest.text


async def test_bidi_and_zero_width_tricks_are_removed_and_reserved_names_refused(make_hub: HubFactory) -> None:
    hub = await make_hub(per_address_per_min=50, per_device_per_min=50)
    async with client_at(hub, "192.0.2.5") as citizen:
        for name in ("B\u200dupati", "Bupati", "B u p a t i", "BUPATI", "Bupat\u0456", "\u202eBupati\u202c",
                     "Ad\u200bmin", "Pen\ufeffdopo", "ＡＤＭＩＮ", "Kepala  Desa"):
            response = await ask(citizen, STATION, f"pertanyaan dari {name!r}", name)
            assert (response.status_code, code(response)) == (400, "reserved_name"), name
        tricky = await ask(citizen, STATION, "harga \u202epupuk\u202c naik\u200b\u2066?\u2069", "Ka\u200drti\u2060ni")
        assert tricky.status_code == 202, tricky.text
        question = tricky.json()["question"]
        assert (question["text"], question["name"]) == ("harga pupuk naik?", "Kartini")
        empty = await ask(citizen, STATION, "\u200b\u202e \u2066")
        assert (empty.status_code, code(empty)) == (400, "empty")


async def test_a_banned_sender_with_a_fresh_cookie_is_refused_by_address_for_a_while(make_hub: HubFactory) -> None:
    clock = Clock()
    ban_address_s = 600.0
    hub = await make_hub(clock, ban_address_s=ban_address_s)
    operator = await operator_client(hub, hub.hub)
    try:
        async with client_at(hub, "192.0.2.66") as troll, client_at(hub, "192.0.2.67") as bystander:
            asked = await ask(troll, STATION, "pesan kasar pertama")
            assert asked.status_code == 202
            banned = await moderate(operator, asked.json()["question"]["id"], "ban")
            assert banned["state"] == "rejected"

            again = await ask(troll, STATION, "pesan kasar kedua")  # same cookie
            assert (again.status_code, code(again)) == (403, "banned")
            troll.cookies.clear()  # a fresh cookie, same address
            fresh = await ask(troll, STATION, "pesan kasar ketiga")
            assert (fresh.status_code, code(fresh)) == (403, "banned")
            assert (await ask(bystander, STATION, "warga lain tetap bisa bertanya")).status_code == 202

            clock.offset = ban_address_s + 1  # the address is free again (carriers share them) …
            troll.cookies.clear()
            assert (await ask(troll, STATION, "pesan keempat dengan cookie baru")).status_code == 202
            old_cookie = httpx.AsyncClient(base_url=hub.http, headers={"X-Forwarded-For": "192.0.2.99"},
                                           cookies={"jaga_device": asked.cookies["jaga_device"]})
            async with old_cookie:  # … but the device ban holds, from any address
                late = await ask(old_cookie, STATION, "cookie lama dari alamat lain")
                assert (late.status_code, code(late)) == (403, "banned")
        audited = [(e["actor"], e["action"]) for e in await hub.hub.credentials.audit_log()]
        assert ("budi", "question.ban") in audited
    finally:
        await operator.aclose()
