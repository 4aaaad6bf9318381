"""``python -m clients.demo``: the hub plus a handful of test-pattern agents, for newcomers.

    python -m clients.demo [--config config.toml] [--stations N]

Starts ``python -m hub --config … serve``, mints tokens for the registry's first N stations
(``--stations``, else ``[hub] demo_stations`` in the config, else 4; 0 starts the hub and the
operator alone) with the hub's own CLI, adds an operator
``demo`` with a random password (printed once), starts N ``jaga-station --source test
--always-on`` processes, prints the URLs, and on Ctrl-C stops the agents, then the hub.
Tokens, agent configs and all the logs live under ``<data_dir>/demo/``.

The console stays readable: the URLs, then each agent's console lines (one per event, and
warnings) with its station id in front. The hub's output and the libraries' details (ICE
candidate checks and the like) go to ``hub.log`` and the agents' log files only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from collections.abc import Iterable
from pathlib import Path

from clients.config import DEFAULT_QUESTIONS_PORT

DEFAULT_STATIONS = 4


def hub_cli(config: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "hub", "--config", str(config), *args], input=stdin,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"jaga-hub {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def tail(path: Path, lines: int = 20) -> str:
    """The last lines of a log file, for when the hub stops: its output goes to the file, not the console."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the hub exited during start-up; the end of {log}:\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # start-up poll with a deadline
    raise SystemExit(f"the hub did not answer {url}/healthz within {seconds:.0f} s; see {log}")


def station_count(hub_section: dict[str, object], requested: int | None) -> int:
    """How many agents to start: ``--stations``, else ``[hub] demo_stations``, else 4.

    0 is a real answer (no agents), not "unset". A value that is not a whole number of 0 or
    more stops the demo with a message naming it, before anything starts.
    """
    if requested is not None:
        count, where = requested, "--stations"
    else:
        value = hub_section.get("demo_stations", DEFAULT_STATIONS)
        if not isinstance(value, int) or isinstance(value, bool):
            raise SystemExit(f"[hub] demo_stations must be a whole number, not {value!r}")
        count, where = value, "[hub] demo_stations"
    if count < 0:
        raise SystemExit(f"{where} must be 0 or more, not {count}")
    return count


def relay(station: str, width: int, lines: Iterable[str], lock: threading.Lock) -> None:
    """Print an agent's console lines with its station id in front, until the agent exits."""
    for line in lines:
        with lock:  # whole lines, never two agents' halves
            print(f"{station:<{width}}  {line.rstrip()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.environ.get("JAGA_CONFIG", "config.toml"))
    parser.add_argument("--stations", type=int, help="agents to start (default: [hub] demo_stations or 4)")
    args = parser.parse_args(argv)
    config = Path(args.config).resolve()
    raw = tomllib.loads(config.read_text(encoding="utf-8")) if config.exists() else {}
    hub_section = raw.get("hub", {})
    count = station_count(hub_section, args.stations)
    host = hub_section.get("host", "127.0.0.1")
    port = int(hub_section.get("port", 8080))
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    data_dir = Path(hub_section.get("data_dir", "var"))
    data_dir = data_dir if data_dir.is_absolute() else config.parent / data_dir
    demo_dir = data_dir / "demo"
    demo_dir.mkdir(parents=True, exist_ok=True)
    host_addresses = raw.get("media", {}).get("host_addresses", [])
    ice_servers = raw.get("media", {}).get("ice_servers", [])

    stations = [line.split("\t")[0] for line in hub_cli(config, "stations", "list").splitlines() if line.strip()]
    stations = stations[:count]
    password = secrets.token_urlsafe(12)
    hub_cli(config, "operators", "add", "demo", "--password-stdin", stdin=password + "\n")
    agent_configs = []
    for index, station in enumerate(stations):
        # The first agent serves the citizens' questions page on the default port; the others
        # would only find it taken.
        questions_port = DEFAULT_QUESTIONS_PORT if index == 0 else 0
        token = hub_cli(config, "stations", "token", station).strip().splitlines()[-1]
        safe = station.replace(".", "_")
        (demo_dir / f"{safe}.token").write_text(token + "\n", encoding="utf-8")
        toml = demo_dir / f"{safe}.toml"
        toml.write_text(
            f'hub = "{url}"\nstation = "{station}"\ntoken_file = "{safe}.token"\nsource = "test"\n'
            f'always_on = true\ncontrol_port = 0\nquestions_port = {questions_port}\nlog_file = "{safe}.log"\n\n'
            '[network]\n'
            f"ice_servers = {ice_servers!r}\nhost_addresses = {host_addresses!r}\n".replace("'", '"'),
            encoding="utf-8")
        agent_configs.append(toml)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stop everything cleanly on SIGTERM too
    # Also SIGINT explicitly: started in the background by a non-interactive shell, the
    # process inherits SIGINT *ignored*, and Ctrl-C / kill -INT would then do nothing.
    signal.signal(signal.SIGINT, interrupt)
    # The agents write their console lines to a pipe (not a terminal: no live status line), UTF-8.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    # Each child in its own session: Ctrl-C (or `timeout`) signals the terminal's whole process
    # group, and a second signal on top of the demo's SIGTERM cut the agents' goodbyes short
    # (asyncio errors on their console) and stopped the hub before the agents had said them.
    # So only the demo is signalled, and it stops the agents, then the hub, once each.
    hub_log_path = demo_dir / "hub.log"
    with open(hub_log_path, "ab") as hub_log:  # the hub writes through its own copy of the descriptor
        hub = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), "serve"], env=env,
                               stdin=subprocess.DEVNULL, stdout=hub_log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    agents: list[subprocess.Popen[str]] = []
    relays: list[threading.Thread] = []
    lock = threading.Lock()
    width = max((len(station) for station in stations), default=0)
    try:
        wait_healthy(url, hub, hub_log_path)
        print("\n" + "=" * 72)
        print(f"Jaga demo: hub at {url} with {len(stations)} test-pattern stations: {', '.join(stations)}")
        print(f"  public portal : {url}/")
        print(f"  Pendopo wall  : {url}/wall   (login: demo / {password})")
        print(f"  reports       : {url}/laporan")
        if stations:
            print(f"  questions     : http://127.0.0.1:{DEFAULT_QUESTIONS_PORT}/   ({stations[0]}'s agent page)")
        print(f"  logs          : {hub_log_path} and {demo_dir}/<station>.log")
        print("Ctrl-C stops everything.")
        print("=" * 72 + "\n", flush=True)
        for station, toml in zip(stations, agent_configs, strict=True):
            agent = subprocess.Popen([sys.executable, "-m", "clients", "--config", str(toml), "run"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True, encoding="utf-8", errors="replace", start_new_session=True)
            agents.append(agent)
            assert agent.stderr is not None  # stderr=PIPE
            thread = threading.Thread(target=relay, args=(station, width, agent.stderr, lock), daemon=True)
            thread.start()
            relays.append(thread)
        while hub.poll() is None:
            time.sleep(0.5)  # supervise: the demo ends when the hub does
        print(f"the hub exited with code {hub.returncode}; the end of {hub_log_path}:\n{tail(hub_log_path)}",
              flush=True)
        return hub.returncode or 0
    except KeyboardInterrupt:
        print("\nstopping the demo…", flush=True)
        return 0
    finally:
        # A second signal (make and the shell both pass one on) must not cut the clean-up short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for process in agents:
            process.send_signal(signal.SIGTERM)  # the agent stops cleanly on SIGTERM or SIGINT
        for process in agents:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
        if hub.poll() is None:
            hub.send_signal(signal.SIGTERM)  # uvicorn shuts down gracefully on either
            try:
                hub.wait(timeout=15)
            except subprocess.TimeoutExpired:
                hub.kill()
        for thread in relays:
            thread.join(timeout=2)  # the agents' last lines ("stopping") before the demo returns


if __name__ == "__main__":
    sys.exit(main())
