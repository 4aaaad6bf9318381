"""Scale across cores: two hub processes on one Redis vs one hub process, on this machine.

Both configurations use the Redis backend (``hub.backend = "redis"``, a private
``redis-server`` on a free port, no persistence, started and stopped here; never the shared
6379) and serve the same two stations, each published by its own WHIP publisher replaying the
pre-encoded clip (640×360 @ 15 fps VP8, ~490 kbps):

- ``one``: one hub process; both stations published on it, all viewers on it;
- ``two``: two hub processes (node A, node B); station 1 published on A, station 2 on B; the
  viewers of each station ask that station's own node (a viewer sent to the other node would
  follow the 307 to the owner, which would only move load back to it).

Viewers are light WHEP clients (``bench/loadgen.py viewers``: ICE + DTLS, packets counted
from the RTP header, not decrypted), split evenly over the two stations and over client
processes. The total V steps up; at each V, after a warm-up, each viewer's received frame rate
is measured over a fixed window. A level is *served* when ≥ 95 % of viewers received
≥ 90 % of the 15 fps sent. Reported: the largest V served by each configuration, its ratio,
and each hub process's CPU per viewer.

    python -m bench.scale [--repeats 3] [--viewers 300,600,…] [--max-seconds 60] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

from bench.common import (
    RESULTS,
    Worker,
    close_workers,
    cpu_seconds,
    fmt,
    fmt_spread,
    free_port,
    http_client,
    install_cleanup,
    log,
    mint_tokens,
    raise_fd_limit,
    spawn,
    start_hub,
    stop,
    summary,
    temp_dir,
    write_result,
)
from bench.ingest import media_counters
from bench.media_peers import FPS
from bench.relay import slope

STATIONS = ("35.09.01.2001", "35.09.01.2002")
LEVELS = "300,600,900"
PER_PROC = 100
# no caps, and joins not paced (media.public_joins_per_s): this measures how many viewers a node
# carries, each level's new viewers joining at once, not how fast a crowd is let in
CAPS = {"max_viewers_per_station": 100_000, "max_viewers_per_node": 100_000, "max_sessions_per_address": 100_000,
        "public_joins_per_s": 0}


async def start_redis(workdir: Path) -> tuple[Any, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    port = free_port()
    proc = await spawn(binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                       "--dir", str(workdir), "--logfile", str(workdir / "redis.log"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"PING\r\n")
            await writer.drain()
            pong = await asyncio.wait_for(reader.readline(), 2)
            writer.close()
            if pong.startswith(b"+PONG"):
                return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            pass
        if proc.returncode is not None:
            raise RuntimeError("redis-server exited")
        await asyncio.sleep(0.05)
    raise TimeoutError("redis-server did not answer PING")


async def run_config(config: str, levels: list[int], args: argparse.Namespace) -> dict[str, Any]:
    workdir = temp_dir(f"bench-scale-{config}-")
    redis_proc, redis_url = await start_redis(workdir)
    hubs: list[tuple[Any, str]] = []
    publishers: list[Worker] = []
    viewers: list[Worker] = []
    out: dict[str, Any] = {"config": config, "levels": [], "stopped": "all levels done"}
    started = time.monotonic()
    try:
        names = ("a", "b") if config == "two" else ("a",)
        for name in names:
            (workdir / name).mkdir()
        started_hubs = await asyncio.gather(*(
            start_hub(workdir / name, hub={"backend": "redis", "redis_url": redis_url, "node_id": f"bench-{name}"},
                      media=CAPS) for name in names))
        hubs.extend((proc, f"http://127.0.0.1:{port}") for proc, port, _ in started_hubs)
        cfg = started_hubs[-1][2]
        tokens = await asyncio.to_thread(mint_tokens, cfg, list(STATIONS))  # credentials live in Redis
        # station i is published on (and watched at) node i of this configuration
        homes = {sid: hubs[i % len(hubs)][1] for i, sid in enumerate(STATIONS)}
        # every worker of the run at once: the viewer workers idle until their level joins them
        publishers[:], viewers[:] = await asyncio.gather(
            asyncio.gather(*(Worker.start("-m", "bench.loadgen", "publishers", log=workdir / "pub.log")
                             for _ in STATIONS)),
            asyncio.gather(*(Worker.start("-m", "bench.loadgen", "viewers", log=workdir / "viewers.log")
                             for _ in range(-(-max(levels) // PER_PROC)))))
        replies = await asyncio.gather(*(
            worker.call("publish", timeout=60, base=homes[sid], stations={sid: tokens[sid]})
            for worker, sid in zip(publishers, STATIONS, strict=True)))
        for sid, reply in zip(STATIONS, replies, strict=True):
            if reply["connected"] != 1:
                raise RuntimeError(f"publisher of {sid} did not connect: {reply['errors']}")
        await asyncio.sleep(1.0)
        placed: list[tuple[Worker, str]] = []  # one (worker, station) per viewer, in order
        async with http_client(timeout=30) as http:
            for total in levels:
                if time.monotonic() - started > args.max_seconds:
                    out["stopped"] = f"time cap ({args.max_seconds:.0f} s) before V={total}"
                    break
                calls: dict[tuple[int, str], int] = {}
                while len(placed) < total:
                    sid = STATIONS[len(placed) % len(STATIONS)]
                    index = len(placed) // PER_PROC
                    placed.append((viewers[index], sid))
                    calls[(index, sid)] = calls.get((index, sid), 0) + 1
                async def join(index: int, calls: dict[tuple[int, str], int]) -> list[dict[str, Any]]:
                    # one request at a time per worker
                    return [await viewers[index].call("whep", timeout=300, base=homes[sid], station=sid, count=count)
                            for (i, sid), count in calls.items() if i == index]

                replies = [r for rs in await asyncio.gather(*(join(i, calls) for i in sorted({i for i, _ in calls})))
                           for r in rs]
                connected = sum(r["connected"] for r in replies)
                if connected != sum(calls.values()):
                    log(f"{config} V={total}: {connected}/{sum(calls.values())} new viewers connected "
                        f"{[r['errors'] for r in replies if r['errors']][:2]}")
                await asyncio.sleep(args.warmup)
                m0 = [await media_counters(http, base) for _, base in hubs]
                v0 = await asyncio.gather(*(w.call("stats") for w in viewers))
                cpu0 = [cpu_seconds(p.pid) for p, _ in hubs]
                c0 = sum(cpu_seconds(w.proc.pid) for w in viewers + publishers) + cpu_seconds(redis_proc.pid)
                t0 = time.monotonic()
                await asyncio.sleep(args.window)
                cpu1 = [cpu_seconds(p.pid) for p, _ in hubs]
                c1 = sum(cpu_seconds(w.proc.pid) for w in viewers + publishers) + cpu_seconds(redis_proc.pid)
                t1 = time.monotonic()
                v1 = await asyncio.gather(*(w.call("stats") for w in viewers))
                m1 = [await media_counters(http, base) for _, base in hubs]
                dt = t1 - t0
                # the same workers and viewers before and after the window
                fps = [(b - a) / dt for x, y in zip(v0, v1, strict=True)
                       for a, b in zip(x["frames"], y["frames"], strict=True)]
                fps += [0.0] * (total - len(fps))
                good = sum(f >= 0.9 * FPS for f in fps)
                ordered = sorted(fps)
                level = {
                    "viewers": total, "connected_new": connected,
                    "hub_cores": [(b - a) / dt for a, b in zip(cpu0, cpu1, strict=True)],
                    "other_cores": (c1 - c0) / dt, "fps_median": ordered[len(ordered) // 2],
                    "fps_p5": ordered[len(ordered) // 20], "share_served": good / total,
                    "delivered_fps": sum(fps),
                    "dropped_packets": sum(b.get("dropped_packets", 0) - a.get("dropped_packets", 0)
                                           for a, b in zip(m0, m1, strict=True)),
                }
                level["served"] = level["share_served"] >= 0.95
                out["levels"].append(level)
                log(f"{config} V={total:4} hubs={'+'.join(f'{c * 100:.0f}%' for c in level['hub_cores'])} "
                    f"clients+redis={level['other_cores'] * 100:.0f}% fps median={level['fps_median']:.1f} "
                    f"p5={level['fps_p5']:.1f} served={level['share_served'] * 100:.1f}% "
                    f"dropped={level['dropped_packets']:.0f}")
                if not level["served"]:
                    out["stopped"] = f"loss at V={total}"
                    break
    finally:
        await close_workers(viewers + publishers, "close_all")
        await asyncio.gather(*(stop(proc) for proc, _ in hubs))
        await stop(redis_proc)
    served = [level for level in out["levels"] if level["served"]]
    out["max_served"] = max((level["viewers"] for level in served), default=0)
    out["first_lossy"] = next((level["viewers"] for level in out["levels"] if not level["served"]), None)
    # per hub process: CPU per viewer it served (each node has half the viewers in "two")
    out["hub_processes"] = len(hubs)
    summarise(out)
    out["elapsed_s"] = time.monotonic() - started
    return out


def summarise(out: dict[str, Any]) -> None:
    """Per hub process: CPU per viewer it served (each node has half the viewers in "two"), and
    the viewers at which the fitted line of each process reaches one core — an extrapolation,
    i.e. what the configuration would serve if its hubs had their cores to themselves."""
    per_node = out.get("hub_processes") or (2 if out["config"] == "two" else 1)
    points = [(level["viewers"] / per_node, sum(level["hub_cores"]) / per_node)
              for level in out["levels"] if level["served"]]
    k = slope(points)
    out["slope_cores_per_viewer"] = k
    if k:
        idle = sum(y for _, y in points) / len(points) - k * sum(x for x, _ in points) / len(points)
        out["extrapolated_one_core_each"] = per_node * (1.0 - idle) / k
    else:
        out["extrapolated_one_core_each"] = None


def render(runs: list[dict[str, Any]], levels: list[int]) -> tuple[str, dict[str, Any]]:
    names = {"one": "one hub process", "two": "two hub processes + Redis"}
    lines = [f"Share of viewers receiving ≥ 90 % of {FPS} fps, and hub CPU (sum over hub processes, % of one core), "
             f"by total viewers V, median over repeats ({len(runs) // 2 or 1}):", "",
             "| configuration | " + " | ".join(f"V={v}" for v in levels)
             + " | most V served | hub CPU per viewer (per process) |",
             "|---|" + "---|" * (len(levels) + 2)]
    agg: dict[str, Any] = {}
    for config in ("one", "two"):
        mine = [r for r in runs if r["config"] == config]
        if not mine:
            continue
        cells = []
        for v in levels:
            got = [level for r in mine for level in r["levels"] if level["viewers"] == v]
            if not got:
                cells.append("–")
                continue
            share = summary([level["share_served"] * 100 for level in got])
            cpu = summary([sum(level["hub_cores"]) * 100 for level in got])
            cells.append(f"{fmt(share['median'], 0)} % ({fmt(cpu['median'], 0)} % CPU)")
        agg[config] = {"max_served": summary([r["max_served"] for r in mine]),
                       "slope": summary([r["slope_cores_per_viewer"] for r in mine]),
                       "extrapolated": summary([r["extrapolated_one_core_each"] for r in mine]),
                       "stopped": [r["stopped"] for r in mine]}
        lines.append(f"| {names[config]} | " + " | ".join(cells) + f" | {fmt_spread(agg[config]['max_served'])} | "
                     f"{fmt_spread(agg[config]['slope'], 3, 100)} % |")
    two_runs = [r for r in runs if r["config"] == "two"]
    one_runs = [r for r in runs if r["config"] == "one"]
    ratios = []
    for a, b in zip(two_runs, one_runs, strict=False):  # a failed run makes one list shorter
        ratios.append(a["max_served"] / b["max_served"] if b["max_served"] else None)
    agg["ratio"] = summary(ratios)
    extra = []
    for a, b in zip(two_runs, one_runs, strict=False):
        x, y = a["extrapolated_one_core_each"], b["extrapolated_one_core_each"]
        extra.append(x / y if x and y else None)
    agg["extrapolated_ratio"] = summary(extra)
    lines += ["", f"- most viewers served, two processes ÷ one (per repeat, measured): {fmt_spread(agg['ratio'], 2)}"]
    for config in ("one", "two"):
        if config in agg:
            lines.append(f"- {names[config]}: viewers at which every hub process would reach one core "
                         f"(extrapolated from its slope): {fmt_spread(agg[config]['extrapolated'])}")
    lines.append("- the same, two processes ÷ one (per repeat, extrapolated): "
                 f"{fmt_spread(agg['extrapolated_ratio'], 2)}")
    for config in ("one", "two"):
        if config in agg:
            lines.append(f"- {names[config]}: stopped because {'; '.join(agg[config]['stopped'])}")
    return "\n".join(lines), agg


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--viewers", default=LEVELS)
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=3.0, help="after adding viewers (keyframe every 2 s)")
    parser.add_argument("--max-seconds", type=float, default=60,
                        help="per configuration and repeat; no new level starts after it")
    parser.add_argument("--quick", action="store_true", help="1 repeat, V = 50,100,200")
    parser.add_argument("--render", action="store_true", help="only re-render bench/results/scale.json")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.viewers, args.window, args.max_seconds = 1, "50,100,200", 4.0, 60
    if args.render:
        import json

        saved = json.loads((RESULTS / "scale.json").read_text())
        for run in saved["runs"]:
            summarise(run)
        table, saved["summary"] = render(saved["runs"], saved["levels"])
        saved["table"] = table
        (RESULTS / "scale.json").write_text(json.dumps(saved, indent=1))
        print(table)
        return
    levels = [int(x) for x in args.viewers.split(",")]
    raise_fd_limit()
    started = time.monotonic()
    runs, notes = [], []
    for rep in range(args.repeats):
        order = ("one", "two") if rep % 2 == 0 else ("two", "one")
        for config in order:
            log(f"scale repeat {rep + 1}/{args.repeats}: {config}")
            try:
                runs.append(await run_config(config, levels, args) | {"repeat": rep})
            except Exception as exc:
                log(f"{config} failed: {exc!r}")
                notes.append(f"{config}, repeat {rep + 1}: {exc!r}")
    runs.sort(key=lambda r: (r["repeat"], r["config"]))
    table, agg = render(runs, levels) if runs else ("no run completed", {})
    path = write_result("scale", {"levels": levels, "args": vars(args), "runs": runs, "summary": agg,
                                  "table": table, "notes": notes, "elapsed_s": time.monotonic() - started})
    print(table)
    for note in notes:
        print("note:", note)
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main())
