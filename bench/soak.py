"""Soak: the Jember load for a long while, watching the hub for leaks (not part of CI).

    .venv/bin/python bench/soak.py [--minutes 30] [--publishers 3] [--viewers 3] [--flap-s 5]

A hub process (memory backend, the 303-station registry) serves presence-only agents for
every station, a few test-pattern publishers with WHEP viewers, and a station that flaps
(stops and starts) every ``--flap-s`` seconds. Every 10 s the hub's ``/metrics`` is sampled:
resident memory, open file descriptors, asyncio tasks, stations by state. The result is the
first and last five minutes' medians and a least-squares slope per hour for each, written to
``bench/results/soak.json``; flat means no leak.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

# Run as a script (``python bench/soak.py``, as documented), not only with ``-m`` from the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc.mediastreams import MediaStreamError

from bench.common import (
    http_client,
    install_cleanup,
    log,
    metrics_text,
    mint_tokens,
    raise_fd_limit,
    start_hub,
    station_ids,
    stop,
    temp_dir,
    write_result,
)
from clients.agent import Agent
from clients.config import config_from_mapping
from hub.media.seams_peers import close_peer_connection, new_peer_connection

SAMPLE_S = 10.0
METRIC = re.compile(r'^jaga_(process|stations)\{(?:resource|state)="([a-z_]+)"\} ([0-9.e+]+)$', re.M)


def agent(workdir: Path, port: int, station: str, token: str, media: bool) -> Agent:
    token_file = workdir / "tokens" / station
    token_file.parent.mkdir(exist_ok=True)
    token_file.write_text(token)
    config = config_from_mapping({
        "hub": f"http://127.0.0.1:{port}", "station": station, "token_file": str(token_file), "source": "test",
        "always_on": True, "media": media, "control_port": 0, "status_s": 3600,
        "video": {"width": 320, "height": 180, "fps": 10, "bitrate_kbps": 300},
        "network": {"host_addresses": ["127.0.0.1"], "backoff_base_s": 1.0, "backoff_cap_s": 10.0},
    }, base_dir=str(workdir))
    return Agent(config)


async def viewer(port: int, station: str, frames: list[int], index: int) -> None:
    """A WHEP viewer that counts frames without decoding and rejoins if it loses the stream."""
    while True:
        pc = new_peer_connection(())
        pc.addTransceiver("video", direction="recvonly")

        @pc.on("track")
        def on_track(track: Any) -> None:
            async def count() -> None:
                try:
                    while True:
                        await track.recv()
                        frames[index] += 1
                except MediaStreamError:
                    pass  # the publisher went away: the outer loop rejoins
            asyncio.ensure_future(count())

        await pc.setLocalDescription(await pc.createOffer())
        async with http_client() as http:
            answer = await http.post(f"http://127.0.0.1:{port}/whep/{station}", content=pc.localDescription.sdp,
                                     headers={"Content-Type": "application/sdp"})
        if answer.status_code == 201:
            from aiortc import RTCSessionDescription

            await pc.setRemoteDescription(RTCSessionDescription(answer.text, "answer"))
            while pc.connectionState not in ("failed", "closed"):
                await asyncio.sleep(1)
        await close_peer_connection(pc)
        await asyncio.sleep(2)


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    denominator = sum((x - mx) ** 2 for x in xs) or 1.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / denominator * 3600


async def soak(minutes: float, publishers: int, viewers: int, flap_s: float) -> dict[str, Any]:
    raise_fd_limit()
    workdir = temp_dir("jaga-soak")
    proc, port, config = await start_hub(workdir, presence={"heartbeat_s": 5, "timeout_s": 30})
    ids = station_ids()
    tokens = mint_tokens(config, ids)
    rng = random.Random(7)
    agents = {sid: agent(workdir, port, sid, tokens[sid], media=i < publishers) for i, sid in enumerate(ids)}
    for one in agents.values():
        await one.start()
    frames = [0] * viewers
    viewer_tasks = [asyncio.ensure_future(viewer(port, ids[i % publishers], frames, i)) for i in range(viewers)]
    samples: list[dict[str, float]] = []
    started = time.monotonic()
    next_flap = started + flap_s
    flaps = 0
    async with http_client(base_url=f"http://127.0.0.1:{port}") as http:
        while time.monotonic() - started < minutes * 60:
            text = await metrics_text(http, "")
            sample = {f"{kind}.{name}": float(value) for kind, name, value in METRIC.findall(text)}
            sample["t"] = time.monotonic() - started
            sample["viewer_frames"] = float(sum(frames))
            samples.append(sample)
            log(f"soak t={sample['t']:.0f}s rss={sample.get('process.rss_bytes', 0) / 2**20:.1f}MiB "
                f"fds={sample.get('process.open_fds', 0):.0f} tasks={sample.get('process.asyncio_tasks', 0):.0f} "
                f"online={sample.get('stations.online', 0):.0f} live={sample.get('stations.live', 0):.0f} "
                f"frames={sum(frames)} flaps={flaps}")
            deadline = time.monotonic() + SAMPLE_S
            while time.monotonic() < deadline:
                if time.monotonic() >= next_flap:
                    sid = rng.choice(ids[publishers:])
                    await agents[sid].stop()
                    agents[sid] = agent(workdir, port, sid, tokens[sid], media=False)
                    await agents[sid].start()
                    flaps += 1
                    next_flap += flap_s
                await asyncio.sleep(0.5)
    for task in viewer_tasks:
        task.cancel()
    await asyncio.gather(*(a.stop() for a in agents.values()), return_exceptions=True)
    await stop(proc)
    return summarise(samples, minutes, publishers, viewers, flaps)


def summarise(samples: list[dict[str, float]], minutes: float, publishers: int, viewers: int,
              flaps: int) -> dict[str, Any]:
    window = 300.0 if minutes >= 15 else minutes * 60 / 3
    result: dict[str, Any] = {"minutes": minutes, "stations": 303, "publishers": publishers, "viewers": viewers,
                              "flaps": flaps, "samples": samples, "series": {}}
    for key in ("process.rss_bytes", "process.open_fds", "process.asyncio_tasks"):
        points = [(s["t"], s[key]) for s in samples if key in s]
        if not points:
            continue
        end = points[-1][0]
        first = [v for t, v in points if t <= window]
        last = [v for t, v in points if t >= end - window]
        result["series"][key] = {"first_median": statistics.median(first), "last_median": statistics.median(last),
                                 "slope_per_hour": slope_per_hour(points)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--publishers", type=int, default=3)
    parser.add_argument("--viewers", type=int, default=3)
    parser.add_argument("--flap-s", type=float, default=5)
    args = parser.parse_args()
    install_cleanup()
    result = asyncio.run(soak(args.minutes, args.publishers, args.viewers, args.flap_s))
    path = write_result("soak", result)
    for key, series in result["series"].items():
        print(f"{key}: first {series['first_median']:.0f}, last {series['last_median']:.0f}, "
              f"slope {series['slope_per_hour']:+.1f}/h")
    print(f"flaps {result['flaps']}; written to {path}")


if __name__ == "__main__":
    main()
