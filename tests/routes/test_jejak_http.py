"""Jejak over HTTP: the hub's timer keeps a station's thumbnail, the day's list names it, the
picture is served; a non-public station's pictures only to operators."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.kit import RunningHub, hub_settings, operator_client, start_hub, stop_hub, wait_until
from tests.web.helpers import make_jpeg

PUBLIC_ID, PRIVATE_ID = "35.09.01", "opd.bakesbangpol"


def a_jpeg() -> bytes:
    return make_jpeg(64, 36, seed=3)


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path, recording={"jejak_minutes": 5, "min_free_bytes": 0}))
    try:
        yield running
    finally:
        await stop_hub(running)


async def test_the_timer_keeps_a_thumbnail_and_the_day_lists_and_serves_it(hub: RunningHub) -> None:
    jpeg = a_jpeg()
    for station_id in (PUBLIC_ID, PRIVATE_ID):
        await hub.hub.stations.store_thumbnail(station_id, jpeg)
    day = hub.hub.schedule.local_date(hub.hub.clock()).isoformat()
    async with httpx.AsyncClient(base_url=hub.http) as public:
        async def listed() -> list[dict[str, str]]:
            response = await public.get(f"/api/v1/stations/{PUBLIC_ID}/jejak")
            assert response.status_code == 200, response.text
            items: list[dict[str, str]] = response.json()["jejak"]
            return items

        (item,) = await wait_until(listed, 10, "the hub's timer to keep the thumbnail", every=0.1)
        hhmm = item["time"].replace(":", "")
        assert item["url"] == f"/api/v1/stations/{PUBLIC_ID}/jejak/{day}/{hhmm}.jpg"
        picture = await public.get(item["url"])
        assert picture.status_code == 200 and picture.content == jpeg
        assert picture.headers["content-type"] == "image/jpeg"
        assert (hub.hub.jejak.root / PUBLIC_ID / day / "jejak" / f"{hhmm}.jpg").read_bytes() == jpeg

        dated = await public.get(f"/api/v1/stations/{PUBLIC_ID}/jejak?date={day}")
        assert dated.json()["jejak"] == [item]
        assert (await public.get(f"/api/v1/stations/{PUBLIC_ID}/jejak?date=2020-01-01")).json()["jejak"] == []
        bad = await public.get(f"/api/v1/stations/{PUBLIC_ID}/jejak?date=kemarin")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_query"
        missing = await public.get(f"/api/v1/stations/{PUBLIC_ID}/jejak/{day}/0000.jpg")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "no_jejak"
        for path in (f"{day}/9999.jpg", f"../{day}/{hhmm}.jpg", f"2020-1-1/{hhmm}.jpg"):
            assert (await public.get(f"/api/v1/stations/{PUBLIC_ID}/jejak/{path}")).status_code == 404

        # A non-public station: nothing for the public, everything for an operator.
        await wait_until(lambda: hub.hub.jejak.day(PRIVATE_ID, day), 10, "the private station's picture")
        private_url = f"/api/v1/stations/{PRIVATE_ID}/jejak/{day}/{hhmm}.jpg"
        assert (await public.get(f"/api/v1/stations/{PRIVATE_ID}/jejak")).status_code == 404
        assert (await public.get(private_url)).status_code == 404
    operator = await operator_client(hub, hub.hub)
    try:
        assert (await operator.get(f"/api/v1/stations/{PRIVATE_ID}/jejak")).json()["jejak"][0]["url"] == private_url
        assert (await operator.get(private_url)).content == jpeg
    finally:
        await operator.aclose()


async def test_jejak_off_lists_nothing(tmp_path: Path) -> None:
    running = await start_hub(hub_settings(tmp_path, recording={"jejak_minutes": 0}))
    try:
        await running.hub.stations.store_thumbnail(PUBLIC_ID, a_jpeg())
        await running.hub.jejak.tick()
        async with httpx.AsyncClient(base_url=running.http) as public:
            response = await public.get(f"/api/v1/stations/{PUBLIC_ID}/jejak")
            assert response.status_code == 200 and response.json()["jejak"] == []
        assert not running.hub.jejak.root.joinpath(PUBLIC_ID).exists()
    finally:
        await stop_hub(running)
