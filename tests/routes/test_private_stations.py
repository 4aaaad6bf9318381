"""What a caller without credentials can learn about non-public stations: nothing.

WHIP answers an unknown station, a private one and a public one alike (401, same body) to a
caller without that station's valid token; ``/metrics`` (whose counts include private
stations) needs an operator or the scraper token; ``/readyz`` says only whether the node is
ready and ``/healthz`` only that it answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub
from tests.wsclient import heartbeat, station

PUBLIC_ID, PRIVATE_ID, UNKNOWN_ID = "35.09.01", "opd.bakesbangpol", "opd.tidak-ada"
SDP = {"Content-Type": "application/sdp"}


async def test_whip_answers_unknown_private_and_public_stations_alike(hub: RunningHub) -> None:
    other = await hub.token("35.09.02")  # a valid token, of another station
    async with httpx.AsyncClient(base_url=hub.http) as http:
        for headers in ({}, {"Authorization": "Bearer guessed"}, {"Authorization": f"Bearer {other}"}):
            answers = {sid: await http.post(f"/whip/{sid}", content="v=0\r\n", headers={**SDP, **headers})
                       for sid in (UNKNOWN_ID, PRIVATE_ID, PUBLIC_ID)}
            seen = {(r.status_code, r.text) for r in answers.values()}
            assert len(seen) == 1, (headers, {sid: (r.status_code, r.text) for sid, r in answers.items()})
            assert answers[UNKNOWN_ID].status_code == 401
            # Sessions: the unguessable session id is checked first, the same for every station.
            answers = {sid: await http.delete(f"/whip/{sid}/no-such-session", headers=headers)
                       for sid in (UNKNOWN_ID, PRIVATE_ID)}
            assert len({(r.status_code, r.text) for r in answers.values()}) == 1


async def test_metrics_need_an_operator_or_the_scraper_token(tmp_path: Path) -> None:
    running = await start_hub(hub_settings(tmp_path, hub={"metrics_token": "scrape-secret-123"}))
    try:
        await running.hub.auth.add_operator("budi", "rahasia-sekali")
        agent, _ = await station(running.ws, PRIVATE_ID, await running.token(PRIVATE_ID))
        beating = asyncio.create_task(heartbeat(agent))  # online throughout the (slow, scrypt) login
        async with httpx.AsyncClient(base_url=running.http) as http:
            assert (await http.get("/metrics")).status_code == 401
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer scrape-secret-12"})
            assert wrong.status_code == 401
            scraped = await http.get("/metrics", headers={"Authorization": "Bearer scrape-secret-123"})
            assert scraped.status_code == 200
            assert 'jaga_stations{state="online"} 1.0' in scraped.text  # the private one, for the scraper
            await http.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
            assert (await http.get("/metrics")).status_code == 200  # an operator's session
        async with httpx.AsyncClient(base_url=running.http) as public:
            ready = await public.get("/readyz")
            assert ready.status_code == 200
            assert ready.json() == {"ready": True, "checks": {"ledger": True, "events": True}}  # no counts
            assert (await public.get("/healthz")).json() == {"ok": True}
        beating.cancel()
        await agent.close()
    finally:
        await stop_hub(running)


async def test_without_a_scraper_token_metrics_are_for_operators_only(hub: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=hub.http) as http:
        assert (await http.get("/metrics")).status_code == 401
        assert (await http.get("/metrics", headers={"Authorization": "Bearer x"})).status_code == 401
