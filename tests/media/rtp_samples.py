"""Real RTP payloads for the recorder tests: aiortc's own encoders and packetisers (the
ones a Python agent publishes with), fed the relay tests' test pattern and tone.

``packets(codec, frames)`` answers ``[(seq, ts, marker, payload)]`` as a publisher sends
them, plus the encoded frames each group of packets carries, to compare against.
"""

from __future__ import annotations

import fractions
import random
from dataclasses import dataclass

import av
from aiortc.codecs import get_encoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from tests.media.peers import FPS, HEIGHT, WIDTH, PatternTrack, ToneTrack

Packet = tuple[int, int, int, bytes]


@dataclass
class Sample:
    packets: list[Packet]
    frame_packets: list[list[Packet]]  # the packets of each frame, in order
    keyframes: list[int]  # indexes of the frames encoded as keyframes


def _picture(index: int) -> av.VideoFrame:
    track = PatternTrack("A" if index % 20 < 10 else "B")
    luma = bytearray(track._luma)
    x = (index * 8) % (WIDTH - 16)
    for y in range(HEIGHT - 24, HEIGHT - 8):
        luma[y * WIDTH + x: y * WIDTH + x + 16] = b"\xff" * 16
    noise = random.Random(index)  # fine detail in the top rows: frames of several packets
    luma[: WIDTH * 64] = bytes(noise.randrange(256) for _ in range(WIDTH * 64))
    frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
    frame.planes[0].update(bytes(luma))
    frame.planes[1].update(track._chroma)
    frame.planes[2].update(track._chroma)
    frame.pts = index * (90000 // FPS)
    frame.time_base = fractions.Fraction(1, 90000)
    return frame


def video(codec: str = "VP8", frames: int = 30, keyframe_every: int = 10, first_seq: int = 1000,
          first_ts: int = 5000) -> Sample:
    """``frames`` pictures packetised by aiortc's encoder; a keyframe every ``keyframe_every``."""
    encoder = get_encoder(RTCRtpCodecParameters(mimeType=f"video/{codec}", clockRate=90000))
    if codec == "VP8":
        encoder.target_bitrate = 1_500_000  # type: ignore[attr-defined]  # big keyframes: several packets per frame
    packets: list[Packet] = []
    frame_packets: list[list[Packet]] = []
    keyframes = []
    seq = first_seq
    for index in range(frames):
        force = index % keyframe_every == 0
        payloads, timestamp = encoder.encode(_picture(index), force_keyframe=force)
        if force:
            keyframes.append(index)
        ts = (first_ts + timestamp) & 0xFFFFFFFF
        group = []
        for position, payload in enumerate(payloads):
            group.append((seq & 0xFFFF, ts, int(position == len(payloads) - 1), payload))
            seq += 1
        packets.extend(group)
        frame_packets.append(group)
    return Sample(packets, frame_packets, keyframes)


def audio(frames: int = 50, first_seq: int = 65530, first_ts: int = 0xFFFFF000) -> Sample:
    """``frames`` 20 ms Opus packets of a tone (the sequence numbers and clock wrap)."""
    encoder = get_encoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2))
    track = ToneTrack()
    packets: list[Packet] = []
    for index in range(frames):
        frame = av.AudioFrame(format="s16", layout="mono", samples=ToneTrack.SAMPLES)
        frame.planes[0].update(track._pcm)
        frame.sample_rate = 48000
        frame.pts = index * ToneTrack.SAMPLES
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, _ = encoder.encode(frame)
        for payload in payloads:
            packets.append(((first_seq + index) & 0xFFFF, (first_ts + index * 960) & 0xFFFFFFFF, 1, payload))
    return Sample(packets, [[p] for p in packets], list(range(frames)))


def encoded_frames(codec: str, frames: int = 30, keyframe_every: int = 10) -> list[tuple[bytes, bool, float]]:
    """Whole encoded frames as the recorder writes them: (data, keyframe, seconds)."""
    from hub.media import seams_keyframes
    from hub.media.frames import FrameAssembler

    if codec == "opus":
        sample = audio(frames, first_seq=0, first_ts=0)
        return [(p[3], True, p[1] / 48000) for p in sample.packets]
    sample = video(codec, frames, keyframe_every, first_ts=0)
    assembler = FrameAssembler(f"video/{codec.lower()}", seams_keyframes.depayload)
    out: list[tuple[bytes, bool, float]] = []
    for packet in sample.packets:
        out.extend((f.data, f.keyframe, f.timestamp / 90000) for f in assembler.push(*packet))
    return out
