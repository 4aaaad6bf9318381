"""Relay cost per viewer: our hub vs aiortc's stock MediaRelay vs Janus 1.1.

One publisher replays the same pre-encoded clip (640×360 @ 15 fps VP8, ~490 kbps, ~54 RTP
packets/s) into each system: over WHIP for ours and MediaRelay, as plain RTP into the
Streaming plugin for Janus. Viewers (8 per process) are added N = 0, 16, 32; at each N,
after a warm-up, the server's CPU time is read over a fixed window together with the frames
every viewer received (in nanoseconds from every thread's ``schedstat`` when the threads
stayed the same, else in 10 ms ticks from ``/proc/PID/stat``, which also gives the user /
system split). CPU per added viewer is the least-squares
slope of server cores over N, taken only over the levels every viewer was served at ≥ 90 %
of 15 fps (a system that falls behind stops there). Systems and viewer kinds are
interleaved within each repeat, and ratios are taken per repeat.

Viewer kinds (``--viewers-kind``, a comma list; ``bench/rtcload.py``): ``full`` (the
default), browser-like aiortc receivers — jitter buffer, receiver reports every 0.5–1.5 s,
NACK at each gap, PLI when a frame is lost, the track consumed with ``recv()``, only the
decode skipped; ``counting``, the same receivers counting frames at the jitter buffer (the
benchmark's viewers before issue 20); ``light``, packets counted in the socket callback and
never decrypted (no receiver reports, NACK or PLI: the relay's send path alone).

Two more systems measure the publisher alone (N = 0 only: they stop before viewers are added);
at N = 0 the summary gives hub ÷ each other system per repeat:

- ``janus-webrtc``: Janus 1.1's VideoRoom plugin ingesting the same WebRTC publisher our hub
  does (the same clip, track and pacing; ICE, DTLS, SRTP, receiver reports, NACK, REMB), no
  subscribers: the like-for-like C reference for our ingest, where ``janus`` (plain RTP into
  the Streaming plugin) is not. After the window the run logs what the publisher sent, the
  RTCP Janus sent back and what Janus says it received (``bench/janus.py``'s Admin API).
- ``asyncio-sink``: the floor, the publisher's plain RTP into a bare asyncio datagram
  endpoint that only counts packets (``bench/servers/udp_sink.py``).

The Janus systems run in a lab (``bench.lab``): a network namespace this run makes and
removes, holding Janus, the publisher that feeds it and its viewers, all on the lab's own
address (libnice never gathers loopback, and the host's addresses are off limits). The hubs,
MediaRelay and the sink stay on the host's 127.0.0.1.

``--before DIR`` adds the system ``hub-before``: the hub from another source tree (e.g.
``git archive <commit> hub jaga | tar -x -C DIR``), started with the same config, for a
before/after comparison in one run. ``hub-sendto`` (asked for by name) is this tree's hub with
``media.send_batch = false``: a ``sendto`` per viewer instead of one ``sendmmsg`` per packet.

    python -m bench.relay [--repeats 3] [--viewers 0,16,32] [--systems hub,mediarelay,janus]
                          [--systems hub,janus,janus-webrtc,asyncio-sink --viewers 0]
                          [--viewers-kind full,light] [--before DIR]
                          [--profile]   # py-spy the hub at the largest N
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import (
    PY,
    Worker,
    close_workers,
    cores_between,
    cpu_split,
    fmt,
    fmt_spread,
    install_cleanup,
    log,
    mint_tokens,
    raise_fd_limit,
    spawn,
    start_hub,
    stop,
    summary,
    temp_dir,
    threads_cpu_ns,
    wait_for_file,
    write_result,
)
from bench.janus import MOUNTPOINT, ROOM, ensure_janus, start_janus
from bench.lab import Lab, open_lab
from bench.media_peers import FPS, clip_kbps, load_clip, rtp_packets

# hub: one media UDP port; hub-sessions: a socket each; hub-before: another tree's hub (--before);
# hub-sendto: one port, a sendto per viewer (media.send_batch = false: no sendmmsg);
# janus-webrtc: the WebRTC publisher into Janus's VideoRoom (N = 0 only);
# asyncio-sink: the publisher's plain RTP into a bare asyncio datagram endpoint (N = 0 only)
SYSTEMS = ("hub", "hub-before", "hub-sessions", "hub-sendto", "mediarelay", "janus", "janus-webrtc", "asyncio-sink")
PUBLISHER_ONLY = ("janus-webrtc", "asyncio-sink")  # no viewers: they stop after N = 0
# MediaRelay re-encodes per viewer: 32 take 1.5 of the machine's 2 cores beside the viewers,
# so its slope is read up to 16 (its ratio to the hub is ~0.03 either way).
MOST_VIEWERS = {"mediarelay": 16}
JANUS_SYSTEMS = ("janus", "janus-webrtc")
PLAIN_RTP_IN = ("janus", "asyncio-sink")  # the publisher sends plain RTP, no WebRTC
VIEWER_KINDS = ("full", "counting", "light")
PER_WORKER = 8
STATION = "35.09.01.2001"


def slope(points: list[tuple[float, float]]) -> float | None:
    if len(points) < 2:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


async def start_system(system: str, workdir: Path, janus_bin: str | None, lab: Lab | None,
                       before: Path | None = None, thumbnail_s: float | None = None) -> dict[str, Any]:
    """The server of ``system``; ``netns`` in the answer: where its publisher and viewers run."""
    if system in ("hub", "hub-sessions", "hub-sendto", "hub-before"):
        media: dict[str, Any] = {"max_sessions_per_address": 1000, "max_viewers_per_station": 1000}
        if system == "hub-sessions":
            media["udp_port"] = 0
        if system == "hub-sendto":
            media["send_batch"] = False
        if thumbnail_s is not None:
            media["thumbnail_s"] = thumbnail_s
        proc, port, config = await start_hub(workdir, media=media,
                                             source=before if system == "hub-before" else None)
        token = (await asyncio.to_thread(mint_tokens, config, [STATION]))[STATION]
        return {"proc": proc, "base": f"http://127.0.0.1:{port}", "token": token}
    if system == "asyncio-sink":
        port_file = workdir / "port"
        proc = await spawn(PY, "-m", "bench.servers.udp_sink", str(port_file), log=workdir / "sink.log")
        return {"proc": proc, "rtp_port": int(await wait_for_file(port_file, proc))}
    if system == "mediarelay":
        port_file = workdir / "port"
        proc = await spawn(PY, "-m", "bench.servers.mediarelay_server", str(port_file), log=workdir / "mr.log")
        return {"proc": proc, "base": f"http://127.0.0.1:{await wait_for_file(port_file, proc)}", "token": None}
    assert janus_bin and lab
    janus = await start_janus(janus_bin, workdir, lab, "videoroom" if system == "janus-webrtc" else "streaming")
    return {"proc": janus.proc, "janus": janus.url, "rtp_port": janus.rtp_port, "admin": janus.admin_url,
            "netns": lab.netns, "host": lab.address}


async def start_publisher(system: str, publisher: Worker, server: dict[str, Any]) -> None:
    """The clip into ``system``: plain RTP, or a WebRTC publisher (WHIP, or Janus's VideoRoom)."""
    if system in PLAIN_RTP_IN:
        await publisher.call("rtp", port=server["rtp_port"])
        return
    if system == "janus-webrtc":
        reply = await publisher.call("janus_publish", timeout=60, url=server["janus"], room=ROOM,
                                     host=server["host"], admin_url=server["admin"])
    else:
        reply = await publisher.call("publish", timeout=60, base=server["base"], station=STATION,
                                     token=server["token"])
    if not reply["connected"]:
        raise RuntimeError(f"{system}: publisher did not connect")


async def publisher_report(system: str, publisher: Worker) -> dict[str, Any] | None:
    """Once the N = 0 window is over: what the WebRTC publisher sent and the RTCP the server
    sent back (and, for Janus, what it says it received), so a run shows the server did the
    receiver's whole job, not just read a socket."""
    if system in PLAIN_RTP_IN:
        return None
    try:
        report: dict[str, Any] = await publisher.call("report", timeout=30)
    except RuntimeError as exc:  # a check, not a measurement: the run's figures stand without it
        log(f"{system}: no publisher report ({exc})")
        return None
    rtcp = ", ".join(f"{kind} {n}" for kind, n in report["rtcp"].items())
    log(f"{system}: publisher sent {report['packets_sent']} packets; RTCP back: {rtcp}; "
        f"loss reported {report['lost_reported']}, rtt {fmt(report['rtt_s'], 4)} s")
    if "participants" in report:
        log(f"{system}: room participants {report['participants']}")
        for mid, got in report["janus_received"].items():
            log(f"{system}: Janus received on mid {mid}: {got['in']}; its RTCP view {got['rtcp']}")
    return report


async def run_system(system: str, levels: list[int], args: argparse.Namespace, janus_bin: str | None,
                     lab: Lab | None, packets_per_s: float, kind: str = "full") -> dict[str, Any]:
    workdir = temp_dir(f"bench-relay-{system}-")
    levels = [n for n in levels if n <= MOST_VIEWERS.get(system, n)]
    server = await start_system(system, workdir, janus_bin, lab, args.before, args.thumbnail_s)
    pid = server["proc"].pid
    netns = server.get("netns")  # the workers talk to the server: where it is
    # every viewer worker the run will need, started with the publisher's (idle until it joins viewers)
    needed = 0 if system in PUBLISHER_ONLY else -(-max(levels) // PER_WORKER)
    publisher, *workers = await asyncio.gather(
        Worker.start("-m", "bench.rtcload", "publisher", log=workdir / "pub.log", netns=netns),
        *(Worker.start("-m", "bench.rtcload", "viewers", "--kind", kind, log=workdir / "viewers.log", netns=netns)
          for _ in range(needed)))
    out: dict[str, Any] = {"system": system, "kind": kind, "levels": [], "profile": None}

    async def join(worker: Worker, take: int) -> None:
        if system == "janus":
            reply = await worker.call("janus", timeout=120, url=server["janus"], mountpoint=MOUNTPOINT,
                                      count=take, host=server["host"])
        else:
            reply = await worker.call("whep", timeout=120, base=server["base"], station=STATION, count=take)
        if reply["connected"] != take:
            log(f"{system}: {reply['connected']}/{take} viewers connected {reply['errors']}")

    try:
        await start_publisher(system, publisher, server)  # connected; the warm-up below settles it
        current = 0
        for n in levels:
            if n and system in PUBLISHER_ONLY:
                break  # the publisher alone: it has no viewers
            joins = []  # each worker fills up to PER_WORKER; the workers join theirs at once
            while current < n:
                take = min(n - current, PER_WORKER - current % PER_WORKER)
                joins.append(join(workers[current // PER_WORKER], take))
                current += take
            await asyncio.gather(*joins)
            await asyncio.sleep(args.warmup)
            before = [await w.call("stats") for w in workers]
            (user0, sys0), fine0, t0 = cpu_split(pid), threads_cpu_ns(pid), time.monotonic()
            await asyncio.sleep(args.window)
            (user1, sys1), fine1, t1 = cpu_split(pid), threads_cpu_ns(pid), time.monotonic()
            cpu0, cpu1 = user0 + sys0, user1 + sys1
            after = [await w.call("stats") for w in workers]
            fps = []
            lost = 0
            for b, a in zip(before, after, strict=True):  # the same workers, the same viewers
                fps += [(y - x) / (t1 - t0) for x, y in zip(b["frames"], a["frames"], strict=True)]
                lost += sum(a["lost"]) - sum(b["lost"])
            profile = None
            if args.profile and system == "hub" and n == levels[-1] and not out["profile"] and kind == args.kinds[0]:
                profile = await py_spy(pid, workdir, args.profile_seconds)
                out["profile"] = profile
            cores = cores_between(fine0, fine1, t1 - t0, (cpu1 - cpu0) / (t1 - t0))
            ordered = sorted(fps)
            system_cores = (sys1 - sys0) / (t1 - t0)
            level = {"viewers": n, "cores": cores, "ticks_cores": (cpu1 - cpu0) / (t1 - t0),
                     "threads_changed": fine0[1] != fine1[1], "user_cores": (user1 - user0) / (t1 - t0),
                     "system_cores": system_cores,
                     "fps_median": ordered[len(ordered) // 2] if fps else None,
                     "fps_min": ordered[0] if fps else None, "lost_packets": lost,
                     "served": (not fps) or ordered[0] >= 0.9 * FPS}
            out["levels"].append(level)
            log(f"{system:10} {kind:8} N={n:2} cpu={cores * 100:5.1f}% (sys {system_cores * 100:4.1f}%) "
                f"fps median={fmt(level['fps_median'], 1)} "
                f"min={fmt(level['fps_min'], 1)} lost={lost}")
            if n == 0:  # after the window: the report's requests are not measured
                out["publisher"] = await publisher_report(system, publisher)
            if not level["served"]:
                log(f"{system}: viewers below 90% of {FPS} fps at N={n}; stopping here")
                break
    finally:
        await close_workers(workers, "close_all", timeout=30)
        try:
            await publisher.call("close", timeout=10)
        except Exception:
            pass
        await publisher.close()
        await stop(server["proc"])
    served = [(level["viewers"], level["cores"]) for level in out["levels"] if level["served"]]
    out["slope_cores_per_viewer"] = slope(served)
    out["slope_system_cores_per_viewer"] = slope([(level["viewers"], level["system_cores"])
                                                  for level in out["levels"] if level["served"]])
    out["us_per_packet"] = (out["slope_cores_per_viewer"] * 1e6 / packets_per_s
                            if out["slope_cores_per_viewer"] is not None else None)
    out["max_served"] = max((n for n, _ in served), default=0)
    return out


async def py_spy(pid: int, workdir: Path, seconds: float) -> dict[str, Any]:
    """Sample the hub with py-spy; return the top frames by own and by inclusive time."""
    raw = workdir / "pyspy.txt"
    binary = Path(PY).parent / "py-spy"
    proc = await asyncio.create_subprocess_exec(str(binary), "record", "--pid", str(pid), "--duration",
                                                str(int(seconds)), "--rate", "500", "--format", "raw",
                                                "--nonblocking", "-o", str(raw),
                                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await asyncio.wait_for(proc.wait(), seconds + 30)
    if not raw.exists():
        return {"error": "py-spy wrote nothing (ptrace not permitted?)"}
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        # aggregate by function: "name (file.py:123)" → "name (file.py)"
        frames = [re.sub(r":\d+\)$", ")", f.strip()) for f in stack.split(";") if f.strip()]
        total += count
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + count
    (Path(__file__).parent / "results").mkdir(exist_ok=True)
    (Path(__file__).parent / "results" / "relay_hub_pyspy.txt").write_text(raw.read_text())

    def top(counts: dict[str, int]) -> list[tuple[str, float]]:
        return [(frame, n / total) for frame, n in sorted(counts.items(), key=lambda kv: -kv[1])[:20]]

    return {"samples": total, "own": top(own), "inclusive": top(inclusive)}


def render(runs: list[dict[str, Any]], levels: list[int], packets_per_s: float) -> tuple[str, dict[str, Any]]:
    names = {"hub": "Jaga hub (forwarding)", "hub-before": "Jaga hub, before (--before tree)",
             "hub-sessions": "Jaga hub, a UDP socket per session",
             "hub-sendto": "Jaga hub, a sendto per viewer (no sendmmsg)",
             "mediarelay": "aiortc MediaRelay (re-encoding)",
             "janus": "Janus 1.1 Streaming",
             "janus-webrtc": "Janus 1.1 VideoRoom (WebRTC publisher in)",
             "asyncio-sink": "bare asyncio UDP receiver (the floor)"}
    kinds = [k for k in VIEWER_KINDS if any(r.get("kind", "full") == k for r in runs)]
    agg: dict[str, Any] = {}
    lines = ["Server CPU (% of one core) by viewers N, median over repeats; viewers' frame rate as min fps:", ""]
    lines.append("| system | viewers | " + " | ".join(f"N={n}" for n in levels)
                 + " | CPU per added viewer | of which system (kernel) | µs per relayed packet | most viewers served |")
    lines.append("|---|---|" + "---|" * (len(levels) + 4))
    for kind in kinds:
        for system in SYSTEMS:
            mine = [r for r in runs if r["system"] == system and r.get("kind", "full") == kind]
            if not mine:
                continue
            cells = []
            for n in levels:
                got = [level for r in mine for level in r["levels"] if level["viewers"] == n]
                if not got:
                    cells.append("–")
                    continue
                cpu = summary([level["cores"] * 100 for level in got])
                low = min(level["fps_min"] for level in got) if n else None
                cells.append(f"{fmt(cpu['median'], 1)} %" + (f" ({fmt(low, 1)} fps)" if low is not None else ""))
            s = summary([r["slope_cores_per_viewer"] for r in mine])
            sys_s = summary([r.get("slope_system_cores_per_viewer") for r in mine])
            us = summary([r["us_per_packet"] for r in mine])
            key = system if kind == "full" else f"{system}/{kind}"
            agg[key] = {"slope": s, "system_slope": sys_s, "us_per_packet": us,
                        "max_served": summary([r["max_served"] for r in mine])}
            most = fmt(agg[key]["max_served"]["median"])

            def percent(spread: dict[str, Any]) -> str:
                return f"{fmt_spread(spread, 3, 100)} %" if spread["median"] is not None else "–"

            lines.append(f"| {names[system]} | {kind} | " + " | ".join(cells) + f" | {percent(s)} | "
                         f"{percent(sys_s)} | {fmt_spread(us)} | {most} |")
    lines += ["", f"(a viewer receives ~{packets_per_s:.0f} RTP packets/s; spread is min–max over repeats)"]
    for capped, cap in MOST_VIEWERS.items():
        if any(r["system"] == capped for r in runs) and max(levels) > cap:
            lines.append(f"({names[capped]}: measured up to N = {cap} only, so \"most viewers served\" "
                         "is that cap, not a limit it reached)")
    ratios: dict[str, Any] = {}
    for kind in kinds:
        for other in ("janus", "hub-before", "mediarelay", "hub-sessions", "hub-sendto"):
            pairs = per_repeat_ratios(runs, other, kind, lambda r: r["slope_cores_per_viewer"])
            if any(p is not None for p in pairs):
                name = f"hub/{other}" if kind == "full" else f"hub/{other}/{kind}"
                ratios[name] = summary(pairs) | {"per_repeat": pairs}
                each = ", ".join(fmt(p, 2) for p in pairs)
                lines.append(f"- CPU per added viewer, hub ÷ {other}, {kind} viewers: "
                             f"{fmt_spread(ratios[name], 2)}; per repeat {each}")
    if 0 in levels:  # one publisher, no viewers (issue 20's ingest goal): hub ÷ each other, per repeat
        for other in ("janus", "janus-webrtc", "hub-before", "asyncio-sink", "hub-sessions", "hub-sendto"):
            pairs = per_repeat_ratios(runs, other, "full", cores_without_viewers)
            if any(p is not None for p in pairs):
                ratios[f"N0:hub/{other}"] = summary(pairs) | {"per_repeat": pairs}
                lines.append(f"- CPU with the publisher alone (N = 0), hub ÷ {other}: "
                             + ", ".join(fmt(p, 2) for p in pairs) + " per repeat")
    agg["ratios"] = ratios
    return "\n".join(lines), agg


def per_repeat_ratios(runs: list[dict[str, Any]], other: str, kind: str,
                      value: Callable[[dict[str, Any]], float | None]) -> list[float | None]:
    """Hub ÷ ``other`` of ``value(run)`` for each repeat of the hub (None where either has none):
    the two ran back to back in the same repeat."""
    theirs = {r.get("repeat", 0): r for r in runs if r["system"] == other and r.get("kind", "full") == kind}
    pairs: list[float | None] = []
    for hub in sorted((r for r in runs if r["system"] == "hub" and r.get("kind", "full") == kind),
                      key=lambda r: r.get("repeat", 0)):
        other_run = theirs.get(hub.get("repeat", 0))
        x, y = value(hub), value(other_run) if other_run else None
        pairs.append(x / y if x and y else None)
    return pairs


def cores_without_viewers(run: dict[str, Any]) -> float | None:
    return next((level["cores"] for level in run["levels"] if level["viewers"] == 0), None)


async def run_repeats(systems: list[str], levels: list[int], args: argparse.Namespace, janus_bin: str | None,
                      lab: Lab | None, packets_per_s: float, notes: list[str]) -> list[dict[str, Any]]:
    """Every system with every viewer kind, ``args.repeats`` times, interleaved; a failure is
    a note, and the rest go on."""
    runs = []
    for rep in range(args.repeats):
        for kind in args.kinds:
            for system in systems:
                log(f"repeat {rep + 1}/{args.repeats}: {system}, {kind} viewers")
                try:
                    runs.append(await run_system(system, levels, args, janus_bin, lab, packets_per_s, kind)
                                | {"repeat": rep})
                except Exception as exc:
                    log(f"{system} ({kind} viewers) failed: {exc!r}")
                    notes.append(f"{system}, {kind} viewers, repeat {rep + 1}: {exc!r}")
        args.profile = False  # one profile is enough
    return runs


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--viewers", default="0,16,32")
    parser.add_argument("--systems", default=",".join(s for s in SYSTEMS
                                                      if s not in ("hub-before", "hub-sendto")
                                                      and s not in PUBLISHER_ONLY))
    parser.add_argument("--viewers-kind", default="full",
                        help="comma list of full, counting, light (see the module doc); each is run for every system")
    parser.add_argument("--before", type=Path, default=None,
                        help="a source tree of an earlier hub: adds the system hub-before")
    parser.add_argument("--thumbnail-s", type=float, default=None,
                        help="the hubs' media.thumbnail_s (default: the hub's, 10 s: the benchmark's publisher is no "
                             "agent, so the relay decodes a keyframe for its thumbnail every 10 s; 0: none)")
    parser.add_argument("--window", type=float, default=4.0)
    parser.add_argument("--warmup", type=float, default=2.5,
                        help="after adding viewers (the clip has a keyframe every 2 s)")
    parser.add_argument("--profile", action="store_true", help="py-spy the hub at the largest N (first repeat)")
    parser.add_argument("--profile-seconds", type=float, default=10)
    parser.add_argument("--no-install", action="store_true", help="do not apt-get install janus if missing")
    parser.add_argument("--quick", action="store_true", help="1 repeat, N = 0,4,16, short windows")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.viewers, args.window = 1, "0,4,16", 3.0
    levels = [int(x) for x in args.viewers.split(",")]
    systems = args.systems.split(",")
    if args.before is not None and "hub-before" not in systems:
        systems.insert(1 if "hub" in systems else 0, "hub-before")
    args.kinds = args.viewers_kind.split(",")
    if unknown := set(args.kinds) - set(VIEWER_KINDS):
        parser.error(f"unknown viewer kind(s) {sorted(unknown)}")
    raise_fd_limit()
    wants_janus = any(s in JANUS_SYSTEMS for s in systems)
    janus_bin = ensure_janus(not args.no_install) if wants_janus else None
    notes = []
    if wants_janus and not janus_bin:
        notes.append("Janus not available (apt-get install janus failed or not allowed): skipped")
        systems = [s for s in systems if s not in JANUS_SYSTEMS]
    clip = load_clip()
    packets_per_s = sum(len(p) for p in rtp_packets(clip)) / (len(clip) / FPS)
    started = time.monotonic()
    with open_lab() if janus_bin else contextlib.nullcontext() as lab:  # Janus's systems run in the lab
        runs = await run_repeats(systems, levels, args, janus_bin, lab, packets_per_s, notes)
    table, agg = render(runs, levels, packets_per_s)
    profile = next((r["profile"] for r in runs if r.get("profile")), None)
    plain_args = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    path = write_result("relay", {"levels": levels, "args": plain_args, "clip_kbps": clip_kbps(clip),
                                  "packets_per_s": packets_per_s, "runs": runs, "summary": agg, "table": table,
                                  "profile": profile, "notes": notes, "elapsed_s": time.monotonic() - started})
    print(table)
    for note in notes:
        print("note:", note)
    if profile and "own" in profile:
        print(f"\npy-spy, hub at N={levels[-1]} ({profile['samples']} samples), top own time:")
        for frame, share in profile["own"][:12]:
            print(f"  {share * 100:5.1f} %  {frame}")
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main())
