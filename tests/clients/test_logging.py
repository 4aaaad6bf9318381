"""The agent's logging: its own events on the console, the libraries' chatter in the log file only."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from clients.cli import setup_logging
from clients.config import config_from_mapping
from tests.kit import RunningHub, timeout, wait_until

STATION = "35.09.01.2001"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """setup_logging() configures the process's root logger: put it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [h for h in root.handlers if h not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


def emit_one_of_each() -> None:
    logging.getLogger("aioice.ice").info("Connection(0) Check CandidatePair(...) State.FROZEN -> State.WAITING")
    logging.getLogger("aiortc.rtcrtpsender").info("RTCRtpSender(video) sender started")
    logging.getLogger("aioice.ice").warning("Connection(0) consent to send expired")
    logging.getLogger("jaga.station.presence").info("online: connected as %s", STATION)
    logging.getLogger("jaga.station.status").info("status: [%s] LIVE | up 0h01m", STATION)


def test_library_info_reaches_the_log_file_but_not_the_console(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], root_logging: None) -> None:
    setup_logging(config_from_mapping({"station": STATION, "log_file": "logs/agent.log"}, base_dir=str(tmp_path)))
    emit_one_of_each()
    console = capsys.readouterr().err
    log_file = (tmp_path / "logs" / "agent.log").read_text(encoding="utf-8")

    assert "online: connected" in console  # the agent's own event, one line
    assert "consent to send expired" in console  # a library's WARNING still shows
    assert "CandidatePair" not in console and "sender started" not in console
    assert "status: [" not in console  # the minute-by-minute status is for the file
    for line in ("INFO aioice.ice: Connection(0) Check CandidatePair", "INFO aiortc.rtcrtpsender: RTCRtpSender",
                 "WARNING aioice.ice: Connection(0) consent", "INFO jaga.station.presence: online",
                 "INFO jaga.station.status: status: ["):
        assert line in log_file


def test_without_a_log_file_the_console_keeps_the_status_but_not_library_info(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], root_logging: None) -> None:
    setup_logging(config_from_mapping({"station": STATION}, base_dir=str(tmp_path)))
    emit_one_of_each()
    console = capsys.readouterr().err
    assert "online: connected" in console and "status: [" in console and "consent to send expired" in console
    assert "CandidatePair" not in console and "sender started" not in console


async def test_a_live_agent_process_keeps_ice_chatter_off_its_console(hub: RunningHub, tmp_path: Path) -> None:
    """``jaga-station run`` as the demo starts it: real ICE, real aioice INFO lines, stderr piped."""
    token = tmp_path / "token.txt"
    token.write_text(await hub.token(STATION) + "\n", encoding="utf-8")
    config = tmp_path / "station.toml"
    config.write_text(
        f'hub = "{hub.http}"\nstation = "{STATION}"\ntoken_file = "token.txt"\nsource = "test"\n'
        'always_on = true\ncontrol_port = 0\nquestions_port = 0\nlog_file = "agent.log"\n\n'
        '[video]\nwidth = 320\nheight = 180\nfps = 10\nbitrate_kbps = 300\n\n'
        '[network]\nhost_addresses = ["127.0.0.1"]\n', encoding="utf-8")
    log_file = tmp_path / "agent.log"
    agent = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients", "--config", str(config), "run",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        await wait_until(lambda: log_file.exists() and "live: publishing" in log_file.read_text(encoding="utf-8"),
                         timeout=30, message="the agent to go live")
    finally:
        if agent.returncode is None:
            agent.send_signal(signal.SIGTERM)  # a clean stop, as the demo does
        try:
            _, stderr = await asyncio.wait_for(agent.communicate(), timeout(15))
        except TimeoutError:
            agent.kill()
            await agent.wait()
            raise
    console = stderr.decode("utf-8")
    written = log_file.read_text(encoding="utf-8")
    assert "online: connected" in console and "live: publishing" in console and "stopping" in console
    assert "aioice" not in console and "CandidatePair" not in console
    assert "INFO aioice.ice:" in written and "CandidatePair" in written
