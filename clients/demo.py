"""``python -m clients.demo``: the hub plus a handful of test-pattern agents, for newcomers.

    python -m clients.demo [--config config.toml] [--stations N]

Starts ``python -m hub --config … serve``, mints tokens for the registry's first N stations
(``[hub] demo_stations`` in the config, else 4) with the hub's own CLI, adds an operator
``demo`` with a random password (printed once), starts N ``jaga-station --source test
--always-on`` processes, prints the URLs, and on Ctrl-C stops the agents, then the hub.
Tokens and agent configs live under ``<data_dir>/demo/``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

DEFAULT_STATIONS = 4


def hub_cli(config: Path, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "hub", "--config", str(config), *args], input=stdin,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"jaga-hub {' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def wait_healthy(url: str, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the hub exited during start-up; see its output above")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # start-up poll with a deadline
    raise SystemExit(f"the hub did not answer {url}/healthz within {seconds:.0f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clients.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=os.environ.get("JAGA_CONFIG", "config.toml"))
    parser.add_argument("--stations", type=int, help="agents to start (default: [hub] demo_stations or 4)")
    args = parser.parse_args(argv)
    config = Path(args.config).resolve()
    raw = tomllib.loads(config.read_text(encoding="utf-8")) if config.exists() else {}
    hub_section = raw.get("hub", {})
    count = args.stations if args.stations is not None else int(hub_section.get("demo_stations") or DEFAULT_STATIONS)
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
    stations = stations[:max(0, count)]
    password = secrets.token_urlsafe(12)
    hub_cli(config, "operators", "add", "demo", "--password-stdin", stdin=password + "\n")
    agent_configs = []
    for station in stations:
        token = hub_cli(config, "stations", "token", station).strip().splitlines()[-1]
        safe = station.replace(".", "_")
        (demo_dir / f"{safe}.token").write_text(token + "\n", encoding="utf-8")
        toml = demo_dir / f"{safe}.toml"
        toml.write_text(
            f'hub = "{url}"\nstation = "{station}"\ntoken_file = "{safe}.token"\nsource = "test"\n'
            f'always_on = true\ncontrol_port = 0\nlog_file = "{safe}.log"\n\n[network]\n'
            f"ice_servers = {ice_servers!r}\nhost_addresses = {host_addresses!r}\n".replace("'", '"'),
            encoding="utf-8")
        agent_configs.append(toml)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)  # stop everything cleanly on SIGTERM too
    # Also SIGINT explicitly: started in the background by a non-interactive shell, the
    # process inherits SIGINT *ignored*, and Ctrl-C / kill -INT would then do nothing.
    signal.signal(signal.SIGINT, interrupt)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    hub = subprocess.Popen([sys.executable, "-m", "hub", "--config", str(config), "serve"], env=env)
    agents: list[subprocess.Popen[bytes]] = []
    try:
        wait_healthy(url, hub)
        for toml in agent_configs:
            agents.append(subprocess.Popen([sys.executable, "-m", "clients", "--config", str(toml), "run"],
                                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        print("\n" + "=" * 72)
        print(f"Jaga demo: hub at {url} with {len(agents)} test-pattern stations: {', '.join(stations)}")
        print(f"  public portal : {url}/")
        print(f"  Pendopo wall  : {url}/wall   (login: demo / {password})")
        print(f"  reports       : {url}/laporan")
        print(f"  agent logs    : {demo_dir}/*.log")
        print("Ctrl-C stops everything.")
        print("=" * 72 + "\n", flush=True)
        while hub.poll() is None:
            time.sleep(0.5)  # supervise: the demo ends when the hub does
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


if __name__ == "__main__":
    sys.exit(main())
