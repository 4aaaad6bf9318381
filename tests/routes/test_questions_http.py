"""The questions' HTTP edge (hub/routes/questions.py) against a real hub on a real uvicorn:
asking with a real proof of work (solved here, from docs/questions.md, not with the hub's
code), what the public and the moderators see, votes, CSRF, the device cookie, and the
station-token path of ``questions.station_moderation``."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit import RunningHub, ask, hub_settings, moderate, operator_client, proof_for, start_hub, stop_hub
from tests.wsclient import JSON, Client, heartbeat, station

STATION = "35.09.01"  # its own staff moderate its questions (station_moderation)
OTHER = "35.09.02"  # not listed: only operators moderate it
PRIVATE = "opd.bakesbangpol"


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    settings = hub_settings(tmp_path, questions={"difficulty": 8, "station_moderation": [STATION]})
    running = await start_hub(settings)
    try:
        yield running
    finally:
        await stop_hub(running)


@pytest.fixture
async def citizen(hub: RunningHub) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=hub.http) as client:
        yield client


async def public_ids(client: httpx.AsyncClient, station: str = STATION) -> list[str]:
    response = await client.get(f"/api/v1/stations/{station}/questions")
    assert response.status_code == 200, response.text
    return [q["id"] for q in response.json()["questions"]]


async def test_ask_with_a_proof_waits_for_moderation_and_sets_the_device_cookie(
        hub: RunningHub, citizen: httpx.AsyncClient) -> None:
    response = await ask(citizen, STATION, "Kapan jalan desa diperbaiki?", name="Siti")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["message"] == "menunggu moderasi"
    assert body["question"]["state"] == "pending" and body["question"]["name"] == "Siti"
    assert set(body["question"]) == {"id", "text", "name", "votes", "state", "asked_at", "activity"}
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("jaga_device=")
    lowered = cookie.lower()
    assert "httponly" in lowered and "samesite=lax" in lowered and "max-age=31536000" in lowered
    assert "secure" not in lowered  # plain http here; https gets Secure
    # The service got a hash of the cookie, never the cookie itself.
    value = citizen.cookies["jaga_device"]
    stored = await hub.hub.backend.questions.get(body["question"]["id"])
    assert stored is not None and stored.device == hashlib.sha256(value.encode()).hexdigest()
    assert value not in stored.device and stored.address == "127.0.0.1"
    # A second ask reuses the cookie: no new one.
    again = await ask(citizen, STATION, "Dan lampu jalan di RT 3?")
    assert again.status_code == 202, again.text
    assert "set-cookie" not in again.headers


async def test_a_post_without_a_valid_proof_is_refused(citizen: httpx.AsyncClient) -> None:
    path = f"/api/v1/stations/{STATION}/questions"
    bare = await citizen.post(path, json={"text": "Halo, ini skrip"})
    assert bare.status_code == 400 and bare.json()["error"]["code"] == "proof"
    proof = await proof_for(citizen, STATION)
    wrong = await citizen.post(path, json={"text": "Halo", "proof": {"token": proof["token"], "nonce": "x"}})
    assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "proof"
    elsewhere = await proof_for(citizen, OTHER)  # a challenge of another station
    moved = await citizen.post(path, json={"text": "Halo", "proof": elsewhere})
    assert moved.status_code == 400 and moved.json()["error"]["code"] == "proof"
    used = await citizen.post(path, json={"text": "Pertanyaan pertama", "proof": proof})
    assert used.status_code == 202, used.text
    replay = await citizen.post(path, json={"text": "Pertanyaan kedua", "proof": proof})
    assert replay.status_code == 400 and replay.json()["error"]["code"] == "proof"
    not_text = await citizen.post(path, json={"text": ["x"], "proof": await proof_for(citizen, STATION)})
    assert not_text.status_code == 400
    huge = await citizen.post(path, content=b'{"text": "' + b"a" * 20000 + b'"}',
                              headers={"Content-Type": "application/json"})
    assert huge.status_code == 413
    hidden = await citizen.get(f"/api/v1/stations/{PRIVATE}/questions/challenge")
    assert hidden.status_code == 404


async def test_the_public_sees_approved_ones_operators_see_the_queue_and_votes_count(
        hub: RunningHub, citizen: httpx.AsyncClient) -> None:
    asked = await ask(citizen, STATION, "Berapa anggaran posyandu tahun ini?")
    qid = asked.json()["question"]["id"]
    assert qid not in await public_ids(citizen)  # pending: not public

    operator = await operator_client(hub, hub.hub)
    try:
        queue = await operator.get("/api/v1/questions", params={"state": "pending", "station": STATION})
        assert queue.status_code == 200
        seen = {q["id"]: q for q in queue.json()["questions"]}
        assert seen[qid]["state"] == "pending" and seen[qid]["station"] == STATION and "held" in seen[qid]
        assert (await operator.get("/api/v1/questions", params={"state": "nope"})).status_code == 400
        assert (await citizen.get("/api/v1/questions")).status_code == 401

        approved = await moderate(operator, qid, "approve")
        assert approved["state"] == "approved" and approved["decided_by"] == "budi"
        assert await public_ids(citizen) == [qid]

        voted = await citizen.post(f"/api/v1/stations/{STATION}/questions/{qid}/vote")
        assert voted.status_code == 200 and voted.json() == {"votes": 1}
        twice = await citizen.post(f"/api/v1/stations/{STATION}/questions/{qid}/vote")
        assert twice.status_code == 409 and twice.json()["error"]["code"] == "already_voted"
        async with httpx.AsyncClient(base_url=hub.http) as neighbour:  # no cookie yet: one is set
            other = await neighbour.post(f"/api/v1/stations/{STATION}/questions/{qid}/vote")
            assert other.status_code == 200 and other.json() == {"votes": 2}
            assert "jaga_device" in neighbour.cookies
        listed = (await citizen.get(f"/api/v1/stations/{STATION}/questions")).json()["questions"]
        assert listed[0]["votes"] == 2

        answered = await moderate(operator, qid, "answered")
        assert answered["state"] == "answered"
        bad = await operator.post(f"/api/v1/questions/{qid}", json={"action": "approve"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_action"
        entries = (await operator.get("/api/v1/audit")).json()["entries"]
        assert {"question.approve", "question.answered"} <= {e["action"] for e in entries}
    finally:
        await operator.aclose()


async def test_operator_posts_need_the_csrf_token(hub: RunningHub, citizen: httpx.AsyncClient) -> None:
    qid = (await ask(citizen, STATION, "Apakah ada vaksin gratis?")).json()["question"]["id"]
    operator = await operator_client(hub, hub.hub)
    try:
        token = operator.headers.pop("X-CSRF-Token")
        refused = await operator.post(f"/api/v1/questions/{qid}", json={"action": "approve"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "csrf"
        slow = await operator.post(f"/api/v1/stations/{STATION}/questions/slow-mode", json={"seconds": 30})
        assert slow.status_code == 403 and slow.json()["error"]["code"] == "csrf"
        assert qid not in await public_ids(citizen)
        operator.headers["X-CSRF-Token"] = token
        assert (await operator.post(f"/api/v1/questions/{qid}", json={"action": "approve"})).status_code == 200
    finally:
        await operator.aclose()


async def test_slow_mode_set_by_an_operator_holds_a_device_back(hub: RunningHub, citizen: httpx.AsyncClient) -> None:
    operator = await operator_client(hub, hub.hub)
    try:
        for seconds in (-1, True, "60", 99999):
            bad = await operator.post(f"/api/v1/stations/{OTHER}/questions/slow-mode", json={"seconds": seconds})
            assert bad.status_code == 400, seconds
        slow = await operator.post(f"/api/v1/stations/{OTHER}/questions/slow-mode", json={"seconds": 120})
        assert slow.status_code == 200 and slow.json() == {"station": OTHER, "seconds": 120.0}
    finally:
        await operator.aclose()
    assert (await ask(citizen, OTHER, "Pertanyaan satu")).status_code == 202
    held = await ask(citizen, OTHER, "Pertanyaan dua")
    assert held.status_code == 429 and held.json()["error"]["code"] == "slow_mode"
    assert 1 <= int(held.headers["retry-after"]) <= 120


async def test_a_station_in_station_moderation_moderates_only_its_own(
        hub: RunningHub, citizen: httpx.AsyncClient) -> None:
    own = (await ask(citizen, STATION, "Jam buka kantor desa?")).json()["question"]["id"]
    foreign = (await ask(citizen, OTHER, "Jam buka kantor kecamatan?")).json()["question"]["id"]
    listed = {"Authorization": f"Bearer {await hub.token(STATION)}"}
    unlisted = {"Authorization": f"Bearer {await hub.token(OTHER)}"}

    queue = await citizen.get("/api/v1/questions", headers=listed)
    assert queue.status_code == 200
    assert {q["station"] for q in queue.json()["questions"]} == {STATION}
    assert (await citizen.get("/api/v1/questions", params={"station": OTHER}, headers=listed)).status_code == 403

    approved = await citizen.post(f"/api/v1/questions/{own}", json={"action": "approve"}, headers=listed)
    assert approved.status_code == 200, approved.text
    assert approved.json()["question"]["decided_by"] == f"station:{STATION}"
    assert own in await public_ids(citizen)

    another = await citizen.post(f"/api/v1/questions/{foreign}", json={"action": "approve"}, headers=listed)
    assert another.status_code == 403
    not_listed = await citizen.post(f"/api/v1/questions/{foreign}", json={"action": "approve"}, headers=unlisted)
    assert not_listed.status_code == 403
    assert (await citizen.get("/api/v1/questions", headers=unlisted)).status_code == 403
    anonymous = await citizen.post(f"/api/v1/questions/{foreign}", json={"action": "approve"})
    assert anonymous.status_code == 401
    bogus = await citizen.post(f"/api/v1/questions/{foreign}", json={"action": "approve"},
                               headers={"Authorization": "Bearer not-a-token"})
    assert bogus.status_code == 401
    assert foreign not in await public_ids(citizen, OTHER)


async def test_the_public_record_carries_the_activity_and_is_read_per_activity(hub: RunningHub) -> None:
    """Each question keeps the title of the activity running when it was asked; the public list
    shows it and ``?activity=`` (exact title; empty = none running) reads one activity's record."""
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    await watcher.recv()  # the snapshot
    agent, _ = await station(hub.ws, STATION, await hub.token(STATION))
    beating = asyncio.create_task(heartbeat(agent))
    operator = await operator_client(hub, hub.hub)
    asked: dict[str, str] = {}
    try:
        for title, text in (("Musrenbang Desa 2026", "Kapan jalan desa diperbaiki?"),
                            ("Rapat Posyandu", "Jadwal imunisasi bulan depan?"), (None, "Jam buka kantor desa?")):
            await agent.send({"t": "activity.start", "title": title} if title else {"t": "activity.stop"})

            def announced(message: dict[str, Any], title: str | None = title) -> bool:
                return bool(message["t"] == "activity" and message["title"] == title)

            await watcher.recv_until(announced)
            async with httpx.AsyncClient(base_url=hub.http) as citizen:  # a phone each: one device cookie each
                question = (await ask(citizen, STATION, text)).json()["question"]
            assert question["activity"] == (title or "")
            await moderate(operator, question["id"], "approve")
            asked[title or ""] = question["id"]

        async with httpx.AsyncClient(base_url=hub.http) as anybody:
            async def listed(**params: str) -> list[tuple[str, str]]:
                response = await anybody.get(f"/api/v1/stations/{STATION}/questions", params=params)
                assert response.status_code == 200, response.text
                return [(q["id"], q["activity"]) for q in response.json()["questions"]]

            assert sorted(await listed()) == sorted((qid, title) for title, qid in asked.items())
            assert await listed(activity="Musrenbang Desa 2026") == [(asked["Musrenbang Desa 2026"],
                                                                      "Musrenbang Desa 2026")]
            assert await listed(activity="Rapat Posyandu") == [(asked["Rapat Posyandu"], "Rapat Posyandu")]
            assert await listed(activity="") == [(asked[""], "")]  # asked while no activity ran
            assert await listed(activity="musrenbang desa 2026") == []  # exact title only
            assert await listed(activity="Musrenbang") == []
            too_long = await anybody.get(f"/api/v1/stations/{STATION}/questions", params={"activity": "x" * 501})
            assert too_long.status_code == 400 and too_long.json()["error"]["code"] == "bad_query"
    finally:
        beating.cancel()
        await operator.aclose()
        await agent.close()
        await watcher.close()
