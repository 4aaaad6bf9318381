"""Presence and event fan-out: the hub vs the raw limit vs Starlette + broadcaster.

For each repeat, for each system (interleaved: hub, raw, naive, then again): start the server,
connect the 303 Jember stations (heartbeating), then grow the watchers to each W in turn.
At each W: read the server's RSS (memory per idle watcher = RSS slope over W), then make a
paced burst of presence changes and measure, over that window,

- delivered event frames, counted by the watcher processes (not what the server thinks it sent),
- the server's CPU time (utime + stime from /proc), so messages per server CPU-second,
- delivery latency, ``receive time − since`` on one clock (a sampled 1 in 10 watchers).

The burst rate is chosen per W so that every system stays below saturation (``--rate-msgs``
deliveries per second): the latency is then the cost of one event's fan-out, not a queue.
W = 0 measures the cost of *making* the events (the hub: close/hello, ledger, store, bus).

    python -m bench.fanout [--repeats 3] [--watchers 100,1000,5000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench.common import (
    PY,
    Worker,
    close_workers,
    cpu_seconds,
    cpu_split,
    fmt,
    fmt_spread,
    install_cleanup,
    log,
    mint_tokens,
    percentile,
    raise_fd_limit,
    rss_bytes,
    spawn,
    start_hub,
    station_ids,
    stop,
    summary,
    temp_dir,
    wait_for_file,
    write_result,
)

SYSTEMS = ("hub", "raw", "naive", "hub-alt")
PER_WORKER = 1250


async def start_system(system: str, workdir: Path, alt: Path | None = None) -> tuple[Any, int, dict[str, str]]:
    if system in ("hub", "hub-alt"):
        # Every bench watcher comes from 127.0.0.1: lift the per-address watch cap (default 100)
        # for this hub, and for "hub-alt" (another checkout) too: one older than that key
        # refuses the config (unknown keys are an error), and cannot serve W > 100 here anyway.
        proc, port, config = await start_hub(workdir, source=alt if system == "hub-alt" else None,
                                             presence={"watchers_per_address": 100_000})
        tokens = await asyncio.to_thread(mint_tokens, config, station_ids())
        return proc, port, tokens
    module = {"raw": "bench.servers.raw_ws", "naive": "bench.servers.naive_broadcaster"}[system]
    port_file = workdir / "port"
    proc = await spawn(PY, "-m", module, str(port_file), log=workdir / f"{system}.log")
    return proc, int(await wait_for_file(port_file, proc)), {}


async def settle(watchers: list[Worker], quiet: float = 0.6, timeout: float = 120) -> dict[str, int]:
    """Wait until the watchers stop receiving bytes (snapshots delivered, buffers drained)."""
    deadline = time.monotonic() + timeout
    last = -1
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        stats = [await w.call("stats") for w in watchers]
        total = sum(s["bytes"] for s in stats)
        if total != last:
            last, stable_since = total, time.monotonic()
        elif time.monotonic() - stable_since >= quiet:
            break
        await asyncio.sleep(0.2)
    return {k: sum(s[k] for s in stats) for k in ("open", "frames", "big", "bytes", "lost")}


async def run_system(system: str, levels: list[int], args: argparse.Namespace) -> dict[str, Any]:
    workdir = temp_dir(f"bench-fanout-{system}-")
    proc, port, tokens = await start_system(system, workdir, Path(args.alt_hub) if args.alt_hub else None)
    pid = proc.pid
    ids = station_ids()
    nworkers = max(1, -(-max(levels) // PER_WORKER))
    stations, *watchers = await asyncio.gather(
        Worker.start("-m", "bench.wsload", "stations", log=workdir / "stations.log"),
        *(Worker.start("-m", "bench.wsload", "watch", log=workdir / "watch.log") for _ in range(nworkers)))
    out: dict[str, Any] = {"system": system, "levels": []}
    try:
        await stations.call("start", timeout=120, url=f"ws://127.0.0.1:{port}/ws/station",
                            mode="hub" if system.startswith("hub") else "plain", ids=ids, tokens=tokens,
                            heartbeat_s=5.0)
        await asyncio.sleep(1.0)
        current = 0
        event_cost = 0.0
        for w in [0, *levels]:
            if w > current:
                cpu0 = cpu_seconds(pid)
                added = w - current
                share = [added // nworkers + (1 if i < added % nworkers else 0) for i in range(nworkers)]
                replies = await asyncio.gather(*(wk.call("connect", timeout=300, host="127.0.0.1", port=port,
                                                         path="/ws/watch", count=n, sample_every=10)
                                                 for wk, n in zip(watchers, share, strict=True)))
                failed = sum(r["failed"] for r in replies)
                await settle(watchers)
                connect_cpu = (cpu_seconds(pid) - cpu0) / (w - current)
                current = w
            else:
                failed, connect_cpu = 0, None
            rss = rss_bytes(pid)
            idle_rate = None  # stations heartbeating, watchers connected, no events (--idle-window)
            if args.idle_window > 0:
                idle0, t0 = cpu_seconds(pid), time.monotonic()
                await asyncio.sleep(args.idle_window)
                idle_rate = (cpu_seconds(pid) - idle0) / (time.monotonic() - t0)

            events, rate = plan(w, args)
            for wk in watchers:
                await wk.call("reset")
            u0, s0 = cpu_split(pid)
            t0 = time.monotonic()
            flip = await stations.call("flip", timeout=300, events=events, rate=rate)
            expected = flip["events"] * w
            deadline = time.monotonic() + 30
            delivered = 0
            while time.monotonic() < deadline:
                delivered = sum([(await wk.call("stats"))["frames"] for wk in watchers])
                if delivered >= expected:
                    break
                await asyncio.sleep(0.05)
            wall = time.monotonic() - t0
            u1, s1 = cpu_split(pid)
            cpu = (u1 - u0) + (s1 - s0)
            lat: list[float] = []
            for wk in watchers:
                lat += (await wk.call("latencies"))["latency"]
            stats = await settle(watchers, quiet=0.3, timeout=10)
            level = {
                "watchers": w, "open": stats["open"], "connect_failed": failed, "lost": stats["lost"],
                "events": flip["events"], "event_rate": rate, "flip_errors": flip["errors"],
                "expected": expected, "delivered": delivered, "wall_s": wall,
                "cpu_s": cpu, "user_s": u1 - u0, "sys_s": s1 - s0, "idle_cpu_rate": idle_rate,
                "msgs_per_cpu_s": delivered / cpu if cpu > 0 and w else None,
                "cpu_us_per_event": cpu / flip["events"] * 1e6 if flip["events"] else None,
                "user_us_per_msg": (u1 - u0) / delivered * 1e6 if delivered else None,
                "sys_us_per_msg": (s1 - s0) / delivered * 1e6 if delivered else None,
                "latency_ms_p50": _ms(percentile(lat, 50)), "latency_ms_p99": _ms(percentile(lat, 99)),
                "latency_samples": len(lat), "rss_bytes": rss,
                "connect_cpu_ms_per_watcher": connect_cpu * 1e3 if connect_cpu is not None else None,
            }
            log(f"{system:5} W={w:5} open={stats['open']} events={flip['events']} delivered={delivered}/{expected} "
                f"cpu={cpu:.2f}s msgs/cpu-s={fmt(level['msgs_per_cpu_s'])} "
                f"p50={fmt(level['latency_ms_p50'], 1)}ms p99={fmt(level['latency_ms_p99'], 1)}ms "
                f"rss={rss / 2**20:.1f}MiB")
            if w == 0:
                event_cost = cpu / flip["events"] if flip["events"] else 0.0
            else:  # fan-out alone: minus what making these events cost with nobody watching
                net = cpu - event_cost * flip["events"]
                level["fanout_msgs_per_cpu_s"] = delivered / net if net > 0 else None
            out["levels"].append(level)
    finally:
        await close_workers([stations, *watchers])
        await stop(proc)
    return out


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def plan(w: int, args: argparse.Namespace) -> tuple[int, float]:
    """Events and events/s for a burst at W watchers: ``rate_msgs`` deliveries a second for
    ``window`` seconds (at least 10 events; W = 0 gets the W=100 plan)."""
    fan = max(w, 100)
    rate = args.rate_msgs / fan
    events = max(10, int(rate * args.window))
    events -= events % 2
    return events, rate


def aggregate(runs: list[dict[str, Any]], levels: list[int]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for system in SYSTEMS:
        mine = [r for r in runs if r["system"] == system]
        if not mine:
            continue
        rows = {}
        for w in [0, *levels]:
            cells = [next(level for level in r["levels"] if level["watchers"] == w) for r in mine]
            rows[w] = {key: summary([c.get(key) for c in cells]) for key in (
                "msgs_per_cpu_s", "fanout_msgs_per_cpu_s", "latency_ms_p50", "latency_ms_p99", "cpu_us_per_event",
                "user_us_per_msg", "sys_us_per_msg", "connect_cpu_ms_per_watcher", "rss_bytes")}
            rows[w]["delivered_share"] = summary([c["delivered"] / c["expected"] if c["expected"] else None
                                                  for c in cells])
        # memory per idle watcher: RSS slope between the smallest and the largest W, per run
        lo, hi = levels[0], levels[-1]
        per_watcher = []
        for r in mine:
            by_w = {level["watchers"]: level["rss_bytes"] for level in r["levels"]}
            per_watcher.append((by_w[hi] - by_w[lo]) / (hi - lo) if hi > lo else None)
        table[system] = {"rows": rows, "rss_per_watcher_bytes": summary(per_watcher)}
    # ratios of medians and per-repeat ratios (interleaved repeats pair up)
    ratios: dict[str, Any] = {}
    for other in ("raw", "naive", "hub-alt"):
        if other not in table or "hub" not in table:
            continue
        for w in levels:
            pairs = []
            hub_runs = [r for r in runs if r["system"] == "hub"]
            other_runs = [r for r in runs if r["system"] == other]
            for a, b in zip(hub_runs, other_runs, strict=False):  # a failed run makes one list shorter
                x = next(level for level in a["levels"] if level["watchers"] == w)["msgs_per_cpu_s"]
                y = next(level for level in b["levels"] if level["watchers"] == w)["msgs_per_cpu_s"]
                pairs.append(x / y if x and y else None)
            ratios[f"hub/{other}@{w}"] = summary(pairs)
            pairs = []
            for a, b in zip(hub_runs, other_runs, strict=False):
                x = next(level for level in a["levels"] if level["watchers"] == w).get("fanout_msgs_per_cpu_s")
                y = next(level for level in b["levels"] if level["watchers"] == w).get("fanout_msgs_per_cpu_s")
                pairs.append(x / y if x and y else None)
            ratios[f"fanout hub/{other}@{w}"] = summary(pairs)
    return {"systems": table, "ratios": ratios}


def render(agg: dict[str, Any], levels: list[int]) -> str:
    t = agg["systems"]
    lines = ["Delivered messages per server CPU-second, median (min–max over repeats):", ""]
    lines.append("| server | " + " | ".join(f"W={w:,}" for w in levels) + " | RSS / idle watcher |")
    lines.append("|---|" + "---|" * (len(levels) + 1))
    names = {"hub": "Jaga hub", "raw": "raw: websockets + broadcast()", "naive": "naive: Starlette + broadcaster",
             "hub-alt": "Jaga hub, --alt-hub checkout"}
    for system, data in t.items():
        cells = [fmt_spread(data["rows"][w]["msgs_per_cpu_s"]) for w in levels]
        lines.append(f"| {names[system]} | " + " | ".join(cells) +
                     f" | {fmt_spread(data['rss_per_watcher_bytes'], 1, 1 / 1024)} KB |")
    for other in ("raw", "naive", "hub-alt"):
        if f"hub/{other}@{levels[0]}" in agg["ratios"]:
            lines.append(f"| hub ÷ {other} (per repeat) | " +
                         " | ".join(fmt_spread(agg["ratios"][f"hub/{other}@{w}"], 2) for w in levels) + " | |")
    lines += ["", "Fan-out alone (the CPU each system spent making the events, measured at W=0 in the same run,",
              "subtracted), delivered messages per CPU-second:", ""]
    lines.append("| server | " + " | ".join(f"W={w:,}" for w in levels) + " |")
    lines.append("|---|" + "---|" * len(levels))
    for system, data in t.items():
        lines.append(f"| {names[system]} | " + " | ".join(fmt_spread(data["rows"][w]["fanout_msgs_per_cpu_s"])
                                                          for w in levels) + " |")
    for other in ("raw", "naive", "hub-alt"):
        if f"fanout hub/{other}@{levels[0]}" in agg["ratios"]:
            lines.append(f"| hub ÷ {other} (per repeat) | " +
                         " | ".join(fmt_spread(agg["ratios"][f"fanout hub/{other}@{w}"], 2) for w in levels) + " |")
    lines += ["", "Delivery latency (receive − since), ms, p50 / p99, median over repeats:", ""]
    lines.append("| server | " + " | ".join(f"W={w:,}" for w in levels) + " |")
    lines.append("|---|" + "---|" * len(levels))
    for system, data in t.items():
        cells = [f"{fmt(data['rows'][w]['latency_ms_p50']['median'], 1)} / "
                 f"{fmt(data['rows'][w]['latency_ms_p99']['median'], 1)}" for w in levels]
        lines.append(f"| {names[system]} | " + " | ".join(cells) + " |")
    lines += ["", "Where the time goes, µs per delivered message (user / kernel), and event cost:", ""]
    lines.append("| server | " + " | ".join(f"W={w:,}" for w in levels) +
                 " | CPU per event at W=0 | CPU per watcher connect |")
    lines.append("|---|" + "---|" * (len(levels) + 2))
    for system, data in t.items():
        cells = [f"{fmt(data['rows'][w]['user_us_per_msg']['median'], 1)} / "
                 f"{fmt(data['rows'][w]['sys_us_per_msg']['median'], 1)}" for w in levels]
        conn = data["rows"][levels[-1]]["connect_cpu_ms_per_watcher"]
        lines.append(f"| {names[system]} | " + " | ".join(cells) +
                     f" | {fmt_spread(data['rows'][0]['cpu_us_per_event'])} µs | {fmt_spread(conn, 2)} ms |")
    return "\n".join(lines)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--watchers", default="100,1000,5000")
    parser.add_argument("--systems", default="hub,raw,naive")
    parser.add_argument("--alt-hub", help="another checkout of the repo: adds system hub-alt (compare a change)")
    parser.add_argument("--rate-msgs", type=float, default=20000, help="target deliveries per second in a burst")
    parser.add_argument("--window", type=float, default=3.0, help="seconds per burst")
    parser.add_argument("--idle-window", type=float, default=0.0,
                        help="seconds to read the idle hub's CPU before each burst (recorded, not tabled; 0: skip)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, W = 100 and 1000, short bursts")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.watchers, args.window = 1, "100,1000", 2.0
    levels = [int(x) for x in args.watchers.split(",")]
    systems = args.systems.split(",")
    if args.alt_hub and "hub-alt" not in systems:
        systems.append("hub-alt")
    raise_fd_limit()
    runs = []
    started = time.monotonic()
    for rep in range(args.repeats):
        for system in systems:
            log(f"repeat {rep + 1}/{args.repeats}: {system}")
            runs.append(await run_system(system, levels, args) | {"repeat": rep})
    agg = aggregate(runs, levels)
    table = render(agg, levels)
    path = write_result("fanout", {"levels": levels, "args": vars(args), "runs": runs, "summary": agg,
                                   "table": table, "elapsed_s": time.monotonic() - started})
    print(table)
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main())
