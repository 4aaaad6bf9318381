"""Opus → AAC (``hub.media.aac``): the PyAV behaviour it relies on (its docstring, seams 1-4),
then the converter's timeline, sound and output, checked by decoding what it made.

If a pin test fails after an upgrade, re-read PyAV's ``audio/codeccontext.py`` and
``codec/context.py`` and FFmpeg's libopus decoder and aac encoder, and adapt the seam before
anything else.

The Opus packets are real: PyAV's libopus encoder in 20 ms packets (its packets' pts already
count its own look-ahead back, so a packet's pts is the time of its first decoded sample).
"""

from __future__ import annotations

import array
import functools
import json
import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.audio.codeccontext
import pytest

from hub.media.aac import FRAME_SAMPLES, AacFrame, AudioTranscodeError, OpusToAac
from tests.kit import timeout
from tests.locked import check_locked

RATE = 48000
PACKET = 960  # 20 ms
BASE = 3_000_000  # the caller's timeline: anywhere, e.g. an unwrapped RTP timestamp
TB = Fraction(1, RATE)


# ---------------------------------------------------------------------------- helpers

@functools.cache
def opus_packets(count: int, channels: int = 2, freq: float = 440.0, amp: float = 0.5, onset: int = 0,
                 bitrate: int = 64000, options: tuple[tuple[str, str], ...] = ()) -> tuple[tuple[int, bytes], ...]:
    """``count`` 20 ms of a sine (silent before sample ``onset``) through libopus: (pts, packet)."""
    encoder: Any = av.CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = RATE, "stereo" if channels == 2 else "mono", "s16"
    encoder.bit_rate, encoder.time_base, encoder.options = bitrate, TB, dict(options)
    packets: list[tuple[int, bytes]] = []
    for index in range(count + 1):  # one more: the encoder's look-ahead holds back a packet
        pcm = array.array("h")
        for i in range(index * PACKET, (index + 1) * PACKET):
            value = int(amp * 32767 * math.sin(2 * math.pi * freq * (i - onset) / RATE)) if i >= onset else 0
            pcm.extend([value] * channels)
        frame = av.AudioFrame(format="s16", layout=encoder.layout.name, samples=PACKET)
        frame.planes[0].update(pcm.tobytes())
        frame.sample_rate, frame.pts, frame.time_base = RATE, index * PACKET, TB
        packets += [(packet.pts, bytes(packet)) for packet in encoder.encode(frame)]
    return tuple(packets[:count])


def push_all(converter: OpusToAac, packets: Any, base: int = BASE) -> list[AacFrame]:
    return [frame for pts, data in packets for frame in converter.push(data, pts + base)]


def decode(config: bytes, frames: list[AacFrame]) -> dict[int, list[array.array[float]]]:
    """Each frame decoded with FFmpeg's aac decoder: its pts → one float array per channel."""
    decoder: Any = av.CodecContext.create("aac", "r")
    decoder.extradata = config
    out: dict[int, list[array.array[float]]] = {}
    for frame in frames:
        (pcm,) = decoder.decode(av.Packet(frame.data))
        assert pcm.samples == FRAME_SAMPLES and pcm.format.name == "fltp"
        out[frame.pts] = [array.array("f", bytes(plane))[:pcm.samples] for plane in pcm.planes]
    return out


def timeline(decoded: dict[int, list[array.array[float]]], channel: int = 0) -> tuple[int, list[float]]:
    """The decoded channel as one list from the first frame's pts (frames must be continuous)."""
    start = min(decoded)
    samples: list[float] = []
    for pts in sorted(decoded):
        assert pts == start + len(samples)
        samples += decoded[pts][channel]
    return start, samples


def frequency(samples: list[float]) -> float:
    crossings = sum(1 for a, b in zip(samples, samples[1:], strict=False) if a < 0 <= b)
    return crossings * RATE / len(samples)


def rms(samples: list[float]) -> float:
    return math.sqrt(sum(x * x for x in samples) / len(samples))


def read_config(config: bytes) -> tuple[int, int, int, int, int]:
    """(object type, frequency index, channels, sync extension, its object type) of an
    AudioSpecificConfig with FFmpeg's explicit "no SBR" extension (14496-3 1.6.2.1, 1.6.6.2)."""
    bits = int.from_bytes(config, "big")
    width = len(config) * 8

    def field(start: int, size: int) -> int:
        return (bits >> (width - start - size)) & ((1 << size) - 1)

    return field(0, 5), field(5, 4), field(9, 4), field(16, 11), field(27, 5)


# ---------------------------------------------------------------------------- the PyAV seams

def test_installed_pyav_is_the_locked_one() -> None:
    check_locked("av")


def test_seam_1_libopus_decodes_every_packet_to_its_duration_as_float_stereo() -> None:
    # SILK, hybrid and CELT packets with mode switches, mono and stereo, 10 and 20 ms
    streams = [opus_packets(40, channels=1, bitrate=12000, options=(("application", "voip"),)),
               opus_packets(40, bitrate=24000, options=(("application", "voip"),)),
               opus_packets(40, channels=1),
               opus_packets(40, options=(("frame_duration", "10"),))]
    configs = {data[0] >> 3 for stream in streams for _, data in stream}
    assert configs & set(range(12)) and configs & {12, 13, 14, 15} and configs & set(range(16, 32))
    for stream in streams:
        decoder: Any = av.CodecContext.create("libopus", "r")
        decoder.sample_rate, decoder.layout, decoder.options = RATE, "stereo", {"request_sample_fmt": "flt"}
        decoder.open()
        durations = [b[0] - a[0] for a, b in zip(stream, stream[1:], strict=False)]
        for (_, data), duration in zip(stream, durations, strict=False):
            (frame,) = decoder.decode(av.Packet(data))
            assert (frame.samples, frame.format.name, frame.layout.name, frame.sample_rate) == (
                duration, "flt", "stereo", RATE)


def test_seam_1_a_bad_packet_raises_and_the_decoder_goes_on_but_an_empty_one_ends_it() -> None:
    (_, first), (_, second) = opus_packets(2)
    decoder: Any = av.CodecContext.create("libopus", "r")
    decoder.sample_rate, decoder.layout = RATE, "stereo"
    for garbage in (b"\xff" * 40, b"\x0b", b"\x03\xff\xff"):
        with pytest.raises(av.error.InvalidDataError):
            decoder.decode(av.Packet(garbage))
    assert [f.samples for f in decoder.decode(av.Packet(first))] == [PACKET]
    assert decoder.decode(av.Packet(b"")) == []  # a drain request …
    with pytest.raises(EOFError):
        decoder.decode(av.Packet(second))  # … after which nothing decodes


def test_seam_2_the_aac_encoder_and_pyavs_own_chunking_graph() -> None:
    source = (Path(av.audio.codeccontext.__file__).parent / "codeccontext.py").read_text()
    assert "frame_size=None if allow_var_frame_size else self.ptr.frame_size," in source
    assert "frames = self.resampler.resample(frame)" in source
    encoder: Any = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format, encoder.bit_rate, encoder.time_base = (
        RATE, "stereo", "fltp", 64000, TB)
    encoder.open()
    assert encoder.frame_size == FRAME_SAMPLES
    assert bytes(encoder.extradata) == b"\x11\x90\x56\xe5\x00"
    packets: list[Any] = []
    for index in range(10):  # interleaved float in 960s: converted and cut into 1024s by PyAV
        frame = av.AudioFrame(format="flt", layout="stereo", samples=PACKET)
        frame.planes[0].update(bytes(PACKET * 8))
        frame.sample_rate, frame.pts, frame.time_base = RATE, index * PACKET, TB
        packets += encoder.encode(frame)
    # seam 3: each packet's pts is where its decoded samples start; the first is the priming
    assert [p.pts for p in packets] == [FRAME_SAMPLES * k for k in range(-1, len(packets) - 1)]
    assert {p.duration for p in packets} == {FRAME_SAMPLES}


def test_seam_4_options_avcodec_open2_did_not_take_are_left_over() -> None:
    encoder: Any = av.CodecContext.create("aac", "w")
    encoder.sample_rate, encoder.layout, encoder.format = RATE, "stereo", "fltp"
    encoder.options = {"aac_coder": "fast", "no_such_option": "1"}
    encoder.open()
    assert encoder.options == {"no_such_option": "1"}


# ---------------------------------------------------------------------------- the converter

def test_config_is_an_aac_lc_48k_audio_specific_config() -> None:
    stereo, mono = OpusToAac(), OpusToAac(channels=1)
    assert stereo.config[:2] == b"\x11\x90" and mono.config[:2] == b"\x11\x88"
    assert read_config(stereo.config) == (2, 3, 2, 0x2B7, 5)  # AAC-LC, 48 kHz, stereo; no SBR
    assert read_config(mono.config)[:3] == (2, 3, 1)
    assert stereo.config[4] >> 7 == 0  # sbrPresentFlag
    stereo.close()
    mono.close()
    with pytest.raises(AudioTranscodeError):
        OpusToAac(channels=6)


@pytest.mark.parametrize("channels", [2, 1])  # mono Opus in a stream announced stereo too
def test_a_sine_comes_out_as_the_same_sine_with_continuous_pts(channels: int) -> None:
    packets = opus_packets(100, channels=channels)
    converter = OpusToAac()
    frames = push_all(converter, packets)
    fed = len(packets) * PACKET
    assert frames[0].pts == packets[0][0] + BASE  # the first packet's first sample
    assert [f.pts for f in frames] == [frames[0].pts + FRAME_SAMPLES * k for k in range(len(frames))]
    assert fed - len(frames) * FRAME_SAMPLES <= 3 * FRAME_SAMPLES  # latency: 2 frames + the partial one
    frames += converter.flush()
    assert {f.duration for f in frames} == {FRAME_SAMPLES}
    assert 0 <= len(frames) * FRAME_SAMPLES - fed < FRAME_SAMPLES
    start, left = timeline(decode(converter.config, frames))
    _, right = timeline(decode(converter.config, frames), channel=1)
    middle = slice(RATE // 10, fed - RATE // 10)
    for channel in (left, right):
        assert frequency(channel[middle]) == pytest.approx(440, rel=0.02)
        assert rms(channel[middle]) == pytest.approx(0.5 / math.sqrt(2), rel=0.15)
    assert converter.decode_errors == converter.silence_samples == converter.resets == 0


def test_the_frames_are_in_step_with_the_callers_clock_no_priming_delay() -> None:
    # A/V sync: a tone starting at a known instant is heard at that pts, not 1024 samples later
    onset = 30 * PACKET + 437
    packets = opus_packets(60, onset=onset)
    converter = OpusToAac()
    frames = push_all(converter, packets) + converter.flush()
    start, left = timeline(decode(converter.config, frames))
    heard = next(i for i, x in enumerate(left) if abs(x) > 0.15) + start
    assert abs(heard - (BASE + onset)) < 120  # Opus and AAC smear an edge by ~1 ms; the delay would be 1024


def test_lost_packets_become_silence_and_the_timeline_stays_continuous() -> None:
    packets = opus_packets(100)
    kept = packets[:40] + packets[45:]  # 5 packets lost
    converter = OpusToAac()
    frames = push_all(converter, kept) + converter.flush()
    assert [f.pts for f in frames] == [frames[0].pts + FRAME_SAMPLES * k for k in range(len(frames))]
    assert converter.silence_samples == 5 * PACKET
    start, left = timeline(decode(converter.config, frames))
    gap = slice(packets[40][0] + BASE - start, packets[45][0] + BASE - start)
    assert rms(left[gap.start + FRAME_SAMPLES: gap.stop - FRAME_SAMPLES]) < 0.01  # silent (MDCT overlap at the edges)
    after = left[gap.stop + FRAME_SAMPLES: gap.stop + 20 * PACKET]
    assert frequency(after) == pytest.approx(440, rel=0.03) and rms(after) > 0.25  # back in place


def test_garbage_is_skipped_and_counted_and_a_duplicate_is_skipped() -> None:
    packets = opus_packets(50)
    converter = OpusToAac()
    frames: list[AacFrame] = []
    for index, (pts, data) in enumerate(packets):
        if index == 20:
            assert converter.push(b"\xff" * 40, pts + BASE) == []  # does not decode: the timeline waits
            assert converter.push(b"", pts + BASE) == []
        frames += converter.push(data, pts + BASE)
        if index == 30:
            frames += converter.push(data, pts + BASE)  # the same packet again
    assert (converter.decode_errors, converter.late_packets, converter.silence_samples) == (2, 1, 0)
    assert [f.pts for f in frames] == [frames[0].pts + FRAME_SAMPLES * k for k in range(len(frames))]


def test_a_pts_going_back_or_jumping_over_5_s_starts_again_at_that_pts() -> None:
    packets = opus_packets(50)
    for second_base in (BASE - 10 * RATE, BASE + 60 * PACKET + 5 * RATE + 1):
        converter = OpusToAac()
        first = push_all(converter, packets)
        second = push_all(converter, packets, second_base) + converter.flush()
        assert converter.resets == 1 and converter.silence_samples == 0
        frames = first + second
        restart = [f.pts for f in frames].index(second_base + packets[0][0])
        before, after = frames[:restart], frames[restart:]
        for run in (before, after):
            assert [f.pts for f in run] == [run[0].pts + FRAME_SAMPLES * k for k in range(len(run))]
        assert after[0].pts == second_base + packets[0][0]
        assert before[-1].pts + FRAME_SAMPLES >= BASE + len(packets) * PACKET + packets[0][0]  # all of the first
        # the first part ends with its partial frame completed, not mixed with the second
        assert len(before) == -(-(len(packets) * PACKET) // FRAME_SAMPLES)


def test_closed_converter_refuses_packets() -> None:
    converter = OpusToAac()
    assert converter.flush() == []
    converter.close()
    with pytest.raises(AudioTranscodeError):
        converter.push(opus_packets(1)[0][1], BASE)


def adts(config: bytes, frame: bytes) -> bytes:
    """An ADTS header (14496-3 1.A.2) for one raw frame of the stream ``config`` describes."""
    object_type, frequency_index, channels, _, _ = read_config(config)
    length = 7 + len(frame)
    header = (0xFFF << 44 | 1 << 40 | (object_type - 1) << 38 | frequency_index << 34 | channels << 30
              | length << 13 | 0x7FF << 2)
    return header.to_bytes(7, "big") + frame


@pytest.mark.skipif(shutil.which("ffprobe") is None, reason="needs ffprobe (Debian ffmpeg)")
def test_a_player_accepts_the_frames(tmp_path: Path) -> None:
    converter = OpusToAac()
    frames = push_all(converter, opus_packets(100)) + converter.flush()
    path = tmp_path / "station.aac"
    path.write_bytes(b"".join(adts(converter.config, f.data) for f in frames))
    probe = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,profile,sample_rate,channels,nb_read_frames", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=timeout(30), check=True)
    assert probe.stderr == ""  # no decoding error in any frame
    (stream,) = json.loads(probe.stdout)["streams"]
    assert (stream["codec_name"], stream["profile"], stream["sample_rate"], stream["channels"]) == (
        "aac", "LC", "48000", 2)
    assert int(stream["nb_read_frames"]) == len(frames)
