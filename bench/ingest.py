"""Ingest: N publishers of the Jember registry into one hub process.

Every publisher is a real WHIP session (its own station id from ``data/jember_stations.csv``,
its own token minted in the hub's credential store) replaying the same pre-encoded clip
(640×360 @ 15 fps VP8, ~490 kbps, ~54 RTP packets/s), spread over several client processes
(``bench/loadgen.py publishers``: light publishers by default, see ``bench/light_publisher.py``)
so that the hub's CPU is read alone. The hub is pinned to one CPU and the clients to the
others (``--no-pin`` to leave them to the scheduler), so "how many one core sustains" is
measured, not extrapolated. N steps up (default 0, 100, 200, 303); at each N, after a
warm-up, over a fixed window:

- the hub's CPU time (``/proc/PID/stat``) → cores busy (1.0 = the single asyncio thread's limit);
- frames the publishers sent vs frames the hub reassembled
  (``/metrics`` ``jaga_media{counter="frames_received"}``) → frame loss;
- RTP packets sent and the packets the hub reported lost in its RTCP receiver reports;
- the client processes' CPU (to see whether the load generators, not the hub, were the limit).

It stops at the first level with loss (frames received < 99 % of sent, or RTCP loss > 0.1 %),
when the hub is saturated (≥ 0.95 cores), when the clients cannot keep 15 fps, or at a time cap.
CPU per publisher is the least-squares slope of hub cores over N across the loss-free levels;
the N at which that line reaches one core is an *extrapolation* and is reported as such.

    python -m bench.ingest [--repeats 3] [--publishers 0,100,…] [--procs 4] [--max-seconds 120] [--no-pin]
                            [--publisher light|aiortc] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
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
    http_client,
    install_cleanup,
    log,
    metrics_text,
    mint_tokens,
    raise_fd_limit,
    start_hub,
    station_ids,
    stop,
    summary,
    temp_dir,
    write_result,
)
from bench.media_peers import FPS, clip_kbps, load_clip, rtp_packets
from bench.relay import slope

LEVELS = "0,100,200,303"
IDLE_WARMUP_S = 3.0  # before the N = 0 window: the hub is idle, nobody has joined yet


async def media_counters(http: Any, base: str) -> dict[str, float]:
    text = await metrics_text(http, base)
    return {m.group(1): float(m.group(2))
            for m in re.finditer(r'^jaga_media\{counter="([a-z_]+)"\} ([0-9.e+]+)$', text, re.MULTILINE)}


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of ``pid`` (and so the threads it starts later) to ``cpus``."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cpus)
        except OSError:
            pass  # the thread ended meanwhile


def intercept(points: list[tuple[float, float]], k: float) -> float:
    n = len(points)
    return sum(y for _, y in points) / n - k * sum(x for x, _ in points) / n


async def run_once(args: argparse.Namespace, levels: list[int], ids: list[str], ports: str = "shared"
                   ) -> dict[str, Any]:
    workdir = temp_dir("bench-ingest-")
    proc, port, config = await start_hub(workdir, media={"max_sessions_per_address": 10_000,
                                                         "thumbnail_s": args.thumbnail_s,
                                                         **({"udp_port": 0} if ports == "sessions" else {})})
    base = f"http://127.0.0.1:{port}"
    wanted = ids[:max(levels)]
    tokens = await asyncio.to_thread(mint_tokens, config, wanted)
    workers = list(await asyncio.gather(*(Worker.start("-m", "bench.loadgen", "publishers", "--publisher",
                                                       args.publisher, log=workdir / f"pub{i}.log")
                                          for i in range(args.procs))))
    out: dict[str, Any] = {"levels": [], "stopped": "all levels done", "pinned": False}
    if args.pin and len(os.sched_getaffinity(0)) >= 2:
        # "One core": the hub gets CPU 0 alone; the clients share the others, so the hub's
        # limit is its own and not the load generators' competition for the same core.
        cpus = sorted(os.sched_getaffinity(0))
        pin(proc.pid, {cpus[0]})
        for w in workers:
            pin(w.proc.pid, set(cpus[1:]))
        out["pinned"] = True
    started = time.monotonic()
    current = 0
    try:
        async with http_client(timeout=30) as http:
            for n in levels:
                if time.monotonic() - started > args.max_seconds:
                    out["stopped"] = f"time cap ({args.max_seconds:.0f} s) before N={n}"
                    break
                new = wanted[current:n]
                shares: list[dict[str, str]] = [{} for _ in workers]
                for i, sid in enumerate(new):
                    shares[(current + i) % len(workers)][sid] = tokens[sid]
                replies = await asyncio.gather(*(w.call("publish", timeout=300, base=base, stations=s)
                                                 for w, s in zip(workers, shares, strict=True) if s))
                connected = sum(r["connected"] for r in replies)
                if connected != len(new):
                    log(f"N={n}: {connected}/{len(new)} new publishers connected {[r['errors'] for r in replies]}")
                current = n
                # nobody joined at N = 0: the idle hub needs no time to settle after joins
                await asyncio.sleep(args.warmup if n else min(args.warmup, IDLE_WARMUP_S))
                rtcp0 = await asyncio.gather(*(w.call("stats") for w in workers))
                m0, s0 = await asyncio.gather(media_counters(http, base),
                                              asyncio.gather(*(w.call("stats", rtcp=False) for w in workers)))
                cpu0, c0, t0 = cpu_seconds(proc.pid), [cpu_seconds(w.proc.pid) for w in workers], time.monotonic()
                await asyncio.sleep(args.window)
                cpu1, c1, t1 = cpu_seconds(proc.pid), [cpu_seconds(w.proc.pid) for w in workers], time.monotonic()
                m1, s1 = await asyncio.gather(media_counters(http, base),
                                              asyncio.gather(*(w.call("stats", rtcp=False) for w in workers)))
                rtcp1 = await asyncio.gather(*(w.call("stats") for w in workers))
                dt = t1 - t0
                sent = sum(b["frames"] for b in s1) - sum(a["frames"] for a in s0)
                received = m1.get("frames_received", 0) - m0.get("frames_received", 0)
                packets = sum(b["packets_sent"] for b in rtcp1) - sum(a["packets_sent"] for a in rtcp0)
                lost = sum(b["packets_lost"] for b in rtcp1) - sum(a["packets_lost"] for a in rtcp0)
                level = {
                    "publishers": n, "connected": sum(b["connected"] for b in s1), "cores": (cpu1 - cpu0) / dt,
                    "client_cores": (sum(c1) - sum(c0)) / dt, "frames_sent": sent, "frames_received": received,
                    "sent_fps_per_publisher": sent / dt / n if n else None,
                    "frame_ratio": received / sent if sent else None, "packets_sent": packets,
                    "packets_lost_rtcp": lost,
                    "keyframes_received": m1.get("keyframes_received", 0) - m0.get("keyframes_received", 0),
                    "thumbnails": m1.get("thumbnails", 0) - m0.get("thumbnails", 0),
                    "send_failures": sum(b.get("send_failures", 0) - a.get("send_failures", 0)
                                         for a, b in zip(s0, s1, strict=True)),
                }
                ratio_ok = n == 0 or (level["frame_ratio"] or 0) >= 0.99
                rtcp_ok = packets == 0 or lost <= 0.001 * packets
                level["lossless"] = ratio_ok and rtcp_ok and level["connected"] == n
                out["levels"].append(level)
                log(f"N={n:3} hub={level['cores'] * 100:5.1f}% clients={level['client_cores'] * 100:5.1f}% "
                    f"sent={fmt(level['sent_fps_per_publisher'], 2)} fps/pub recv/sent={fmt(level['frame_ratio'], 4)} "
                    f"rtcp lost={lost}/{packets} connected={level['connected']}/{n} "
                    f"send failures={level['send_failures']}")
                if not level["lossless"]:
                    out["stopped"] = f"loss at N={n}"
                    break
                if level["cores"] >= 0.95:
                    out["stopped"] = f"hub saturated at N={n}"
                    break
                if n and level["sent_fps_per_publisher"] < 0.9 * FPS:
                    out["stopped"] = f"clients could not keep {FPS} fps at N={n}"
                    break
    finally:
        await close_workers(workers, "close_all")
        await stop(proc)
    summarise(out)
    out["elapsed_s"] = time.monotonic() - started
    return out


def summarise(out: dict[str, Any]) -> None:
    """Slope over the *steady* loss-free levels: a level whose window received > 1 % more frames
    than were sent was still draining the backlog of the last joins, so its CPU is not steady."""
    for level in out["levels"]:
        level["steady"] = level["lossless"] and (level["publishers"] == 0 or level["frame_ratio"] <= 1.01)
    points = [(level["publishers"], level["cores"]) for level in out["levels"] if level["steady"]]
    k = slope(points)
    out["slope_cores_per_publisher"] = k
    out["idle_cores"] = intercept(points, k) if k is not None else None
    out["max_lossless"] = max((level["publishers"] for level in out["levels"] if level["lossless"]), default=0)
    out["max_steady"] = max((level["publishers"] for level in out["levels"] if level["steady"]), default=0)
    out["extrapolated_one_core"] = (1.0 - out["idle_cores"]) / k if k else None


def compare_ports(runs: list[dict[str, Any]], packets_per_s: float, agg: dict[str, Any]) -> str:
    """One shared media UDP port against a socket per session, repeat by repeat."""
    by_repeat: dict[int, dict[str, float]] = {}
    for r in runs:
        if r["slope_cores_per_publisher"]:
            by_repeat.setdefault(r["repeat"], {})[r["ports"]] = r["slope_cores_per_publisher"]
    ratios: list[float | None] = [pair["shared"] / pair["sessions"] for pair in by_repeat.values() if len(pair) == 2]
    slopes = {mode: summary([r["slope_cores_per_publisher"] for r in runs if r["ports"] == mode])
              for mode in ("shared", "sessions")}
    agg["ports"] = {"slopes": slopes, "shared_over_sessions": summary(ratios)}
    lines = ["| media ports | CPU per publisher | µs per packet |", "|---|---|---|"]
    for mode, label in (("shared", "one shared UDP port (`media.udp_port`)"), ("sessions", "a socket per session")):
        us = summary([v * 1e6 / packets_per_s for v in [slopes[mode]["median"]] if v])
        lines.append(f"| {label} | {fmt_spread(slopes[mode], 3, 100)} % | {fmt_spread(us)} |")
    lines.append(f"- one port ÷ a socket per session, per repeat: {fmt_spread(summary(ratios), 2)}")
    return "\n".join(lines)


def render(runs: list[dict[str, Any]], levels: list[int], packets_per_s: float) -> tuple[str, dict[str, Any]]:
    lines = ["Hub CPU (% of one core) and frames received ÷ sent by publishers N, median over repeats "
             f"({len(runs)}), (min–max):", "",
             "| N | hub CPU | client processes' CPU | frames received ÷ sent | RTCP-reported lost / sent packets "
             "| repeats |",
             "|---|---|---|---|---|---|"]
    for n in levels:
        got = [level for r in runs for level in r["levels"] if level["publishers"] == n]
        if not got:
            continue
        cpu = summary([level["cores"] * 100 for level in got])
        cli = summary([level["client_cores"] * 100 for level in got])
        ratio = summary([level["frame_ratio"] for level in got])
        lost = sum(level["packets_lost_rtcp"] for level in got)
        sent = sum(level["packets_sent"] for level in got)
        lines.append(f"| {n} | {fmt_spread(cpu, 1)} % | {fmt_spread(cli, 1)} % | {fmt_spread(ratio, 4)} | "
                     f"{lost:,} / {sent:,} | {len(got)} |")
    agg: dict[str, Any] = {
        "slope": summary([r["slope_cores_per_publisher"] for r in runs]),
        "idle": summary([r["idle_cores"] for r in runs]),
        "max_lossless": summary([r["max_lossless"] for r in runs]),
        "max_steady": summary([r["max_steady"] for r in runs]),
        "extrapolated_one_core": summary([r["extrapolated_one_core"] for r in runs]),
        "stopped": [r["stopped"] for r in runs],
    }
    us = summary([r["slope_cores_per_publisher"] * 1e6 / packets_per_s if r["slope_cores_per_publisher"] else None
                  for r in runs])
    agg["us_per_packet"] = us
    lines += ["",
              f"- CPU per publisher (slope over the steady loss-free levels, up to N = "
              f"{fmt_spread(agg['max_steady'])}): {fmt_spread(agg['slope'], 2, 100)} % of a core "
              f"= {fmt_spread(us)} µs per received RTP packet (~{packets_per_s:.0f} packets/s per publisher)",
              f"- idle hub (intercept): {fmt_spread(agg['idle'], 1, 100)} %",
              f"- largest N measured without loss: {fmt_spread(agg['max_lossless'])}",
              "- N at which the fitted line reaches 1.0 core (extrapolated): "
              f"{fmt_spread(agg['extrapolated_one_core'])}",
              f"- why each repeat stopped: {'; '.join(agg['stopped'])}"]
    return "\n".join(lines), agg


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--publishers", default=LEVELS)
    parser.add_argument("--procs", type=int, default=4, help="client processes the publishers are spread over")
    parser.add_argument("--publisher", choices=("light", "aiortc"), default="light",
                        help="light: aiortc negotiates, one timer per client process sends the RTP "
                             "(bench/light_publisher.py); aiortc: a full aiortc sender per publisher")
    parser.add_argument("--window", type=float, default=6.0)
    # After ~100 joins the hub's CPU takes several seconds to settle (3-8 s warm-ups read
    # 0.2-0.3 core more at N = 240-303 than 10-12 s ones).
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--max-seconds", type=float, default=120, help="per repeat; no new level starts after it")
    parser.add_argument("--quick", action="store_true", help="1 repeat, N = 0,40,80,120")
    parser.add_argument("--ports", choices=("shared", "sessions", "both"), default="shared",
                        help="media on one shared UDP port (the default), a socket per session, or both interleaved")
    parser.add_argument("--thumbnail-s", type=float, default=10.0,
                        help="the hub's media.thumbnail_s; 0 = no relay thumbnails, as for stations "
                             "whose agent sends its own")
    parser.add_argument("--no-pin", dest="pin", action="store_false",
                        help="do not pin the hub to CPU 0 and the clients to the other CPUs")
    parser.add_argument("--result-name", default="ingest",
                        help="write bench/results/NAME.json (keeps another run's ingest.json)")
    parser.add_argument("--render", action="store_true", help="only re-render bench/results/ingest.json")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.publishers, args.window, args.max_seconds = 1, "0,40,80,120", 4.0, 60
    if args.render:
        import json

        saved = json.loads((RESULTS / "ingest.json").read_text())
        for run in saved["runs"]:
            summarise(run)
        table, saved["summary"] = render(saved["runs"], saved["levels"], saved["packets_per_s"])
        saved["table"] = table
        (RESULTS / "ingest.json").write_text(json.dumps(saved, indent=1))
        print(table)
        return
    levels = [int(x) for x in args.publishers.split(",")]
    ids = station_ids()
    levels = [n for n in levels if n <= len(ids)]
    raise_fd_limit()
    clip = load_clip()
    packets_per_s = sum(len(p) for p in rtp_packets(clip)) / (len(clip) / FPS)
    started = time.monotonic()
    runs, notes = [], []
    modes = ["shared", "sessions"] if args.ports == "both" else [args.ports]
    for rep in range(args.repeats):
        for ports in modes if rep % 2 == 0 else modes[::-1]:  # interleaved, the order alternating
            log(f"ingest repeat {rep + 1}/{args.repeats} ({ports} media port{'s' if ports == 'sessions' else ''})")
            try:
                runs.append(await run_once(args, levels, ids, ports) | {"repeat": rep, "ports": ports})
            except Exception as exc:
                log(f"repeat {rep + 1} failed: {exc!r}")
                notes.append(f"repeat {rep + 1} ({ports}): {exc!r}")
    shared = [r for r in runs if r["ports"] == modes[0]]
    table, agg = render(shared, levels, packets_per_s) if shared else ("no run completed", {})
    if len(modes) == 2:
        table += "\n\n" + compare_ports(runs, packets_per_s, agg)
    path = write_result(args.result_name, {"levels": levels, "args": vars(args), "clip_kbps": clip_kbps(clip),
                                   "packets_per_s": packets_per_s, "runs": runs, "summary": agg, "table": table,
                                   "notes": notes, "elapsed_s": time.monotonic() - started})
    print(table)
    for note in notes:
        print("note:", note)
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main())
