"""The hub's CPU for turning one station's Opus into AAC for HLS (``hub.media.aac.OpusToAac``).

The audio, made before any clock starts: a speech-like stereo signal (a gliding voice of five
harmonics at syllable rate over faint room noise; 2 s looped), encoded by PyAV's libopus into
20 ms packets at 32 kbps, as a browser publishes them. Each repeat pushes ``--seconds`` of
those packets through a fresh ``OpusToAac`` (64 kbps) as fast as the CPU allows and reads
``time.process_time`` (every thread) around each push:

* **µs per packet**: CPU ÷ packets (median of the repeats, min–max in brackets);
* **% of a core per station**: that ÷ 20 ms (50 packets a second);
* **slowest push**: the longest single push (one that completes two AAC frames), what the
  event loop would stall for;
* **5 s gap**: one push after 5 s of lost packets, which encodes 5 s of silence at once;
* **worker thread next to a busy loop**: 10 s of the packets pushed in a worker thread while
  the main thread runs pure Python without pause (an event loop with no idle time): wall
  time per push. The codecs release the GIL, but each push takes it back ~10 times, and
  each time may wait for the busy thread's switch interval (5 ms).

    python -m bench.aac_cost [--seconds 60] [--repeats 3]
"""

from __future__ import annotations

import argparse
import array
import math
import random
import threading
import time
from fractions import Fraction

import av

from bench.common import fmt_spread, summary, write_result
from hub.media.aac import OpusToAac

PACKET = 960  # 20 ms at 48 kHz
LOOP_S = 2


def voice_pcm(seconds: float) -> bytes:
    """Interleaved s16 stereo: a speech-like sound over room noise (left and right differ a little)."""
    rng = random.Random(7)
    pcm = array.array("h")
    for i in range(int(seconds * 48000)):
        t = i / 48000
        f0 = 150 + 40 * math.sin(2 * math.pi * 0.7 * t)
        envelope = (0.5 + 0.5 * math.sin(2 * math.pi * 4 * t)) ** 2
        voice = envelope * sum(math.sin(2 * math.pi * f0 * h * t) / h for h in range(1, 6)) * 0.15
        pcm.append(int((voice + rng.uniform(-0.003, 0.003)) * 32767))
        pcm.append(int((0.9 * voice + rng.uniform(-0.003, 0.003)) * 32767))
    return pcm.tobytes()


def opus_packets(seconds: float, bitrate: int = 32000, packet_ms: int = 20) -> list[bytes]:
    """``seconds`` of the sound as Opus packets of ``packet_ms`` (20, as browsers send; 40 or
    60 ms: fewer packets for the same sound)."""
    if packet_ms not in (20, 40, 60):
        raise ValueError("Opus packets of 20, 40 or 60 ms")
    samples = PACKET * packet_ms // 20
    encoder = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.bit_rate, encoder.time_base = bitrate, Fraction(1, 48000)
    encoder.options = {"frame_duration": str(packet_ms)}
    loop = voice_pcm(LOOP_S * packet_ms // 20)  # a whole number of packets long
    step = samples * 4  # bytes of one packet's s16 stereo
    packets: list[bytes] = []
    for index in range(int(seconds * 1000 / packet_ms)):
        offset = (index * step) % len(loop)
        frame = av.AudioFrame(format="s16", layout="stereo", samples=samples)
        frame.planes[0].update(loop[offset: offset + step])
        frame.sample_rate, frame.pts, frame.time_base = 48000, index * samples, Fraction(1, 48000)
        packets += [bytes(packet) for packet in encoder.encode(frame)]
    return packets


def run(packets: list[bytes]) -> tuple[float, float, float]:
    """(µs of CPU per packet, the slowest push in µs, the 5 s gap's push in ms)."""
    converter = OpusToAac()
    clock = time.process_time
    slowest = total = 0.0
    pts = 0
    for data in packets:
        start = clock()
        converter.push(data, pts)
        spent = clock() - start
        total += spent
        slowest = max(slowest, spent)
        pts += PACKET
    start = clock()
    converter.push(packets[0], pts + 5 * 48000)
    gap = clock() - start
    converter.close()
    return total / len(packets) * 1e6, slowest * 1e6, gap * 1e3


def contended(packets: list[bytes]) -> float:
    """Wall µs per push in a worker thread while this thread spins in Python."""
    done = threading.Event()
    elapsed: list[float] = []

    def work() -> None:
        converter, start = OpusToAac(), time.perf_counter()
        for index, data in enumerate(packets):
            converter.push(data, index * PACKET)
        elapsed.append(time.perf_counter() - start)
        converter.close()
        done.set()

    worker = threading.Thread(target=work)
    worker.start()
    spins = 0
    while not done.is_set():  # Python bytecode without a pause, as a saturated event loop runs
        spins += 1
    worker.join()
    return elapsed[0] / len(packets) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    packets = opus_packets(args.seconds)
    runs = [(*run(packets), contended(packets[:500])) for _ in range(args.repeats)]
    per_packet, slowest, gap, threaded = (summary([r[i] for r in runs]) for i in range(4))
    share = summary([r[0] / 20_000 for r in runs])  # µs per 20 ms
    print(f"OpusToAac, {args.seconds:g} s of speech-like stereo Opus ({len(packets)} packets), {args.repeats} repeats")
    print(f"  {fmt_spread(per_packet, 1)} µs of CPU per 20 ms Opus packet")
    print(f"  {fmt_spread(share, 2, 100)} % of a core per station")
    print(f"  slowest push {fmt_spread(slowest)} µs; a push after a 5 s gap {fmt_spread(gap, 1)} ms")
    print(f"  in a worker thread next to a busy loop: {fmt_spread(threaded)} µs of wall time per push")
    path = write_result("aac_cost", {"seconds": args.seconds, "packets": len(packets), "us_per_packet": per_packet,
                                     "core_share": share, "slowest_push_us": slowest, "gap_5s_ms": gap,
                                     "contended_wall_us": threaded})
    print(f"  → {path}")


if __name__ == "__main__":
    main()
