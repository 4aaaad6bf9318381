"""Relay CPU per viewer, before vs after the RTP fast path, side by side in one run.

Two relay processes run ``hub.media.MediaRelay`` alone (no HTTP; offers and answers go
over stdin/stdout as JSON lines): one from a source tree of the old relay (``--before``,
e.g. ``git archive HEAD hub | tar -x -C /tmp/jaga-before``), one from this checkout. This
process plays one publisher (``bench.media_peers.ClipTrack``: the pre-encoded 640×360 VP8
clip, ~490 kbps) and N counting viewers (no decoding). For each system, interleaved within
each repeat: CPU time (utime+stime from /proc) of the relay process over a fixed window at
N = 0 and at N = 16, with every viewer's received frame count over the same window as the
proof of delivery; CPU per added viewer = the difference ÷ 16. ``--profile`` records
py-spy on each system at N = 16 in the first repeat.

    .venv/bin/python bench/fastpath_probe.py --before /tmp/jaga-before [--repeats 3] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
STATION = "35.09.01"


# ---------------------------------------------------------------- the relay process

async def serve(src: str) -> None:
    sys.path.insert(0, src)
    from hub.media import MediaRelay
    from hub.settings import MediaSettings

    class Events:
        def publishing_started(self, station_id: str) -> None: ...
        def publishing_stopped(self, station_id: str) -> None: ...
        def thumbnail(self, station_id: str, jpeg: bytes) -> None: ...
        def wants_thumbnail(self, station_id: str) -> bool: return False

    relay = MediaRelay(MediaSettings(host_addresses=("127.0.0.1",), thumbnail_s=0.0, max_sessions_per_address=1000,
                                     max_viewers_per_station=1000), Events())
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        request = json.loads(line)
        call = relay.publish if request["op"] == "publish" else relay.view
        session = await call(STATION, request["sdp"], owner="probe", client_addr="127.0.0.1")
        print(json.dumps({"sdp": session.answer_sdp}), flush=True)
    await relay.close()


# ---------------------------------------------------------------- the load and the measurement

class RelayProcess:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, src: str) -> RelayProcess:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "serve", src, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            cwd="/", env={**os.environ, "PYTHONPATH": src}, limit=2**24)
        return cls(proc)

    async def offer(self, op: str, sdp: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps({"op": op, "sdp": sdp}) + "\n").encode())
        await self.proc.stdin.drain()
        answer: str = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), 30))["sdp"]
        return answer

    def cpu_seconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    async def stop(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


async def window(relay: RelayProcess, viewers: list[Any], seconds: float) -> dict[str, Any]:
    frames0 = [v.frames for v in viewers]
    cpu0, t0 = relay.cpu_seconds(), time.monotonic()
    await asyncio.sleep(seconds)
    cpu1, t1 = relay.cpu_seconds(), time.monotonic()
    fps = [(v.frames - f) / (t1 - t0) for v, f in zip(viewers, frames0, strict=True)]
    return {"cores": (cpu1 - cpu0) / (t1 - t0), "fps_min": min(fps, default=None),
            "fps_median": statistics.median(fps) if fps else None}


async def py_spy(pid: int, out: Path, seconds: int) -> list[tuple[str, float]]:
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--duration", str(seconds),
        "--rate", "250", "--format", "raw", "--nonblocking", "-o", str(out),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    await asyncio.wait_for(proc.wait(), seconds + 30)
    own: dict[str, int] = {}
    total = 0
    for line in out.read_text().splitlines() if out.exists() else []:
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            leaf = stack.split(";")[-1].strip()
            own[leaf] = own.get(leaf, 0) + int(count)
            total += int(count)
    return [(frame, n / total) for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:15]]


async def run_system(label: str, src: str, n: int, args: argparse.Namespace,
                     profile_dir: Path | None) -> dict[str, Any]:
    from aiortc import RTCSessionDescription

    from bench.media_peers import ClipTrack, CountingViewer, load_clip, local_offer, prefer_vp8
    from hub.media.seams_peers import close_peer_connection, new_peer_connection

    relay = await RelayProcess.start(src)
    publisher = new_peer_connection(())
    viewers: list[CountingViewer] = []
    try:
        publisher.addTransceiver(ClipTrack(load_clip()), direction="sendonly")
        prefer_vp8(publisher)
        answer = await relay.offer("publish", await local_offer(publisher))
        await publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        await asyncio.sleep(args.warmup)
        idle = await window(relay, [], args.window)
        for _ in range(n):
            viewer = CountingViewer()
            viewer._prepare()
            answer = await relay.offer("view", await local_offer(viewer.pc))
            await viewer.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
            viewers.append(viewer)
        await asyncio.sleep(args.warmup + 2.0)  # the clip has a keyframe every 2 s
        loaded = await window(relay, viewers, args.window)
        profile = None
        if profile_dir is not None:
            profile = await py_spy(relay.proc.pid, profile_dir / f"pyspy_{label}.txt", args.profile_seconds)
        return {"system": label, "idle_cores": idle["cores"], "loaded_cores": loaded["cores"],
                "per_viewer_cores": (loaded["cores"] - idle["cores"]) / n,
                "fps_min": loaded["fps_min"], "fps_median": loaded["fps_median"], "profile": profile}
    finally:
        for viewer in viewers:
            await viewer.close()
        await close_peer_connection(publisher)
        await relay.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="source tree of the old relay (contains hub/)")
    parser.add_argument("--after", default=str(REPO))
    parser.add_argument("--viewers", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=6.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--profile-seconds", type=int, default=8)
    parser.add_argument("--out", default=str(REPO / "bench" / "results" / "fastpath_probe.json"))
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # run as a script: bench.media_peers comes from this checkout
    packets_per_s = 53.9  # the clip's video packets per second (bench/relay.py measures it)
    profile_dir = Path(args.out).parent if args.profile else None
    runs = []
    for repeat in range(args.repeats):
        for label, src in (("before", args.before), ("after", args.after)):
            run = await run_system(label, src, args.viewers, args, profile_dir if repeat == 0 else None)
            run["repeat"] = repeat
            runs.append(run)
            print(f"repeat {repeat + 1} {label:6}: idle {run['idle_cores'] * 100:5.2f} %  N={args.viewers} "
                  f"{run['loaded_cores'] * 100:5.2f} %  per viewer {run['per_viewer_cores'] * 100:.3f} % "
                  f"({run['per_viewer_cores'] * 1e6 / packets_per_s:.1f} µs/packet)  "
                  f"fps min {run['fps_min']:.1f} median {run['fps_median']:.1f}", flush=True)
    summary = {}
    for label in ("before", "after"):
        per = [r["per_viewer_cores"] for r in runs if r["system"] == label]
        summary[label] = {"per_viewer_median_pct": statistics.median(per) * 100,
                          "per_viewer_min_pct": min(per) * 100, "per_viewer_max_pct": max(per) * 100,
                          "us_per_packet_median": statistics.median(per) * 1e6 / packets_per_s}
    after = [r for r in runs if r["system"] == "after"]
    before = [r for r in runs if r["system"] == "before"]
    ratios = [a["per_viewer_cores"] / b["per_viewer_cores"] for a, b in zip(after, before, strict=True)]
    summary["after_over_before"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    print(json.dumps(summary, indent=1))
    for run in runs:
        if run["profile"]:
            print(f"\npy-spy own time, {run['system']}, N={args.viewers}:")
            for frame, share in run["profile"][:12]:
                print(f"  {share * 100:5.1f} %  {frame}")
    Path(args.out).write_text(json.dumps({"args": vars(args), "runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        asyncio.run(serve(sys.argv[2]))
    else:
        asyncio.run(main())
