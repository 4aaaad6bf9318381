"""The office PC's cost of H.264 against VP8: the agent's own encoder path, no network.

The same frames go, for each quality level L0..L2 of the default ``[video]`` (clients/quality.py)
and each codec, through what the agent runs between its source and RTP: ``LevelledVideo``
(scaled, frame rate thinned) and aiortc's ``Vp8Encoder`` / ``H264Encoder`` as the sender
builds it, under the agent's ``RateControl`` (clients/rtc.py seam 2: the level's target,
H.264's 30 / fps scaling and its VBV), packetized. Measured per run:

* **CPU**: process CPU seconds (``time.process_time``: every thread, so libvpx's and x264's
  too) spent in that path per second of video encoded (frames ÷ the level's fps); 0.05 = 5 %
  of one core. The frames are made before the clock starts; runs go as fast as the CPU allows
  (not paced), one at a time.
* **kbps**: RTP payload bytes out ÷ seconds of video, the whole run; **peak**: the busiest
  second of video (by the frames' timestamps).

Sources, 640×360 @ 15 fps: **busy** — FFmpeg's ``testsrc2``, a 10 s clip looped (the clip the
ladder's rates in docs/station.md were measured on); **pattern** — clients/pattern.py's test
pattern (``--source test``, the demo); **still→busy** — the busy clip's first picture for
10 s, then the clip: an office where nothing moved and then someone walks in (an encoder
that saved bits on the still picture must not spend them all at once). Codec order alternates
per repeat (VP8 first, then H.264 first); ``--no-vbv`` leaves out the agent's H.264 VBV (what
aiortc alone does), for comparison.

    python -m bench.agent_codec [--repeats 3] [--seconds 20] [--no-vbv] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import time
from collections.abc import Callable
from typing import Any

import aiortc.rtcrtpsender
import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from bench.common import fmt, fmt_spread, log, summary, write_result
from clients import rtc
from clients.config import VideoConfig
from clients.pattern import PatternLayout, render
from clients.quality import Level, ladder
from clients.quality_track import LevelledVideo

DEFAULT = VideoConfig()
WIDTH, HEIGHT, FPS, BITRATE = DEFAULT.width, DEFAULT.height, DEFAULT.fps, DEFAULT.bitrate_kbps * 1000
CLIP_S = 10
CODECS = ("VP8", "H264")
SOURCES = ("busy", "pattern", "still→busy")


# ---------------------------------------------------------------- sources (made before timing)

def _busy() -> list[av.VideoFrame]:
    container = av.open(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}:duration={CLIP_S}", format="lavfi")
    try:
        return [frame.reformat(format="yuv420p") for frame in container.decode(video=0)]
    finally:
        container.close()


def _pattern() -> list[av.VideoFrame]:
    probe = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    layout = PatternLayout(WIDTH, HEIGHT, probe.planes[0].line_size, probe.planes[1].line_size)
    frames = []
    for index in range(CLIP_S * FPS):
        clock = f"2026-03-02 08:00:{index // FPS:02d} WIB"  # the clock changes once a second, as live
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane, data in zip(frame.planes, render(layout, index, FPS, clock, "35.09.01.2001 KANTOR CAMAT"),
                               strict=True):
            plane.update(data)
        frames.append(frame)
    return frames


def _still(picture: av.VideoFrame) -> list[av.VideoFrame]:
    frames = []
    for _ in range(CLIP_S * FPS):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        for plane, data in zip(frame.planes, picture.planes, strict=True):
            plane.update(bytes(data))
        frames.append(frame)
    return frames


class _Replay(MediaStreamTrack):
    """The source: ``frames`` looped for ``count`` frames, stamped 1/FPS apart, unpaced."""

    kind = "video"

    def __init__(self, frames: list[av.VideoFrame], count: int, loop_from: int = 0) -> None:
        super().__init__()
        self.frames, self.count, self.loop_from, self.index = frames, count, loop_from, 0

    async def recv(self) -> av.VideoFrame:
        if self.index >= self.count:
            raise MediaStreamError
        i, n = self.index, len(self.frames)
        frame = self.frames[i if i < n else self.loop_from + (i - n) % (n - self.loop_from)]
        frame.pts, frame.time_base = i, fractions.Fraction(1, FPS)
        self.index += 1
        return frame


# ---------------------------------------------------------------- one run

def _encoder(codec: str, level: Level) -> Any:
    """The encoder aiortc's sender builds for ``codec``, through the name the agent's seam
    wraps (``get_encoder`` in aiortc.rtcrtpsender), at ``level``'s target."""
    control = rtc.RateControl(BITRATE, fps=FPS)
    control.set_target(level.bitrate_bps, level.fps)
    parameters = RTCRtpCodecParameters(mimeType=f"video/{codec}", clockRate=90000, payloadType=96)
    with rtc.rate_control(control):  # installs the wrapper, then builds under the control
        return vars(aiortc.rtcrtpsender)["get_encoder"](parameters)


async def encode_run(frames: list[av.VideoFrame], loop_from: int, codec: str, level: Level,
                     seconds: float) -> dict[str, Any]:
    track = LevelledVideo(_Replay(frames, round(seconds * FPS), loop_from), level)
    encoder = _encoder(codec, level)
    per_second: dict[int, int] = {}
    sent = total = 0
    cpu0 = time.process_time()
    while True:
        try:
            frame = await track.recv()
        except MediaStreamError:
            break
        payloads, _ = encoder.encode(frame)
        size = sum(len(p) for p in payloads)
        assert frame.pts is not None and frame.time_base is not None  # _Replay stamps every frame
        second = int(frame.pts * frame.time_base)
        per_second[second] = per_second.get(second, 0) + size
        sent, total = sent + 1, total + size
    cpu = time.process_time() - cpu0
    video_s = sent / level.fps
    return {"frames": sent, "cpu_per_s": cpu / video_s, "kbps": total * 8 / video_s / 1000,
            "peak_kbps": max(per_second.values()) * 8 / 1000}


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    busy = _busy()
    sources: dict[str, tuple[list[av.VideoFrame], int]] = {
        "busy": (busy, 0), "pattern": (_pattern(), 0), "still→busy": (_still(busy[0]) + busy, len(busy))}
    levels = [level for level in ladder(WIDTH, HEIGHT, FPS, BITRATE) if level.video]
    runs = []
    for repeat in range(args.repeats):
        order = CODECS if repeat % 2 == 0 else CODECS[::-1]
        for source, (frames, loop_from) in sources.items():
            for level in levels:
                for codec in order:
                    result = await encode_run(frames, loop_from, codec, level, args.seconds)
                    runs.append({"repeat": repeat, "source": source, "level": level.name,
                                 "picture": level.picture(), "target_kbps": level.bitrate_bps // 1000,
                                 "codec": codec, **result})
                    log(f"repeat {repeat + 1} {source} {level.name} {codec}: {result['kbps']:.0f} kbps "
                        f"(peak {result['peak_kbps']:.0f}), {result['cpu_per_s'] * 100:.1f} % of a core")
    return runs


# ---------------------------------------------------------------- the table

def render_table(runs: list[dict[str, Any]], args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    def pick(source: str, level: str, codec: str, key: str) -> list[float | None]:
        return [r[key] for r in runs if (r["source"], r["level"], r["codec"]) == (source, level, codec)]

    repeats = sorted({r["repeat"] for r in runs})
    lines = [
        f"The agent's encoder path, {args.seconds:g} s of video per run, median of {len(repeats)} repeats "
        f"(min–max); CPU in % of one core per second of video{' (H.264 without the VBV)' if args.no_vbv else ''}:",
        "",
        "| source | level | target | VP8 kbps (peak 1 s) | H.264 kbps (peak 1 s) | VP8 CPU % | H.264 CPU % "
        "| **H.264 ÷ VP8 CPU** |",
        "|---|---|---|---|---|---|---|---|",
    ]
    agg: dict[str, Any] = {}
    for source in SOURCES:
        for level in sorted({r["level"] for r in runs}):
            first = next(r for r in runs if r["level"] == level)
            cells = {}
            for codec in CODECS:
                kbps = summary(pick(source, level, codec, "kbps"))
                peak = summary(pick(source, level, codec, "peak_kbps"))
                cpu = summary(pick(source, level, codec, "cpu_per_s"))
                cells[codec] = (f"{fmt(kbps['median'])} ({fmt(peak['median'])})", fmt_spread(cpu, 1, 100))
                agg[f"{source}/{level}/{codec}"] = {"kbps": kbps, "peak_kbps": peak, "cpu_per_s": cpu}
            ratios: list[float | None] = []
            for repeat in repeats:
                by_codec = {r["codec"]: r["cpu_per_s"] for r in runs
                            if (r["repeat"], r["source"], r["level"]) == (repeat, source, level)}
                ratios.append(by_codec["H264"] / by_codec["VP8"] if by_codec.get("VP8") else None)
            ratio = summary(ratios)
            agg[f"{source}/{level}/ratio"] = ratio
            lines.append(f"| {source} | {level} {first['picture']} | {first['target_kbps']} kbps | {cells['VP8'][0]} | "
                         f"{cells['H264'][0]} | {cells['VP8'][1]} | {cells['H264'][1]} | **{fmt_spread(ratio, 2)}** |")
    return "\n".join(lines), agg


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of video per run")
    parser.add_argument("--no-vbv", action="store_true", help="H.264 as aiortc opens it (no VBV), for comparison")
    parser.add_argument("--quick", action="store_true", help="1 repeat")
    args = parser.parse_args()
    if args.quick:
        args.repeats = 1
    if args.no_vbv:
        no_vbv: Callable[..., None] = lambda *_: None  # noqa: E731 (aiortc opens x264 itself)
        setattr(rtc, "_open_h264", no_vbv)  # noqa: B010 (a private seam, on purpose)
    started = time.monotonic()
    runs = await run(args)
    table, agg = render_table(runs, args)
    path = write_result("agent_codec" + ("_no_vbv" if args.no_vbv else ""),
                        {"args": vars(args), "runs": runs, "summary": agg, "table": table,
                         "elapsed_s": time.monotonic() - started})
    print(table)
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    asyncio.run(main())
