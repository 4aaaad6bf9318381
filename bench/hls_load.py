"""HLS through the shipped nginx cache: many light LL-HLS players, one station, one hub.

    python -m bench.hls_load --clients 1000                 # through nginx, then straight at the hub
    python -m bench.hls_load --clients 1000 --targets nginx --seconds 60

Setup: a hub (``python -m hub serve``, its own process, memory backend), one real
``jaga-station`` agent publishing its H.264 test pattern (its own process), nginx from
``deploy/nginx/jaga.conf`` rendered as its header says (tests/proxy/nginx.py ``render``, the
HLS cache block included, TLS with a private CA; one worker, access log off), and ``--workers``
load processes of light players. A player is one keep-alive HTTP/1.1 connection (TLS through
nginx, plain straight at the hub) written by hand on asyncio streams, doing what an LL-HLS
player does at the live edge:

    GET index.m3u8                                    → the preload hint p{M}.{I}
    loop: GET the hinted part (blocks until it exists)
          GET index.m3u8?_HLS_msn=M&_HLS_part=I       → the state with that part, the next hint
          (parts the playlist lists past the last one held: fetched too, as a player would)

A **probe** player in this process asks the hub directly (no cache): its receipt of a part is
taken as the moment the part was published. Measured over the window after a warm-up:
client requests per second, the hub's ``jaga_hls_requests_total`` delta (less the probe's own
requests) per part published, CPU of hub, nginx, agent and load processes (``/proc/PID/stat``),
the packagers' ``jaga_hls_cpu_seconds_total``, and how late each player got each part: after
the probe, and after the first player to get it. Results go to ``bench/results/hls_load.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import ssl
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.common import (
    Worker,
    cpu_seconds,
    fmt,
    fmt_spread,
    http_client,
    install_cleanup,
    log,
    metrics_text,
    mint_tokens,
    own,
    percentile,
    raise_fd_limit,
    serve_worker,
    start_hub,
    stop,
    summary,
    temp_dir,
    wait_for_file,
    write_result,
)

STATION = "35.09.01"  # Kecamatan Jombang: public
HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+/p(\d+)\.(\d+)\.m4s)"')
PART = re.compile(r'#EXT-X-PART:[^\n]*URI="([^"]+/p(\d+)\.(\d+)\.m4s)"')
REQUESTS = re.compile(r'^jaga_hls_requests_total\{kind="([a-z]+)"\} ([0-9.e+]+)$', re.M)
HLS_CPU = re.compile(r"^jaga_hls_cpu_seconds_total ([0-9.e+]+)$", re.M)


# ---------------------------------------------------------------- a light player

class Connection:
    """One keep-alive HTTP/1.1 connection: GET, and the answer's status, cache status and body."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None) -> None:
        self.host, self.port, self.context = host, port, context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.context, server_hostname=self.host if self.context else None)

    async def get(self, path: str) -> tuple[int, str, bytes]:
        if self.writer is None or self.writer.is_closing():
            await self.open()
        assert self.reader is not None and self.writer is not None
        self.writer.write(f"GET {path} HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, cache, close = -1, "", False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.lower()
            if name == "content-length":
                length = int(value)
            elif name == "x-cache-status":
                cache = value.strip()
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        if length < 0:
            raise RuntimeError(f"no Content-Length for {path}: {head[:200]!r}")
        body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, cache, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


class Tally:
    """What a process's players saw: receipt times per part, requests, statuses, cache statuses."""

    def __init__(self, window: tuple[float, float]) -> None:
        self.window = window
        self.parts: dict[str, list[float]] = defaultdict(list)
        self.requests = 0  # answered inside the window
        self.statuses: Counter[str] = Counter()
        self.cache: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.bytes = 0

    def answered(self, status: int, cache: str, size: int) -> None:
        now = time.monotonic()
        if self.window[0] <= now < self.window[1]:
            self.requests += 1
            self.statuses[str(status)] += 1
            self.cache[cache or "-"] += 1
            self.bytes += size


async def player(connection: Connection, base: str, tally: Tally, start_at: float, end_at: float) -> None:
    """Follow the LL playlist at the live edge until ``end_at`` (see the module docstring)."""
    await asyncio.sleep(max(0.0, start_at - time.monotonic()))
    last: tuple[int, int] | None = None
    playlist_path = f"{base}/index.m3u8"
    while time.monotonic() < end_at:
        try:
            status, cache, body = await connection.get(playlist_path)
            tally.answered(status, cache, len(body))
            if status != 200:
                await asyncio.sleep(0.5)  # not ready yet (a player retries after a moment)
                playlist_path = f"{base}/index.m3u8"
                continue
            text = body.decode()
            missed = [(int(m), int(i), uri) for uri, m, i in PART.findall(text)
                      if last is not None and (int(m), int(i)) > last]
            hint = HINT.search(text)
            if hint is None:
                raise RuntimeError("no preload hint")
            wanted = [*missed, (int(hint.group(2)), int(hint.group(3)), hint.group(1))]
            for msn, index, uri in wanted:
                status, cache, body = await connection.get(f"{base}/{uri}")
                tally.answered(status, cache, len(body))
                if status == 200:
                    tally.parts[f"{msn}.{index}"].append(time.monotonic())
                last = (msn, index)
            assert last is not None
            playlist_path = f"{base}/index.m3u8?_HLS_msn={last[0]}&_HLS_part={last[1]}"
        except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError) as exc:
            tally.errors[type(exc).__name__] += 1
            connection.close()
            playlist_path = f"{base}/index.m3u8"
            await asyncio.sleep(0.5)
    connection.close()


async def run_players(host: str, port: int, ca: str | None, base: str, clients: int, start_at: float,
                      window: tuple[float, float], spread_s: float) -> dict[str, Any]:
    """The worker's op: ``clients`` players, started over ``spread_s`` from ``start_at``."""
    context = ssl.create_default_context(cafile=ca) if ca else None
    tally = Tally(window)
    started_cpu = time.process_time()
    await asyncio.gather(*(player(Connection(host, port, context), base, tally,
                                  start_at + spread_s * index / max(1, clients), window[1])
                           for index in range(clients)))
    return {"parts": tally.parts, "requests": tally.requests, "statuses": tally.statuses, "cache": tally.cache,
            "errors": tally.errors, "bytes": tally.bytes, "cpu_s": time.process_time() - started_cpu}


# ---------------------------------------------------------------- the processes

def nginx_up(workdir: Path, hub_port: int) -> tuple[subprocess.Popen[bytes], int, Path]:
    """nginx from the shipped file (rendered as tests/proxy does), one worker, enough connections."""
    from bench.common import free_port
    from tests.proxy.nginx import render, require_nginx
    from tests.proxy.tls import SERVER_ADDRESS, make_tls

    home = workdir / "nginx"
    tls = make_tls(home / "tls")
    https, http = free_port(), free_port()
    (home / "jaga.conf").write_text(render({
        "SERVER_NAME": SERVER_ADDRESS, "HTTPS_LISTEN": f"{SERVER_ADDRESS}:{https}",
        "HTTP_LISTEN": f"{SERVER_ADDRESS}:{http}",
        "TLS_CERTIFICATE": str(tls.certificate), "TLS_CERTIFICATE_KEY": str(tls.key),
        "HUB_UPSTREAM": f"127.0.0.1:{hub_port}", "HLS_CACHE_DIR": str(home / "hls-cache")}))
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {home / kind};" for kind in kinds)
    user = "user root;\n" if os.geteuid() == 0 else ""
    (home / "nginx.conf").write_text(f"""{user}worker_processes 1;
worker_rlimit_nofile 16384;
events {{ worker_connections 8192; }}
http {{
    access_log off;
{temp}
    include {home / "jaga.conf"};
}}
""")
    proc = own(subprocess.Popen([require_nginx(), "-p", str(home), "-c", str(home / "nginx.conf"),
                                 "-e", str(home / "error.log"), "-g", f"daemon off; pid {home / 'nginx.pid'};"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
    return proc, https, tls.ca


def process_tree_cpu(pid: int) -> float:
    """CPU of a process and its direct children (nginx's master and workers)."""
    total = cpu_seconds(pid)
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return total + sum(cpu_seconds(int(child)) for child in children)


async def agent_main(hub: str, station: str, token: str, workdir: str) -> dict[str, Any]:
    """The agent worker's op: publish the test pattern in H.264 until told to quit."""
    from clients.agent import Agent
    from clients.config import config_from_mapping

    token_file = Path(workdir) / "station.token"
    token_file.write_text(token)
    config = config_from_mapping({
        "hub": hub, "station": station, "token_file": str(token_file), "source": "test", "always_on": True,
        "control_port": 0, "questions_port": 0, "video": {"codec": "H264"},
        "network": {"host_addresses": ["127.0.0.1"], "backoff_base_s": 0.5, "backoff_cap_s": 2.0},
    }, base_dir=workdir)
    agent = Agent(config)
    await agent.start()
    await agent.wait_until(lambda a: a.state == "live", 30)
    AGENTS.append(agent)
    return {"pid": os.getpid()}


async def agent_stop() -> dict[str, Any]:
    for agent in AGENTS:
        await agent.stop()
    return {}


AGENTS: list[Any] = []


async def probe(http: Any, base: str, end_at: float, seen: dict[str, float],
                counted: list[tuple[float, str]]) -> None:
    """One player straight at the hub: when it gets a part is when the part was published."""
    last: tuple[int, int] | None = None
    path = f"{base}/index.m3u8"
    while time.monotonic() < end_at:
        answer = await http.get(path)
        counted.append((time.monotonic(), "blocking" if "_HLS_msn" in path else "playlist"))
        if answer.status_code != 200:
            await asyncio.sleep(0.5)
            path = f"{base}/index.m3u8"
            continue
        hint = HINT.search(answer.text)
        assert hint is not None
        missed = [(int(m), int(i), uri) for uri, m, i in PART.findall(answer.text)
                  if last is not None and (int(m), int(i)) > last]
        for msn, index, uri in [*missed, (int(hint.group(2)), int(hint.group(3)), hint.group(1))]:
            part = await http.get(f"{base}/{uri}")
            counted.append((time.monotonic(), "media"))
            if part.status_code == 200:
                seen.setdefault(f"{msn}.{index}", time.monotonic())
            last = (msn, index)
        assert last is not None
        path = f"{base}/index.m3u8?_HLS_msn={last[0]}&_HLS_part={last[1]}"


def hub_counts(text: str) -> tuple[dict[str, float], float]:
    match = HLS_CPU.search(text)
    return {kind: float(value) for kind, value in REQUESTS.findall(text)}, float(match.group(1)) if match else 0.0


async def measure(target: str, hub_port: int, hub_pid: int, nginx: tuple[int, int, Path] | None, agent_pid: int,
                  clients: int, workers: int, seconds: float, warmup: float) -> dict[str, Any]:
    hub_http = f"http://127.0.0.1:{hub_port}"
    base = f"/hls/{STATION}"
    loads = [await Worker.start("-m", "bench.hls_load", "--worker") for _ in range(workers)]
    spread = min(8.0, 1.0 + clients / 200)
    start_at = time.monotonic() + 1.0
    window = (start_at + spread + warmup, start_at + spread + warmup + seconds)
    if target == "nginx":
        assert nginx is not None
        host, port, ca = "127.0.0.1", nginx[1], str(nginx[2])
    else:
        host, port, ca = "127.0.0.1", hub_port, None
    shares = [clients // workers + (1 if index < clients % workers else 0) for index in range(workers)]
    calls = [asyncio.create_task(load.call("run", timeout=window[1] - time.monotonic() + 120, host=host, port=port,
                                           ca=ca, base=base, clients=share, start_at=start_at, window=window,
                                           spread_s=spread))
             for load, share in zip(loads, shares, strict=True)]
    seen: dict[str, float] = {}
    probe_requests: list[tuple[float, str]] = []
    async with http_client(timeout=30) as http:
        probing = asyncio.create_task(probe(http, hub_http + base, window[1] + 2, seen, probe_requests))
        await asyncio.sleep(max(0.0, window[0] - time.monotonic()))
        pids = {"hub": hub_pid, "agent": agent_pid, **{f"load{i}": load.proc.pid for i, load in enumerate(loads)}}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        nginx_cpu0 = process_tree_cpu(nginx[0]) if nginx else 0.0
        counts0, hls_cpu0 = hub_counts(await metrics_text(http, hub_http))
        t0 = time.monotonic()
        await asyncio.sleep(max(0.0, window[1] - time.monotonic()))
        counts1, hls_cpu1 = hub_counts(await metrics_text(http, hub_http))
        t1 = time.monotonic()
        cpu1 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        nginx_cpu1 = process_tree_cpu(nginx[0]) if nginx else 0.0
        replies = await asyncio.gather(*calls)
        await probing
    for load in loads:
        await load.close()
    elapsed = t1 - t0
    probe_kinds = Counter(kind for t, kind in probe_requests if t0 <= t < t1)
    probe_in_window = sum(probe_kinds.values())
    published = {key: t for key, t in seen.items() if t0 <= t < t1}
    receipts: dict[str, list[float]] = defaultdict(list)
    for reply in replies:
        for key, times in reply["parts"].items():
            receipts[key].extend(times)
    after_probe: list[float] = []
    after_first: list[float] = []
    fraction: list[float] = []
    for key, published_at in published.items():
        got = receipts.get(key, [])
        fraction.append(len(got) / clients)
        if got:
            first = min(got)
            after_probe.extend(t - published_at for t in got)
            after_first.extend(t - first for t in got)
    hub_requests = {kind: counts1.get(kind, 0) - counts0.get(kind, 0) for kind in counts1}
    total_hub = sum(hub_requests.values()) - probe_in_window
    client_requests = sum(reply["requests"] for reply in replies)
    parts = len(published)
    result = {
        "target": target, "clients": clients, "workers": workers, "window_s": elapsed, "parts_published": parts,
        "client_requests_per_s": client_requests / elapsed,
        "client_mbit_per_s": sum(reply["bytes"] for reply in replies) * 8 / elapsed / 1e6,
        "statuses": sum((Counter(reply["statuses"]) for reply in replies), Counter()),
        "cache": sum((Counter(reply["cache"]) for reply in replies), Counter()),
        "errors": sum((Counter(reply["errors"]) for reply in replies), Counter()),
        "hub_requests": hub_requests, "probe_requests": probe_in_window,
        "hub_requests_per_s": total_hub / elapsed,
        "hub_requests_per_part": total_hub / parts if parts else None,
        "hub_media_per_part": (hub_requests.get("media", 0) - probe_kinds["media"]) / parts if parts else None,
        "hub_blocking_per_part": (hub_requests.get("blocking", 0) - probe_kinds["blocking"]) / parts if parts else None,
        "parts_received_fraction": sum(fraction) / len(fraction) if fraction else None,
        "cpu_cores": {name: (cpu1[name] - cpu0[name]) / elapsed for name in pids},
        "nginx_cpu_cores": (nginx_cpu1 - nginx_cpu0) / elapsed if nginx else None,
        "hls_packager_cpu_cores": (hls_cpu1 - hls_cpu0) / elapsed,
        "late_after_probe_ms": {q: _ms(percentile(after_probe, q)) for q in (50, 95, 99)},
        "late_after_first_ms": {q: _ms(percentile(after_first, q)) for q in (50, 95, 99)},
    }
    return result


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


async def start_station(workdir: Path, with_nginx: bool) -> tuple[Any, int, Worker, int, tuple[int, int, Path] | None]:
    """Hub (own process), nginx in front of it if asked, and the agent live on ``STATION``."""
    hub_proc, hub_port, config = await start_hub(workdir, hls={"idle_s": 60.0}, recording={"enabled": False})
    token = (await asyncio.to_thread(mint_tokens, config, [STATION]))[STATION]
    nginx = None
    if with_nginx:
        proc, https, ca = await asyncio.to_thread(nginx_up, workdir, hub_port)
        await wait_for_file(workdir / "nginx" / "nginx.pid", _Exited(proc), 10)  # type: ignore[arg-type]  # duck-typed
        nginx = (proc.pid, https, ca)
    agent = await Worker.start("-m", "bench.hls_load", "--agent-worker", log=workdir / "agent.log")
    agent_pid = (await agent.call("start", timeout=60, hub=f"http://127.0.0.1:{hub_port}", station=STATION,
                                  token=token, workdir=str(workdir)))["pid"]
    log(f"hub :{hub_port} pid {hub_proc.pid}, agent pid {agent_pid}, nginx {nginx}")
    return hub_proc, hub_port, agent, agent_pid, nginx


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    install_cleanup()
    workdir = temp_dir("jaga-hls-load-")
    hub_proc, hub_port, agent, agent_pid, nginx = await start_station(workdir, "nginx" in args.targets)
    results = []
    try:
        for repeat in range(args.repeats):
            order = args.targets if repeat % 2 == 0 else args.targets[::-1]  # interleaved, the order alternating
            for target in order:
                log(f"repeat {repeat + 1}, {target}: {args.clients} players in {args.workers} processes, "
                    f"{args.seconds} s after {args.warmup} s")
                result = await measure(target, hub_port, hub_proc.pid, nginx, agent_pid, args.clients, args.workers,
                                       args.seconds, args.warmup)
                result["repeat"] = repeat
                results.append(result)
                log(json.dumps(result, default=str))
                print_result(result)
    finally:
        await agent.close(release="stop")
        await stop(hub_proc)
    print_summary(results)
    path = write_result("hls_load", {"clients": args.clients, "seconds": args.seconds, "results": results})
    log(f"results: {path}")


def print_summary(results: list[dict[str, Any]]) -> None:
    """Median (min–max) over repeats; ratios taken within each repeat (the two targets side by side)."""
    by_repeat: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for result in results:
        by_repeat[result["repeat"]][result["target"]] = result

    def spread(values: list[float | None], digits: int) -> str:
        return fmt_spread(summary(list(values)), digits)

    print("\nsummary, median (min–max) over repeats:")
    for target in ("nginx", "hub"):
        rows = [r for r in results if r["target"] == target]
        if not rows:
            continue
        print(f"  {target}: client req/s {spread([r['client_requests_per_s'] for r in rows], 0)}, hub req/s "
              f"{spread([r['hub_requests_per_s'] for r in rows], 1)}, hub req per part "
              f"{spread([r['hub_requests_per_part'] for r in rows], 2)}, hub CPU "
              f"{spread([r['cpu_cores']['hub'] for r in rows], 3)}, nginx CPU "
              f"{spread([r['nginx_cpu_cores'] for r in rows], 3)}, late p50/p95 after the probe "
              f"{spread([r['late_after_probe_ms'][50] for r in rows], 0)} / "
              f"{spread([r['late_after_probe_ms'][95] for r in rows], 0)} ms")
    pairs = [pair for pair in by_repeat.values() if {"nginx", "hub"} <= set(pair)]
    if pairs:
        hub_alone = [p["hub"]["cpu_cores"]["hub"] / p["nginx"]["cpu_cores"]["hub"] for p in pairs]
        with_nginx = [p["hub"]["cpu_cores"]["hub"] / (p["nginx"]["cpu_cores"]["hub"] + p["nginx"]["nginx_cpu_cores"])
                      for p in pairs]
        requests = [p["hub"]["hub_requests_per_s"] / p["nginx"]["hub_requests_per_s"] for p in pairs]
        print(f"  straight ÷ through nginx, per repeat: hub requests {spread(requests, 0)}, hub CPU "
              f"{spread(hub_alone, 1)}, hub CPU ÷ (hub + nginx) CPU {spread(with_nginx, 1)}")


class _Exited:
    """What wait_for_file wants of a process: its return code."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    @property
    def pid(self) -> int:
        return self.proc.pid


def print_result(r: dict[str, Any]) -> None:
    cores = r["cpu_cores"]
    loads = sum(value for name, value in cores.items() if name.startswith("load"))
    print(f"\n{r['target']}: {r['clients']} players, {r['window_s']:.1f} s, {r['parts_published']} parts published")
    print(f"  client requests/s       {fmt(r['client_requests_per_s'])}  ({fmt(r['client_mbit_per_s'], 1)} Mbit/s; "
          f"statuses {dict(r['statuses'])}; cache {dict(r['cache'])}; errors {dict(r['errors'])})")
    print(f"  hub requests/s          {fmt(r['hub_requests_per_s'], 1)}  (less the probe's {r['probe_requests']})")
    print(f"  hub requests per part   {fmt(r['hub_requests_per_part'], 2)}  (media {fmt(r['hub_media_per_part'], 2)}, "
          f"blocking playlists {fmt(r['hub_blocking_per_part'], 2)})")
    print(f"  parts each player got   {fmt((r['parts_received_fraction'] or 0) * 100, 1)} %")
    print(f"  CPU, cores              hub {cores['hub']:.3f} (packager {r['hls_packager_cpu_cores']:.3f}), nginx "
          f"{fmt(r['nginx_cpu_cores'], 3)}, agent {cores['agent']:.3f}, load processes {loads:.3f}")
    late_probe, late_first = r["late_after_probe_ms"], r["late_after_first_ms"]
    print(f"  late after the probe    p50 {late_probe[50]} ms, p95 {late_probe[95]} ms, p99 {late_probe[99]} ms")
    print(f"  late after first player p50 {late_first[50]} ms, p95 {late_first[95]} ms, p99 {late_first[99]} ms")


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--targets", default="nginx,hub", help="nginx, hub (straight, no cache), or both")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--agent-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        raise_fd_limit()

        async def run(**kw: Any) -> dict[str, Any]:
            kw["window"] = tuple(kw["window"])
            return await run_players(**kw)

        asyncio.run(serve_worker({"run": run}))
        return
    if args.agent_worker:
        asyncio.run(serve_worker({"start": agent_main, "stop": agent_stop}))
        return
    args.targets = [target.strip() for target in args.targets.split(",") if target.strip()]
    if not set(args.targets) <= {"nginx", "hub"}:
        parser.error("--targets: nginx and/or hub")
    asyncio.run(main(args))


if __name__ == "__main__":
    cli()
