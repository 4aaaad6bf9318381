"""``jaga-station``: run the office agent, check the PC, announce an activity.

    jaga-station [--config station.toml] [--hub URL] [--station ID] [--token-file PATH]
                 [--source test|camera|screen|FILE] [--always-on] [run]
    jaga-station [options] check
    jaga-station [options] activity start "Musyawarah Desa" | activity stop
    jaga-station [options] status

The config defaults to ``$JAGA_STATION_CONFIG``, else ``./station.toml``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import logging.handlers
import signal
import sys
from typing import Any

from clients import __version__
from clients.config import StationConfig, StationConfigError, load_config, require_identity

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Someone watching now: the time of day and the message; the logger names and dates are in the file.
CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(message)s"
CONSOLE_DATE_FORMAT = "%H:%M:%S"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jaga-station", description="Jaga station agent")
    parser.add_argument("--config", help="station.toml (default: $JAGA_STATION_CONFIG or ./station.toml)")
    parser.add_argument("--hub", help="hub URL, e.g. https://jaga.jemberkab.go.id")
    parser.add_argument("--station", help="station id, e.g. 35.09.01.2001")
    parser.add_argument("--token-file", help="file holding this station's token")
    parser.add_argument("--source", help="test | camera | screen | a video file")
    parser.add_argument("--always-on", action="store_true", default=None, help="publish outside office hours too")
    parser.add_argument("--version", action="version", version=f"jaga-station {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the agent (the default)")
    commands.add_parser("check", help="diagnose camera, microphone, network, token and clock")
    commands.add_parser("status", help="ask the running agent for its status")
    activity = commands.add_parser("activity", help="announce a kegiatan through the running agent")
    actions = activity.add_subparsers(dest="action", required=True)
    start = actions.add_parser("start")
    start.add_argument("title")
    actions.add_parser("stop")
    return parser


def config_from_args(args: argparse.Namespace) -> StationConfig:
    return load_config(args.config, {"hub": args.hub, "station": args.station, "token_file": args.token_file,
                                     "source": args.source, "always_on": args.always_on})


# Libraries whose INFO is detail for the log file, not news for the person at the console:
# aioice logs every ICE candidate pair's state changes, several lines per connection.
LIBRARY_LOGGERS = ("aioice", "aiortc", "av", "libav", "websockets")
# The agent's status line, logged every minute: the console has its live status line instead.
STATUS_LOGGER = "jaga.station.status"


class ConsoleFilter(logging.Filter):
    """Lets through WARNING and up, and INFO from loggers outside ``file_only`` (and their children)."""

    def __init__(self, file_only: tuple[str, ...]) -> None:
        super().__init__()
        self.file_only = file_only

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return not any(record.name == name or record.name.startswith(name + ".") for name in self.file_only)


def setup_logging(config: StationConfig) -> None:
    """Console: the agent's own events (one line each) and every warning. Log file: all of it at INFO,
    the libraries' chatter included. Without a log file, library INFO is dropped."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(CONSOLE_FORMAT, CONSOLE_DATE_FORMAT))
    root.addHandler(console)
    if not config.log_file:
        console.addFilter(ConsoleFilter(LIBRARY_LOGGERS))
        return
    console.addFilter(ConsoleFilter((*LIBRARY_LOGGERS, STATUS_LOGGER)))
    path = config.resolve(config.log_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    rotating = logging.handlers.RotatingFileHandler(path, maxBytes=config.log_max_bytes,
                                                    backupCount=config.log_backups, encoding="utf-8")
    rotating.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(rotating)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        command = args.command or "run"
        if command == "activity":
            return _control(config, {"cmd": f"activity.{args.action}", "title": getattr(args, "title", None)})
        if command == "status":
            return _control(config, {"cmd": "status"})
        require_identity(config)
        if command == "check":
            return asyncio.run(_check(config))
        setup_logging(config)
        return asyncio.run(_run(config))
    except StationConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


async def _run(config: StationConfig) -> int:
    from clients.agent import Agent

    agent = Agent(config)
    main_task = asyncio.current_task()
    assert main_task is not None  # asyncio.run() runs this coroutine as a task
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        try:  # graceful stop (DELETE the WHIP session, close 1000) on Ctrl-C, systemd, the demo
            loop.add_signal_handler(signum, main_task.cancel)
        except (NotImplementedError, RuntimeError):
            pass  # Windows: Ctrl-C arrives as KeyboardInterrupt instead
    try:
        await agent.run()
    except asyncio.CancelledError:
        pass
    return 0


async def _check(config: StationConfig) -> int:
    from clients.check import exit_code, render_table, run_checks

    rows = await run_checks(config)
    print(render_table(rows))
    return exit_code(rows)


def _control(config: StationConfig, message: dict[str, Any]) -> int:
    from clients import control

    if not config.control_port:
        print("error: control_port is 0 in station.toml: the agent has no control socket", file=sys.stderr)
        return 2
    try:
        reply = asyncio.run(control.request(config.control_port, {k: v for k, v in message.items() if v is not None}))
    except (TimeoutError, OSError) as exc:
        print(f"error: no jaga-station agent answers on 127.0.0.1:{config.control_port} ({exc})", file=sys.stderr)
        return 1
    print(json.dumps(reply, indent=2, ensure_ascii=False))
    return 0 if reply.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
