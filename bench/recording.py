"""Recording: the hub's CPU for recording one publisher, against what relaying it costs (issue 16).

One hub process (``python -m hub serve``, memory backend, ``[recording]`` into a temp folder,
no disk floor, relay thumbnails off as for stations whose agent sends its own) and **one
publisher**: a light publisher (``bench/loadgen.py publishers``, its own process) replaying the
pre-encoded clip of the relay benchmark (640×360 @ 15 fps VP8, ~490 kbps, video only), and the
station's socket (``/ws/station``, heartbeats) held by this process, which starts and stops an
activity on it: while the activity runs, the hub records (remux to WebM, never a decode).

Windows of the hub's CPU, all threads, read with nanosecond resolution from
``/proc/PID/task/*/schedstat`` (one publisher costs a few ms of CPU a second; the 10 ms ticks of
``/proc/PID/stat`` would not see a recorder's share):

* **idle** — before the publisher connects (the hub's own timers);
* **relay** — the publisher on, no activity;
* **record** — the publisher on and an activity running (after a 2 s settle for the first
  keyframe);

relay and record alternate inside each repeat (relay, record / record, relay / …). Then

    relay CPU for the publisher   = relay − idle
    recorder CPU                  = record − relay   (the same repeat)
    ratio                         = recorder ÷ relay CPU, per repeat (goal ≤ 10 %)

After each record window the activity stops and the recording is finished (the parts remuxed
into one file, in a worker thread); that CPU is measured apart (``finish``) and no window
starts until the file is done. Disk per hour is each finished file's bytes ÷ its duration.

    python -m bench.recording [--repeats 3] [--window 20] [--publisher light|aiortc] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import re
import time
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
    start_hub,
    station_ids,
    stop,
    summary,
    temp_dir,
    write_result,
)
from bench.media_peers import clip_kbps, load_clip

SETTLE_S = 2.0  # after an activity starts: the recorder waits for a keyframe (asked at once)


def cpu_ns(pid: int) -> int:
    """CPU time of every live thread of ``pid``, nanoseconds (schedstat: time on CPU)."""
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/schedstat"):
        try:
            with open(path) as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # a thread that ended between the listing and the read
    return total


async def window(pid: int, seconds: float) -> dict[str, float]:
    """The hub's CPU over ``seconds``: cores busy (precise) and, as a cross-check, ticks."""
    n0, s0, t0 = cpu_ns(pid), cpu_seconds(pid), time.monotonic()
    await asyncio.sleep(seconds)
    n1, s1, t1 = cpu_ns(pid), cpu_seconds(pid), time.monotonic()
    return {"cores": (n1 - n0) / 1e9 / (t1 - t0), "cores_ticks": (s1 - s0) / (t1 - t0), "seconds": t1 - t0}


async def frames_received(http: Any, base: str) -> float:
    return await metric(http, base, r'jaga_media\{counter="frames_received"\}')


async def recorder_cpu_s(http: Any, base: str) -> float:
    """The recorders' own CPU so far, timed by the hub around their batches."""
    return await metric(http, base, "jaga_recording_cpu_seconds_total")


async def metric(http: Any, base: str, pattern: str) -> float:
    text = await metrics_text(http, base)
    found = re.search(rf"^{pattern} ([0-9.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


class StationSocket:
    """The station's own ``/ws/station`` session: hello, heartbeats, activity start and stop."""

    def __init__(self, url: str, station: str, token: str) -> None:
        self.url, self.station, self.token = url, station, token
        self.ws: Any = None
        self._beats: asyncio.Task[None] | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.typing import Subprotocol

        self.ws = await connect(self.url, subprotocols=[Subprotocol("jaga.v1.json")])
        await self.send({"t": "hello", "station": self.station, "token": self.token, "agent": "bench", "version": "0"})
        welcome = json.loads(await self.ws.recv())
        assert welcome["t"] == "welcome", welcome
        self._beats = asyncio.create_task(self._beat(float(welcome.get("heartbeat_s", 5))))

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def _beat(self, every: float) -> None:
        while True:
            await asyncio.sleep(every * 0.8)
            await self.send({"t": "hb"})

    async def close(self) -> None:
        if self._beats:
            self._beats.cancel()
        if self.ws is not None:
            await self.ws.close()


async def finished(http: Any, base: str, station: str, count: int, timeout: float = 60) -> list[dict[str, Any]]:
    """The station's recordings once ``count`` of them are finished (have a ``url``)."""
    deadline = time.monotonic() + timeout
    while True:
        items = (await http.get(f"{base}/api/v1/recordings", params={"station": station})).json()["recordings"]
        done = [r for r in items if r.get("url")]
        if len(done) >= count:
            return done
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(done)}/{count} recordings finished: {items}")
        await asyncio.sleep(0.1)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = temp_dir("bench-recording-")
    proc, port, config = await start_hub(
        workdir, media={"thumbnail_s": 0},
        recording={"dir": str(workdir / "recordings"), "min_free_bytes": 0, "resume_s": 5})
    base = f"http://127.0.0.1:{port}"
    station = station_ids()[0]
    token = (await asyncio.to_thread(mint_tokens, config, [station]))[station]
    out: dict[str, Any] = {"station": station, "windows": [], "finishes": [], "recordings": []}
    socket = StationSocket(f"ws://127.0.0.1:{port}/ws/station", station, token)
    worker: Worker | None = None
    try:
        async with http_client(timeout=30) as http:
            await socket.open()
            await asyncio.sleep(args.settle)
            out["idle"] = await window(proc.pid, args.window)
            log(f"idle {out['idle']['cores'] * 100:.3f} %")
            worker = await Worker.start("-m", "bench.loadgen", "publishers", "--publisher", args.publisher,
                                        log=workdir / "publisher.log")
            reply = await worker.call("publish", timeout=60, base=base, stations={station: token})
            assert reply["connected"] == 1, reply
            await asyncio.sleep(args.settle + 3)  # ICE, DTLS, the first keyframes, the REMB loop
            for rep in range(args.repeats):
                for mode in (("relay", "record") if rep % 2 == 0 else ("record", "relay")):
                    if mode == "record":
                        await socket.send({"t": "activity.start", "title": f"Bench {rep + 1}"})
                        await asyncio.sleep(SETTLE_S)
                    f0, r0 = await frames_received(http, base), await recorder_cpu_s(http, base)
                    cores = await window(proc.pid, args.window)
                    seconds = cores["seconds"]
                    measured: dict[str, Any] = {**cores, "mode": mode, "repeat": rep,
                                                "fps": (await frames_received(http, base) - f0) / seconds,
                                                "recorder_own": (await recorder_cpu_s(http, base) - r0) / seconds}
                    out["windows"].append(measured)
                    log(f"repeat {rep + 1} {mode:6} {measured['cores'] * 100:.3f} % "
                        f"(ticks {measured['cores_ticks'] * 100:.2f} %) {measured['fps']:.1f} fps")
                    if mode == "record":
                        n0, t0 = cpu_ns(proc.pid), time.monotonic()
                        await socket.send({"t": "activity.stop"})
                        done = await finished(http, base, station, rep + 1)
                        out["finishes"].append({"cpu_s": (cpu_ns(proc.pid) - n0) / 1e9,
                                                "wall_s": time.monotonic() - t0})
                        out["recordings"] = done
                        await asyncio.sleep(args.settle)
    finally:
        if worker is not None:
            await worker.close("close_all")
        await socket.close()
        await stop(proc)
    return out


def scaled(values: list[float | None], by: float) -> dict[str, Any]:
    return summary([v * by for v in values if v is not None])


def render(out: dict[str, Any], args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    idle = out["idle"]["cores"]
    by_rep: dict[int, dict[str, dict[str, Any]]] = {}
    for w in out["windows"]:
        by_rep.setdefault(w["repeat"], {})[w["mode"]] = w
    relay: list[float | None] = [r["relay"]["cores"] - idle for r in by_rep.values() if "relay" in r]
    recorder: list[float | None] = [r["record"]["cores"] - r["relay"]["cores"] for r in by_rep.values() if len(r) == 2]
    ratio: list[float | None] = [(r["record"]["cores"] - r["relay"]["cores"]) / (r["relay"]["cores"] - idle)
             for r in by_rep.values() if len(r) == 2 and r["relay"]["cores"] > idle]
    own: list[float | None] = [r["record"]["recorder_own"] for r in by_rep.values() if "record" in r]
    own_ratio: list[float | None] = [r["record"]["recorder_own"] / (r["relay"]["cores"] - idle)
                                     for r in by_rep.values() if len(r) == 2 and r["relay"]["cores"] > idle]
    files = out["recordings"]
    per_hour: list[float | None] = [r["bytes"] / r["duration_s"] * 3600 for r in files if r.get("duration_s")]
    in_order = sorted(files, key=lambda r: r["start"])
    finish: list[float | None] = [f["cpu_s"] / r["duration_s"]
                                  for f, r in zip(out["finishes"], in_order, strict=False) if r.get("duration_s")]
    fps = summary([w["fps"] for w in out["windows"]])
    agg = {"idle": idle, "relay": summary(relay), "recorder": summary(recorder), "ratio": summary(ratio),
           "recorder_own": summary(own), "own_ratio": summary(own_ratio),
           "bytes_per_hour": summary(per_hour), "finish_cpu_per_recorded_s": summary(finish), "fps": fps}
    lines = [
        f"One publisher ({args.publisher}, clip {out['clip_kbps']:.0f} kbps VP8, video only), hub CPU as % of one core "
        f"(schedstat, all threads), {args.window:g} s windows, median over {len(by_rep)} repeats (min–max); "
        f"frames at the hub {fmt_spread(fps, 1)} fps:",
        "",
        "| measure | value |",
        "|---|---|",
        f"| hub idle (no publisher) | {fmt(idle * 100, 3)} % |",
        f"| relay CPU for the publisher (relay − idle) | {fmt_spread(scaled(relay, 100), 3)} % |",
        f"| recorder CPU (record − relay, same repeat) | {fmt_spread(scaled(recorder, 100), 3)} % |",
        f"| **recorder ÷ relay CPU (per repeat; goal ≤ 0.10)** | **{fmt_spread(summary(ratio), 3)}** |",
        f"| recorder's own batches, timed by the hub (`jaga_recording_cpu_seconds_total`) | "
        f"{fmt_spread(scaled(own, 100), 4)} % |",
        f"| **recorder's own batches ÷ relay CPU (per repeat)** | **{fmt_spread(summary(own_ratio), 3)}** |",
        f"| finishing (remux of the parts into one file), CPU per recorded second | "
        f"{fmt_spread(scaled(finish, 1000), 2)} ms |",
        f"| disk per hour of recording (finished file bytes ÷ duration) | "
        f"{fmt_spread(scaled(per_hour, 1e-6), 0)} MB |",
    ]
    lines += ["", "Windows (hub CPU %, schedstat / ticks):"]
    for w in out["windows"]:
        lines.append(f"- repeat {w['repeat'] + 1} {w['mode']}: {w['cores'] * 100:.3f} / {w['cores_ticks'] * 100:.2f}"
                     f" ({w['fps']:.1f} fps)")
    return "\n".join(lines), agg


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--publisher", choices=("light", "aiortc"), default="light")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 8 s windows")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.window = 1, 8.0
    started = time.monotonic()
    out = await run(args)
    out["clip_kbps"] = clip_kbps(load_clip())
    table, agg = render(out, args)
    path = write_result("recording", {"args": vars(args), "run": out, "summary": agg, "table": table,
                                      "elapsed_s": time.monotonic() - started})
    print(table)
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    install_cleanup()
    asyncio.run(main())
