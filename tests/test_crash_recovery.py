"""`kill -9` of a real hub process: intervals closed before the crash stay as they were, the
open ones are closed at their last checkpoint on restart."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REGISTRY, timeout
from tests.wsclient import station


def write_config(tmp_path: Path) -> Path:
    (tmp_path / "stations.csv").write_text(TEST_REGISTRY)
    config = tmp_path / "config.toml"
    config.write_text(
        f'[hub]\nport = 0\ndata_dir = "{tmp_path / "data"}"\ncheckpoint_s = 0.2\n'
        '[stations]\nregistry = "stations.csv"\n'
        '[presence]\nheartbeat_s = 0.2\ntimeout_s = 1.0\n'
        '[schedule]\nnational_holidays = false\n'
    )
    return config


async def start_process(config: Path, port_file: Path) -> tuple[subprocess.Popen[bytes], int]:
    port_file.unlink(missing_ok=True)
    log = config.parent / "hub.log"
    with log.open("ab") as sink:
        process = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), "serve",
                                    "--port-file", str(port_file)], stdout=sink, stderr=sink)
    deadline = asyncio.get_running_loop().time() + timeout(30)
    while not (port_file.exists() and port_file.read_text()):
        if process.poll() is not None:
            raise RuntimeError(f"hub exited: {log.read_text()[-2000:]}")
        assert asyncio.get_running_loop().time() < deadline, "hub did not start"
        await asyncio.sleep(0.05)
    return process, int(port_file.read_text())


def rows(database: Path) -> list[sqlite3.Row]:
    connection = sqlite3.connect(database)
    connection.row_factory = sqlite3.Row
    try:
        return connection.execute("SELECT * FROM intervals ORDER BY id").fetchall()
    finally:
        connection.close()


async def wait_for(predicate, what: str, wait: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout(wait)
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
async def test_kill_9_keeps_closed_intervals_and_closes_open_ones_at_checkpoint(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    minted = subprocess.run([sys.executable, "-m", "hub", "--config", str(config), "stations", "token", "35.09.01"],
                            capture_output=True, text=True, check=True)
    token = minted.stdout.strip().splitlines()[-1]
    database = tmp_path / "data" / "jaga.db"
    process, port = await start_process(config, tmp_path / "port")
    try:
        first, _ = await station(f"ws://127.0.0.1:{port}", "35.09.01", token)
        await first.close()  # a clean close: one closed interval before the crash
        await wait_for(lambda: any(r["end"] is not None for r in rows(database)), "the closed interval")
        second, _ = await station(f"ws://127.0.0.1:{port}", "35.09.01", token)
        await wait_for(lambda: any(r["end"] is None and r["checkpoint"] > r["start"] for r in rows(database)),
                       "a checkpoint of the open interval")
        before = rows(database)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout(10))
        second.abort()
    finally:
        if process.poll() is None:
            process.kill()
    closed_before = [dict(r) for r in before if r["end"] is not None]
    assert [r["end_reason"] for r in closed_before] == ["closed"]

    restarted, _ = await start_process(config, tmp_path / "port")
    try:
        after = rows(database)
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout(20))
    assert [dict(r) for r in after if r["id"] in {c["id"] for c in closed_before}] == closed_before
    crashed = [r for r in after if r["end_reason"] == "crash"]
    assert len(crashed) == 1
    assert crashed[0]["end"] == crashed[0]["checkpoint"] >= crashed[0]["start"]
    assert all(r["end"] is not None for r in after)
