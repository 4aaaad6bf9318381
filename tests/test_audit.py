"""The audit log: paged over HTTP, written by admin commands and by operators reading the data
of non-public stations (once per operator, station and period: hub/core/audit.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from hub.backends.sqlite import SqliteCredentials
from hub.core.audit import READ_PERIOD_S
from tests.kit import RunningHub, hub_settings, run_cli, start_hub, stop_hub, write_config

PUBLIC = "35.09.01"
PRIVATE = "opd.bakesbangpol"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"


async def operator(hub: RunningHub, name: str = "budi") -> httpx.AsyncClient:
    await hub.hub.auth.add_operator(name, "rahasia-sekali")
    client = httpx.AsyncClient(base_url=hub.http)
    login = await client.post("/api/v1/auth/login", json={"username": name, "password": "rahasia-sekali"})
    client.headers["X-CSRF-Token"] = login.json()["csrf"]
    return client


async def test_the_audit_api_pages_through_every_entry(hub: RunningHub) -> None:
    store = hub.hub.credentials
    for i in range(450):
        await store.audit(1000.0 + i, "budi", "announce", f"text {i}")
    http = await operator(hub)
    try:
        everything = await store.audit_log(limit=10_000)  # the 450 and the login
        seen: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        pages = 0
        while True:
            page = (await http.get("/api/v1/audit", params=params)).json()
            assert len(page["entries"]) <= 100
            seen += page["entries"]
            pages += 1
            if page["next"] is None:
                break
            assert page["next"] == page["entries"][-1]["id"]
            params["before"] = page["next"]
        assert pages == 5 and seen == everything
        assert [e["detail"] for e in seen if e["action"] == "announce"] == [f"text {i}" for i in range(449, -1, -1)]

        default = (await http.get("/api/v1/audit")).json()
        assert len(default["entries"]) == 200 and default["next"] == default["entries"][-1]["id"]
        last = (await http.get("/api/v1/audit", params={"before": seen[1]["id"]})).json()
        assert last["entries"] == seen[2:202]
        for query in ("limit=0", "limit=1001", "limit=ten", "before=0", "before=x", "before=-3"):
            response = await http.get(f"/api/v1/audit?{query}")
            assert (response.status_code, response.json()["error"]["code"]) == (400, "bad_query"), query
    finally:
        await http.aclose()


async def test_operator_reads_of_a_private_station_are_audited_once_per_period(tmp_path: Path) -> None:
    now = [1_800_000_000.0]
    running = await start_hub(hub_settings(tmp_path), clock=lambda: now[0])
    running.hub.stations.thumbnails[PRIVATE] = (JPEG, now[0])
    running.hub.stations.thumbnails[PUBLIC] = (JPEG, now[0])
    budi, sari = await operator(running, "budi"), await operator(running, "sari")
    anonymous = httpx.AsyncClient(base_url=running.http)

    async def reads() -> list[tuple[str, str]]:
        return [(e["actor"], e["detail"]) for e in await running.hub.credentials.audit_log() if e["action"] == "read"]

    try:
        for _ in range(3):  # the wall polls: many reads, one entry
            assert (await budi.get(f"/api/v1/stations/{PRIVATE}")).status_code == 200
            assert (await budi.get(f"/api/v1/stations/{PRIVATE}/thumbnail.jpg")).status_code == 200
            assert (await budi.get(f"/api/v1/attendance/daily?station={PRIVATE}")).status_code == 200
            assert (await budi.get(f"/api/v1/stations/{PUBLIC}/thumbnail.jpg")).status_code == 200
            assert (await anonymous.get(f"/api/v1/stations/{PRIVATE}/thumbnail.jpg")).status_code == 404
        assert await reads() == [("budi", PRIVATE)]
        # Lists that carry private stations: one entry per list, not one per station.
        for _ in range(2):
            assert (await budi.get("/api/v1/attendance/daily")).status_code == 200
            assert (await anonymous.get("/api/v1/attendance/daily")).status_code == 200
        assert await reads() == [("budi", "/api/v1/attendance/daily"), ("budi", PRIVATE)]
        await sari.get(f"/api/v1/stations/{PRIVATE}/thumbnail.jpg")
        assert (await reads())[0] == ("sari", PRIVATE)
        now[0] += READ_PERIOD_S - 1
        await budi.get(f"/api/v1/stations/{PRIVATE}")
        assert len(await reads()) == 3
        now[0] += 1
        await budi.get(f"/api/v1/stations/{PRIVATE}/thumbnail.jpg")
        assert (await reads())[0] == ("budi", PRIVATE) and len(await reads()) == 4
    finally:
        for client in (budi, sari, anonymous):
            await client.aclose()
        await stop_hub(running)


async def test_admin_commands_are_audited(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    assert run_cli(config, "stations", "token", PUBLIC).returncode == 0
    assert run_cli(config, "operators", "add", "sari", "--password-stdin", stdin="cukup-panjang\n").returncode == 0
    assert run_cli(config, "operators", "add", "sari", "--password-stdin", stdin="lebih-panjang\n").returncode == 0
    registry = tmp_path / "new.csv"
    registry.write_text("id,name,kind,kecamatan,public\n35.09.01,Kecamatan Jombang,kecamatan,Jombang,true\n")
    assert run_cli(config, "stations", "import", str(registry)).returncode == 0
    refused = run_cli(config, "operators", "add", "sari", "--password-stdin", stdin="pendek\n")
    assert refused.returncode == 2  # nothing changed, nothing audited
    store = SqliteCredentials(tmp_path / "data" / "jaga.db")
    try:
        entries = list(reversed(await store.audit_log()))
    finally:
        await store.close()
    assert [(e["action"], e["detail"]) for e in entries] == [
        ("token.rotate", PUBLIC), ("operator.add", "sari"), ("operator.password", "sari"),
        ("registry.import", f"1 stations from {registry}")]
    assert all(e["actor"].startswith("cli:") and len(e["actor"]) > 4 for e in entries)
    assert all("cukup" not in e["detail"] and "lebih" not in e["detail"] for e in entries)
