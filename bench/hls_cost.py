"""HLS packaging: the hub's CPU for packaging one H.264 station into LL-HLS, against relaying it.

One hub process (``python -m hub serve``, memory backend, ``hls.idle_s`` 2 s so that packaging
stops soon after the client does, relay thumbnails and recording off) and **one publisher**
in its own process (``python -m bench.hls_cost publisher``): an aiortc WHIP sender replaying
pre-encoded media, so no encoder runs and every run sends the same bytes:

* video: the relay benchmark's pictures as H.264 (:func:`bench.media_peers.load_h264_clip`:
  libx264 constrained baseline, zerolatency, no B-frames, an IDR every 2 s, ≈ 490 kbps,
  640×360 @ 15 fps), packetized by aiortc's H.264 packetizer (STAP-A / FU-A);
* audio: 20 ms Opus packets at 32 kbps of a speech-like signal (:func:`bench.aac_cost.opus_packets`),
  as a browser sends them. The hub turns them into AAC for HLS: the only transcoding.

The HLS client is in this process and plays like an LL-HLS player at the live edge: the first
``index.m3u8`` starts packaging, then it asks for the playlist blocked on the part the preload
hint names (``_HLS_msn``/``_HLS_part``) and fetches every new part (≈ 2 requests of each a
second with 0.5 s parts), once the init segment.

Windows of the hub's CPU, all threads, from ``/proc/PID/task/*/schedstat`` (as
:mod:`bench.recording`), per repeat alternating (relay, hls / hls, relay / …):

* **idle** — before the publisher connects;
* **relay** — the publisher on, nothing packaged (``jaga_hls_packaged`` 0);
* **hls** — the publisher on and the client playing (after it got its first parts).

Then, per repeat: relay CPU = relay − idle; packaging CPU = hls − relay; ratio = packaging ÷
relay. The packagers' own batches (remux and AAC) are timed by the hub
(``jaga_hls_cpu_seconds_total``, thread time); packaging − that = serving the HTTP requests.
Unless ``--no-video-only``, each repeat then publishes again **without audio** and measures
relay and hls once more: own batches with audio − without ≈ what the AAC transcoding costs.

    python -m bench.hls_cost [--repeats 3] [--window 20] [--no-video-only] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import re
import sys
import time
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.stream import Stream

from bench.common import (
    Worker,
    fmt,
    fmt_spread,
    http_client,
    install_cleanup,
    log,
    mint_tokens,
    serve_worker,
    start_hub,
    station_ids,
    stop,
    summary,
    temp_dir,
    write_result,
)
from bench.recording import metric, window

PLAYING_S = 2.0  # the client plays this long before a window starts (packaging settled)
OPUS_MS = 20
HINT = re.compile(r'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="[^"]*?p(\d+)\.(\d+)\.m4s"')
PART = re.compile(r'#EXT-X-PART:[^\n]*URI="([^"]+)"')
MAP = re.compile(r'#EXT-X-MAP:URI="([^"]+)"')


# ---------------------------------------------------------------- the publisher (its own process)

class OpusTrack(MediaStreamTrack):
    """Replays 20 ms Opus packets in a loop as av.Packets, paced on its own clock (aiortc's
    sender only packs them)."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self.packets = packets
        self.count = 0
        self.start: float | None = None

    async def recv(self) -> av.Packet[Stream]:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        delay = self.start + self.count * OPUS_MS / 1000 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        packet = av.Packet(self.packets[self.count % len(self.packets)])
        packet.pts = self.count * 48 * OPUS_MS
        packet.time_base = fractions.Fraction(1, 48000)
        self.count += 1
        return packet


class Publisher:
    """One aiortc WHIP publisher of the H.264 clip, with or without the Opus audio."""

    def __init__(self) -> None:
        from bench.aac_cost import opus_packets
        from bench.media_peers import load_h264_clip

        self.clip = load_h264_clip()
        self.opus = opus_packets(10)
        self.pc: Any = None

    async def publish(self, base: str, station: str, token: str, audio: bool) -> dict[str, Any]:
        from aiortc import RTCRtpSender, RTCSessionDescription

        from bench.media_peers import ClipTrack, local_offer
        from bench.rtcload import wait_connected
        from hub.media.seams_peers import new_peer_connection

        await self.close_all()
        self.pc = pc = new_peer_connection(())
        video = pc.addTransceiver(ClipTrack(self.clip), direction="sendonly")
        video.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("video").codecs
                                   if c.mimeType.lower() in ("video/h264", "video/rtx")])
        if audio:
            sound = pc.addTransceiver(OpusTrack(self.opus), direction="sendonly")
            sound.setCodecPreferences([c for c in RTCRtpSender.getCapabilities("audio").codecs
                                       if c.mimeType.lower() == "audio/opus"])
        offer = await local_offer(pc)
        async with http_client(timeout=30) as http:
            response = await http.post(f"{base}/whip/{station}", content=offer,
                                       headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
        if response.status_code != 201:
            raise RuntimeError(f"WHIP {response.status_code}: {response.text[:200]}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
        return {"connected": await wait_connected(pc)}

    async def close_all(self) -> dict[str, Any]:
        from hub.media.seams_peers import close_peer_connection

        if self.pc is not None:
            await close_peer_connection(self.pc)
            self.pc = None
        return {}


# ---------------------------------------------------------------- the HLS client (this process)

class Player:
    """An LL-HLS player at the live edge: blocking playlist requests, every new part fetched."""

    def __init__(self, http: Any, base: str, station: str) -> None:
        self.http, self.url = http, f"{base}/hls/{station}/"
        self.fetched: set[str] = set()
        self.counts = {"playlists": 0, "parts": 0, "bytes": 0, "errors": 0}
        self.task: asyncio.Task[None] | None = None
        self.last_playlist = ""

    def start(self) -> None:
        self.task = asyncio.create_task(self._play())

    async def _play(self) -> None:
        params: dict[str, int] = {}
        first = True
        while True:
            response = await self.http.get(self.url + "index.m3u8", params=params)
            self.counts["playlists"] += 1
            if response.status_code != 200:
                self.counts["errors"] += 1
                await asyncio.sleep(0.5)
                params = {}
                continue
            text = self.last_playlist = response.text
            if first and (found := MAP.search(text)):
                await self._fetch(found.group(1))
            parts = PART.findall(text)
            for uri in parts[-2:] if first else parts:  # a player starts near the live edge
                if uri not in self.fetched:
                    await self._fetch(uri)
            first = False
            hint = HINT.search(text)
            params = {"_HLS_msn": int(hint.group(1)), "_HLS_part": int(hint.group(2))} if hint else {}

    async def _fetch(self, uri: str) -> None:
        response = await self.http.get(self.url + uri)
        self.fetched.add(uri)
        if response.status_code == 200:
            self.counts["parts"] += 1
            self.counts["bytes"] += len(response.content)
        else:
            self.counts["errors"] += 1

    async def playing(self, parts: int, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.counts["parts"] < parts:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the player got {self.counts} in {timeout:g} s")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except BaseException:
                pass
            self.task = None


# ---------------------------------------------------------------- the run

async def packaged(http: Any, base: str) -> float:
    return await metric(http, base, "jaga_hls_packaged")


async def hls_cpu_s(http: Any, base: str) -> float:
    return await metric(http, base, "jaga_hls_cpu_seconds_total")


async def not_packaging(http: Any, base: str, timeout: float = 20) -> None:
    """Until the hub has stopped packaging (idle_s after the last request, on its 1 s tick)."""
    deadline = time.monotonic() + timeout
    while await packaged(http, base):
        if time.monotonic() > deadline:
            raise TimeoutError("the hub still packages")
        await asyncio.sleep(0.25)


async def measure(args: argparse.Namespace, http: Any, base: str, pid: int, station: str,
                  mode: str) -> dict[str, Any]:
    player = None
    if mode == "hls":
        player = Player(http, base, station)
        player.start()
        await player.playing(3)
        await asyncio.sleep(PLAYING_S)
    else:
        await not_packaging(http, base)
    f0, h0 = await metric(http, base, r'jaga_media\{counter="frames_received"\}'), await hls_cpu_s(http, base)
    c0 = dict(player.counts) if player else {}
    cores = await window(pid, args.window)
    seconds = cores["seconds"]
    measured: dict[str, Any] = {
        **cores, "mode": mode,
        "fps": (await metric(http, base, r'jaga_media\{counter="frames_received"\}') - f0) / seconds,
        "own": (await hls_cpu_s(http, base) - h0) / seconds}
    if player is not None:
        measured.update({f"client_{k}_per_s": (v - c0[k]) / seconds for k, v in player.counts.items()})
        durations = [float(d) for d in re.findall(r"#EXT-X-PART:DURATION=([0-9.]+)", player.last_playlist)]
        measured["part_s"] = sum(durations) / len(durations) if durations else None
        measured["playlist"] = player.last_playlist
        await player.stop()
    return measured


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = temp_dir("bench-hls-")
    proc, port, config = await start_hub(workdir, media={"thumbnail_s": 0}, recording={"enabled": False},
                                         hls={"idle_s": 2.0})
    base = f"http://127.0.0.1:{port}"
    station = station_ids()[0]  # a public kecamatan
    token = (await asyncio.to_thread(mint_tokens, config, [station]))[station]
    out: dict[str, Any] = {"station": station, "windows": []}
    worker: Worker | None = None
    try:
        async with http_client(timeout=30) as http:
            await asyncio.sleep(args.settle)
            out["idle"] = await window(proc.pid, args.window)
            log(f"idle {out['idle']['cores'] * 100:.3f} %")
            worker = await Worker.start("-m", "bench.hls_cost", "publisher", log=workdir / "publisher.log")
            variants = ("av", "video") if args.video_only else ("av",)
            for rep in range(args.repeats):
                for variant in variants:
                    reply = await worker.call("publish", timeout=60, base=base, station=station, token=token,
                                              audio=variant == "av")
                    assert reply["connected"], reply
                    await asyncio.sleep(args.settle + 1)  # ICE, DTLS, the first keyframe (the clip is pre-encoded)
                    for mode in (("relay", "hls") if rep % 2 == 0 else ("hls", "relay")):
                        measured = {**await measure(args, http, base, proc.pid, station, mode),
                                    "repeat": rep, "variant": variant}
                        out["windows"].append(measured)
                        log(f"repeat {rep + 1} {variant:5} {mode:5} {measured['cores'] * 100:.3f} % "
                            f"(ticks {measured['cores_ticks'] * 100:.2f} %) own {measured['own'] * 100:.3f} % "
                            f"{measured['fps']:.1f} frames/s"
                            + (f", client {measured['client_parts_per_s']:.2f} parts/s "
                               f"{measured['client_bytes_per_s'] * 8 / 1000:.0f} kbps" if mode == "hls" else ""))
                    await worker.call("close_all")
                    await not_packaging(http, base)
    finally:
        if worker is not None:
            await worker.close("close_all")
        await stop(proc)
    return out


# ---------------------------------------------------------------- the tables

def per_repeat(out: dict[str, Any], variant: str) -> list[dict[str, dict[str, Any]]]:
    by_rep: dict[int, dict[str, dict[str, Any]]] = {}
    for w in out["windows"]:
        if w["variant"] == variant:
            by_rep.setdefault(w["repeat"], {})[w["mode"]] = w
    return [r for r in by_rep.values() if len(r) == 2]


def figures(out: dict[str, Any], variant: str) -> dict[str, Any]:
    idle = out["idle"]["cores"]
    reps = per_repeat(out, variant)
    relay = [r["relay"]["cores"] - idle for r in reps]
    packaging = [r["hls"]["cores"] - r["relay"]["cores"] for r in reps]
    own = [r["hls"]["own"] for r in reps]
    return {
        "relay": summary(list(relay)), "packaging": summary(list(packaging)), "own": summary(list(own)),
        "serving": summary([p - o for p, o in zip(packaging, own, strict=True)]),
        "ratio": summary([p / rl if rl > 0 else None for p, rl in zip(packaging, relay, strict=True)]),
        "own_ratio": summary([o / rl if rl > 0 else None for o, rl in zip(own, relay, strict=True)]),
        "parts_per_s": summary([r["hls"]["client_parts_per_s"] for r in reps]),
        "part_s": summary([r["hls"].get("part_s") for r in reps]),
        "kbps": summary([r["hls"]["client_bytes_per_s"] * 8 / 1000 for r in reps]),
        "playlists_per_s": summary([r["hls"]["client_playlists_per_s"] for r in reps]),
        "errors": sum(r["hls"]["client_errors_per_s"] * r["hls"]["seconds"] for r in reps),
        "fps": summary([w["fps"] for r in reps for w in r.values()]),
        "repeats": len(reps),
    }


def pct(s: dict[str, Any], digits: int = 2, by: float = 100) -> str:
    return fmt_spread({**s, "median": s["median"] * by if s["median"] is not None else None,
                       "min": s["min"] * by if s["min"] is not None else None,
                       "max": s["max"] * by if s["max"] is not None else None}, digits)


def render(out: dict[str, Any], args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    idle = out["idle"]["cores"]
    av = figures(out, "av")
    agg: dict[str, Any] = {"idle": idle, "av": av}
    columns = [("H.264 + Opus→AAC", av)]
    if args.video_only:
        video = figures(out, "video")
        agg["video"] = video
        columns.append(("H.264 only (no audio)", video))
        pairs = [(a["hls"]["own"], v["hls"]["own"]) for a, v in zip(per_repeat(out, "av"), per_repeat(out, "video"),
                                                                    strict=False)]
        agg["aac_own"] = summary([a - v for a, v in pairs])
        agg["aac_share"] = summary([(a - v) / a if a > 0 else None for a, v in pairs])
    head = " | ".join(name for name, _ in columns)
    lines = [
        f"One publisher (aiortc, pre-encoded: H.264 {out['clip_kbps']:.0f} kbps 640×360 @ 15 fps, IDR every 2 s; "
        f"Opus 32 kbps), one LL-HLS client (0.5 s parts, 2 s segments); hub CPU as % of one core (schedstat, "
        f"all threads), {args.window:g} s windows, median over repeats (min–max), differences and ratios per repeat:",
        "",
        f"| measure | {head} |",
        "|---|" + "---|" * len(columns),
        f"| hub idle (no publisher) | {fmt(idle * 100, 3)} % |" + " |" * (len(columns) - 1),
    ]

    def row(label: str, key: str, digits: int = 2, unit: str = " %", by: float = 100) -> None:
        lines.append(f"| {label} | " + " | ".join(f"{pct(c[key], digits, by)}{unit}" for _, c in columns) + " |")

    row("relay CPU for the publisher (relay − idle)", "relay")
    row("**packaging CPU (hls − relay, same repeat)**", "packaging")
    row("packagers' own batches (`jaga_hls_cpu_seconds_total`)", "own")
    row("serving the HTTP requests (packaging − own batches)", "serving")
    row("**packaging ÷ relay CPU (per repeat)**", "ratio", 2, "", 1)
    row("own batches ÷ relay CPU (per repeat)", "own_ratio", 2, "", 1)
    row("packaging CPU for 64 stations (`hls.max_stations`), cores", "packaging", 2, "", 64)
    row("client: parts / s", "parts_per_s", 2, "", 1)
    row("client: mean part duration in its last playlist, s", "part_s", 3, "", 1)
    row("client: playlist requests / s", "playlists_per_s", 2, "", 1)
    row("client: kbps received", "kbps", 0, "", 1)
    row("frames at the hub / s (video + audio)", "fps", 1, "", 1)
    if args.video_only:
        lines += ["", f"- AAC (own batches with audio − without, per repeat): {pct(agg['aac_own'], 3)} % of a core, "
                      f"{pct(agg['aac_share'], 0)} % of the packagers' own CPU"]
    errors = sum(c["errors"] for _, c in columns)
    lines += [f"- client errors (non-200 answers) in the windows: {errors:.0f}",
              "", "Windows (hub CPU %, schedstat / ticks; own batches %):"]
    for w in out["windows"]:
        lines.append(f"- repeat {w['repeat'] + 1} {w['variant']} {w['mode']}: {w['cores'] * 100:.3f} / "
                     f"{w['cores_ticks'] * 100:.2f}; own {w['own'] * 100:.3f}")
    return "\n".join(lines), agg


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=2.0)
    parser.add_argument("--no-video-only", dest="video_only", action="store_false",
                        help="skip the windows without audio (the AAC split)")
    parser.add_argument("--quick", action="store_true", help="1 repeat, 8 s windows")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.window = 1, 8.0
    started = time.monotonic()
    out = await run(args)
    from bench.media_peers import FPS, load_h264_clip

    clip = load_h264_clip()
    out["clip_kbps"] = sum(len(d) for d, _ in clip) * 8 / (len(clip) / FPS) / 1000
    table, agg = render(out, args)
    path = write_result("hls_cost", {"args": vars(args), "run": out, "summary": agg, "table": table,
                                     "elapsed_s": time.monotonic() - started})
    print(table)
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


async def publisher_main() -> None:
    import logging

    logging.basicConfig(level=logging.ERROR)
    publisher = Publisher()
    await serve_worker({"publish": publisher.publish, "close_all": publisher.close_all})
    await publisher.close_all()


if __name__ == "__main__":
    if sys.argv[1:2] == ["publisher"]:
        asyncio.run(publisher_main())
    else:
        install_cleanup()
        asyncio.run(main())
