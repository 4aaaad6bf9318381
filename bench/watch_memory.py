"""Memory per idle watch socket: the hub vs the raw ``websockets`` server, side by side.

For each repeat, for each system (interleaved: hub, raw, then again): start the server with
no stations, read its RSS, connect W idle watchers (the bare sockets of ``bench.wsload``:
handshake, snapshot, then nothing but keepalive pongs), wait until every snapshot arrived,
read the RSS again. KB per idle watcher = (RSS(W) − RSS(0)) / W. The raw server is
``bench/servers/raw_ws.py`` (``websockets``' own server, a task per connection).

``--trace`` runs one more hub under ``tracemalloc`` (25 frames) and prints where the bytes
between W = 0 and W go, per watcher, grouped by line and by traceback (tracemalloc counts
Python allocations only, and its own bookkeeping makes that hub's RSS meaningless).

    python -m bench.watch_memory [--repeats 3] [--watchers 5000] [--trace] [--alt-hub CHECKOUT]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

from bench.common import (
    PY,
    Worker,
    fmt_spread,
    install_cleanup,
    log,
    raise_fd_limit,
    rss_bytes,
    spawn,
    start_hub,
    stop,
    summary,
    temp_dir,
    wait_for_file,
    write_result,
)
from bench.fanout import PER_WORKER, settle

SNAPSHOT_ENV = "JAGA_BENCH_SNAPSHOT"  # where the traced hub writes a snapshot on SIGUSR1


async def start_system(system: str, workdir: Path, traced: bool = False, alt: Path | None = None) -> tuple[Any, int]:
    presence = {"watchers_per_address": 100_000, "max_watchers": 100_000}
    if system in ("hub", "hub-alt") and not traced:
        proc, port, _ = await start_hub(workdir, source=alt if system == "hub-alt" else None, presence=presence)
        return proc, port
    port_file = workdir / "port"
    if system == "hub":
        from bench.common import hub_config

        config = hub_config(workdir, None, presence=presence)
        proc = await spawn(PY, "-m", "bench.watch_memory", "--serve-traced", "--config", str(config), "serve",
                           "--port", "0", "--port-file", str(port_file), log=workdir / "hub.log",
                           env={SNAPSHOT_ENV: str(workdir / "snapshot")})
    else:
        proc = await spawn(PY, "-m", "bench.servers.raw_ws", str(port_file), log=workdir / f"{system}.log")
    return proc, int(await wait_for_file(port_file, proc, timeout=180 if traced else 30))  # tracing starts slowly


async def quiet_rss(pid: int, window: float = 1.0, timeout: float = 20.0) -> int:
    """RSS once it stopped moving for ``window`` seconds (lazy frees, pending writes)."""
    deadline = time.monotonic() + timeout
    last, since = rss_bytes(pid), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = rss_bytes(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= window:
            break
    return last


async def connect(watchers: list[Worker], port: int, count: int) -> int:
    share = [count // len(watchers) + (1 if i < count % len(watchers) else 0) for i in range(len(watchers))]
    replies = await asyncio.gather(*(wk.call("connect", timeout=300, host="127.0.0.1", port=port, path="/ws/watch",
                                             count=n, sample_every=10**9)
                                     for wk, n in zip(watchers, share, strict=True)))
    await settle(watchers)
    return sum(r["failed"] for r in replies)


async def run_system(system: str, w: int, traced: bool = False, alt: Path | None = None) -> dict[str, Any]:
    workdir = temp_dir(f"bench-watchmem-{system}-")
    proc, port = await start_system(system, workdir, traced, alt)
    nworkers = max(1, -(-w // PER_WORKER))
    watchers = [await Worker.start("-m", "bench.wsload", "watch", log=workdir / "watch.log") for _ in range(nworkers)]
    try:
        # Warm up: one round of connects and closes, so import-time and first-use allocations
        # (caches, pools, the snapshot) are in both readings, not in the slope.
        await connect(watchers[:1], port, 20)
        await watchers[0].call("close_all")
        rss0 = await quiet_rss(proc.pid)
        before = await _snapshot(proc.pid, workdir, "before") if traced else None
        failed = await connect(watchers, port, w)
        stats = [await wk.call("stats") for wk in watchers]
        rss1 = await quiet_rss(proc.pid)
        opened = sum(s["open"] for s in stats)
        out = {"system": system, "watchers": w, "open": opened, "failed": failed, "rss0": rss0, "rss1": rss1,
               "per_watcher_bytes": (rss1 - rss0) / opened if opened else None}
        log(f"{system:4} W={w} open={opened} failed={failed} rss {rss0 / 2**20:.1f} → {rss1 / 2**20:.1f} MiB: "
            f"{(out['per_watcher_bytes'] or 0) / 1024:.1f} KB per watcher")
        if traced and before is not None:
            after = await _snapshot(proc.pid, workdir, "after")
            out["trace"] = breakdown(before, after, opened)
    finally:
        for wk in watchers:
            await wk.close(release="close_all")
        await stop(proc)
    return out


async def _snapshot(pid: int, workdir: Path, name: str) -> tracemalloc.Snapshot:
    path = workdir / "snapshot"
    path.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 120
    while not (workdir / "snapshot.done").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("no tracemalloc snapshot from the hub")
        await asyncio.sleep(0.2)
    (workdir / "snapshot.done").unlink()
    kept = path.rename(workdir / f"snapshot-{name}")
    return tracemalloc.Snapshot.load(str(kept))


def breakdown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, w: int, top: int = 40) -> dict[str, Any]:
    """Bytes per watcher that Python allocated between the snapshots, by line and by traceback."""
    by_line = after.compare_to(before, "lineno")
    total = sum(d.size_diff for d in by_line)
    lines = [{"bytes_per_watcher": d.size_diff / w, "blocks_per_watcher": d.count_diff / w,
              "where": str(d.traceback[0])} for d in by_line[:top]]
    traces = []
    for d in after.compare_to(before, "traceback")[:top]:
        frames = [str(f) for f in d.traceback if "site-packages/uvicorn/main" not in str(f.filename)]
        traces.append({"bytes_per_watcher": d.size_diff / w, "blocks_per_watcher": d.count_diff / w,
                       "traceback": frames[-6:]})
    files: dict[str, float] = {}
    for d in after.compare_to(before, "filename"):
        name = d.traceback[0].filename
        name = name.split("site-packages/")[-1].split("lib/python3.11/")[-1].split("/work/main/")[-1]
        files[name] = files.get(name, 0) + d.size_diff / w
    by_file = sorted(files.items(), key=lambda kv: -kv[1])[:top]
    return {"python_bytes_per_watcher": total / w, "by_file": by_file, "by_line": lines, "by_traceback": traces}


NAMES = {"hub": "Jaga hub", "raw": "raw: websockets server", "hub-alt": "Jaga hub, --alt-hub checkout"}


def render(runs: list[dict[str, Any]], w: int) -> str:
    systems = [s for s in NAMES if any(r["system"] == s for r in runs)]
    lines = [f"RSS per idle watcher at W = {w:,}, KB (1 KB = 1,024 bytes), median (min–max over repeats):", "",
             "| server | KB per idle watcher | ÷ raw (per repeat) |", "|---|---|---|"]
    raws = [r for r in runs if r["system"] == "raw"]
    for system in systems:
        mine = [r for r in runs if r["system"] == system]
        per = summary([r["per_watcher_bytes"] for r in mine])
        ratio = summary([a["per_watcher_bytes"] / b["per_watcher_bytes"] for a, b in zip(mine, raws, strict=False)
                         if a["per_watcher_bytes"] and b["per_watcher_bytes"]])
        lines.append(f"| {NAMES[system]} | {fmt_spread(per, 1, 1 / 1024)} | {fmt_spread(ratio, 2)} |")
    return "\n".join(lines)


def render_trace(trace: dict[str, Any]) -> str:
    lines = ["", f"tracemalloc: {trace['python_bytes_per_watcher']:,.0f} bytes of Python objects per watcher", "",
             "| bytes / watcher | blocks / watcher | line |", "|---|---|---|"]
    lines += [f"| {d['bytes_per_watcher']:,.0f} | {d['blocks_per_watcher']:.1f} | `{d['where']}` |"
              for d in trace["by_line"]]
    lines += ["", "| bytes / watcher | file |", "|---|---|"]
    lines += [f"| {size:,.0f} | `{name}` |" for name, size in trace["by_file"] if abs(size) >= 20]
    lines += ["", "By traceback (innermost last):", ""]
    for d in trace["by_traceback"][:12]:
        lines.append(f"- {d['bytes_per_watcher']:,.0f} B, {d['blocks_per_watcher']:.1f} blocks: "
                     + " ← ".join(reversed(d["traceback"][-4:])))
    return "\n".join(lines)


def serve_traced(argv: list[str]) -> int:
    """The hub's CLI under tracemalloc; SIGUSR1 writes a snapshot to ``$JAGA_BENCH_SNAPSHOT``."""
    tracemalloc.start(25)
    target = Path(os.environ[SNAPSHOT_ENV])

    def dump(_signum: int, _frame: Any) -> None:
        import gc

        gc.collect()
        tracemalloc.take_snapshot().dump(str(target))
        Path(f"{target}.done").write_text("1")

    signal.signal(signal.SIGUSR1, dump)
    from hub.cli import main as hub_main

    return hub_main(argv)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--watchers", type=int, default=5000)
    parser.add_argument("--systems", default="hub,raw")
    parser.add_argument("--trace", action="store_true", help="also a tracemalloc breakdown of the hub's bytes")
    parser.add_argument("--alt-hub", help="another checkout of the repo: adds system hub-alt (compare a change)")
    args = parser.parse_args()
    raise_fd_limit()
    started = time.monotonic()
    runs = []
    systems = args.systems.split(",")
    alt = Path(args.alt_hub) if args.alt_hub else None
    if alt is not None and "hub-alt" not in systems:
        systems.append("hub-alt")
    for rep in range(args.repeats):
        for system in systems:
            log(f"repeat {rep + 1}/{args.repeats}: {system}")
            runs.append(await run_system(system, args.watchers, alt=alt) | {"repeat": rep})
    table = render(runs, args.watchers)
    print(table, flush=True)
    trace = None
    if args.trace:
        log("traced hub")
        trace = (await run_system("hub", args.watchers, traced=True))["trace"]
        print(render_trace(trace))
        table += "\n" + render_trace(trace)
    path = write_result("watch_memory", {"args": vars(args), "runs": runs, "trace": trace, "table": table,
                                         "elapsed_s": time.monotonic() - started})
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve-traced"]:
        sys.exit(serve_traced(sys.argv[2:]))
    install_cleanup()
    asyncio.run(main())
