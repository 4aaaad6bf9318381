"""``jaga-station check`` against a running hub: the table says what works and what to fix."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from clients.check import exit_code, render_table, run_checks
from tests.clients.helpers import agent_config
from tests.kit import RunningHub, timeout

STATION = "35.09.01"


async def test_check_table_all_good_with_test_source(hub: RunningHub, tmp_path: Path) -> None:
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION), always_on=False)
    rows = {r.name: r for r in await run_checks(config)}
    assert rows["hub reachable"].status == "ok"
    assert rows["token"].status == "ok"
    assert rows["clock"].status == "ok" and "s from the hub" in rows["clock"].detail
    assert rows["office hours"].status == "ok" and "Asia/Jakarta" in rows["office hours"].detail
    assert rows["camera"].status == "skip"  # the test source needs no camera
    assert rows["quality"].detail == ("on a weak uplink: L1 320x180@10 250 kbps, L2 320x180@10 120 kbps, "
                                      "L3 audio only; Opus 32 kbps")
    assert exit_code(list(rows.values())) == 0


async def test_check_table_names_the_fixes(hub: RunningHub, tmp_path: Path) -> None:
    await hub.token(STATION)
    config = agent_config(tmp_path, hub, STATION, "not-the-token", source="camera",
                          devices={"camera": "/dev/video-missing", "microphone": "alsa:nonexistent"})
    rows = await run_checks(config)
    by_name = {r.name: r for r in rows}
    assert by_name["token"].status == "fail" and "4401" in by_name["token"].detail
    assert "new token" in by_name["token"].fix
    assert by_name["camera"].status == "fail" and by_name["camera"].fix
    assert by_name["microphone"].status == "fail"
    assert exit_code(rows) == 1
    table = render_table(rows)
    assert "FAIL" in table and "→ ask the Pendopo admin" in table

    unreachable = agent_config(tmp_path, "http://127.0.0.1:9", STATION, "x")
    by_name = {r.name: r for r in await run_checks(unreachable)}
    assert by_name["hub reachable"].status == "fail" and by_name["token"].status == "fail"


async def test_check_command_prints_the_table(hub: RunningHub, tmp_path: Path) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(await hub.token(STATION))
    toml = tmp_path / "station.toml"
    toml.write_text(f'hub = "{hub.http}"\nstation = "{STATION}"\ntoken_file = "token.txt"\nsource = "test"\n'
                    '[network]\nhost_addresses = ["127.0.0.1"]\n')
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients", "--config", str(toml), "check",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=str(Path(__file__).parents[2]))
    out, err = await asyncio.wait_for(process.communicate(), timeout(30))
    text = out.decode()
    assert process.returncode == 0, text + err.decode()
    assert "token" in text and "OK" in text and "hub reachable" in text
