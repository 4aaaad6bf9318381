"""Opus → AAC-LC for HLS: the PyAV decoding and encoding the HLS packager's audio uses.

WebRTC publishers send Opus; browsers' HLS (MSE, Safari) wants AAC. ``OpusToAac`` turns one
station's Opus RTP payloads into raw AAC-LC frames (48 kHz, 1024 samples each) with times on
the caller's timeline. Video is never touched.

**Timeline.** The caller gives each packet's first sample as ``pts`` (48 kHz ticks). The
converter keeps ``_next``, the pts where the audio fed so far ends, and keeps the AAC frames
in step with it: a packet after ``_next`` (lost packets, DTX) is preceded by silence up to
its pts; a packet before the previous packet's pts, or more than ``MAX_GAP`` after ``_next``,
starts a new *segment*: the last partial AAC frame is completed with silence and the next
frame starts exactly at that pts. A packet starting between the previous packet's pts and
``_next`` (a duplicate) is skipped. The encoder runs for the converter's whole life (one
priming); ``_segments`` maps its own sample count to the caller's pts, one offset per segment.
Frame pts are therefore ``pts`` of the first packet + 1024·n within a segment, whatever was
lost.

**Priming (encoder delay).** FFmpeg's AAC encoder starts with 1024 samples of pre-roll and
gives every packet the pts of the input sample its decoded output starts with (pts = input
samples − 1024), so the first packet (pts −1024) decodes to the pre-roll only. It is dropped,
and the pts of every ``AacFrame`` is the caller-timeline time of the first sample it decodes
to. So no edit list is needed, and a player that plays each frame at its pts is in sync with
video timed by the same RTP-derived clock: shifting by nothing would make audio 1024 samples
(21.3 ms) late. Without the priming frame the stream's very first 21 ms fade in (AAC overlaps
each frame with the previous one), as at any segment a player joins on.

**Latency.** The encoder holds two frames (delay + look-ahead), the chunking up to 1023
samples: a sample's AAC frame comes out 43–64 ms after its Opus packet went in.

**Cost** (``python -m bench.aac_cost``, 2 shared cores): ~125 µs of CPU per 20 ms packet,
0.6 % of a core per station: 2.5 times what the relay's whole ingest costs per publisher
(0.25 %, docs/benchmarks.md), and 8 ms in one push after a 5 s gap. Almost all of it is in
FFmpeg with the GIL released, so ``push`` belongs on a worker thread (one dedicated thread fed
by a bounded queue, as thumbnails are, not an executor call per packet), not on the event loop.
Each push takes the GIL back several times, so next to a saturated loop a push takes ~0.45 ms
of wall time instead of 0.13 (up to ~10 ms when it convoys on the 5 ms switch interval): for
many stations, a process. Not thread-safe: one thread at a time per converter.

PyAV seam points, pinned against the locked PyAV by ``tests/media/test_aac.py``:

1. **Decoder.** ``libopus`` with the layout set and no extradata decodes any packet, mono
   or stereo, to that many channels, as interleaved float when asked
   (``request_sample_fmt=flt``), each packet to exactly its duration. (FFmpeg's native
   ``opus`` decoder, ~10 µs cheaper, moves its SILK resampler's delay between packets: 456
   samples for a 10 ms SILK packet after CELT ones, 984 for the next 20 ms: here that would
   be a gap filled with silence, then a packet skipped as late.) A packet it cannot
   parse raises ``InvalidDataError`` and leaves it usable. An empty ``av.Packet`` would be a
   drain request (nothing decodes after it), so an empty payload is never sent.
2. **Encoder.** The native ``aac`` encoder (AAC-LC, ``fltp``, ``frame_size`` 1024) gives its
   AudioSpecificConfig as extradata once opened: ``11 90`` (AAC-LC, 48 kHz, 2 channels) then
   FFmpeg's explicit "no SBR" extension ``56 e5 00``, the extradata FFmpeg's own MP4 muxer
   writes into ``esds``. ``AudioCodecContext.encode`` sends every frame through PyAV's own
   ``AudioResampler(format, layout, rate, frame_size=1024)`` filter graph, which converts
   ``flt`` to ``fltp`` and cuts 1024-sample frames with their pts (time base 1/48000): so
   there is no resampler or ``AudioFifo`` of our own (it would be a second graph).
3. **Priming**, as above: packet pts = its first decoded sample's input pts, the first one
   −1024.
4. **Options.** ``CodecContext.open`` leaves in ``options`` what ``avcodec_open2`` did not
   take, so an option a future FFmpeg drops is an error here, not a silent change.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av

SAMPLE_RATE = 48000
FRAME_SAMPLES = 1024  # one AAC-LC frame
MAX_GAP = 5 * SAMPLE_RATE  # a longer jump forward starts a new segment instead of silence
_SILENCE_CHUNK = 9600  # samples of silence per frame fed (200 ms): a gap is fed in pieces
_TIME_BASE = Fraction(1, SAMPLE_RATE)
_LAYOUTS = {1: "mono", 2: "stereo"}
# The "fast" coder, not the locked FFmpeg's default "twoloop": on speech-like sound and noise
# 3-4x less CPU (~80 against ~220 µs per 20 ms of stereo at 64 kbps; a pure tone costs both
# ~270), and a closer waveform at the same bitrate (11 against 8 dB SNR on a plucked string);
# twoloop's perceptual tools pay off at low bitrates, not at 64 kbps for office speech.
ENCODER_OPTIONS = {"aac_coder": "fast"}
DECODER_OPTIONS = {"request_sample_fmt": "flt"}


class AudioTranscodeError(Exception):
    """The converter could not be set up, or was used after ``close``/``flush``."""


@dataclass(frozen=True, slots=True)
class AacFrame:
    data: bytes  # one raw AAC frame (no ADTS header)
    pts: int  # samples at 48 kHz on the caller's timeline: the time of its first decoded sample
    duration: int  # samples: FRAME_SAMPLES


class OpusToAac:
    """One station's Opus packets → AAC-LC frames. Create it, read ``config`` for the init
    segment, ``push`` every packet in arrival order, then ``flush`` (the last frames) or
    ``close``. Not thread-safe: call it from one thread at a time.
    """

    SAMPLE_RATE = SAMPLE_RATE

    def __init__(self, bitrate: int = 64000, channels: int = 2) -> None:
        if channels not in _LAYOUTS:
            raise AudioTranscodeError(f"channels must be 1 or 2, not {channels}")
        layout = _LAYOUTS[channels]
        try:
            decoder: Any = av.CodecContext.create("libopus", "r")
            decoder.sample_rate = SAMPLE_RATE
            decoder.layout = layout
            decoder.options = dict(DECODER_OPTIONS)
            decoder.open()
            encoder: Any = av.CodecContext.create("aac", "w")
            encoder.sample_rate = SAMPLE_RATE
            encoder.layout = layout
            encoder.format = "fltp"
            encoder.bit_rate = bitrate
            encoder.time_base = _TIME_BASE
            encoder.options = dict(ENCODER_OPTIONS)
            encoder.open()
        except (av.FFmpegError, ValueError) as exc:
            raise AudioTranscodeError(f"cannot open the Opus decoder / AAC encoder: {exc}") from exc
        if decoder.options or encoder.options:  # what avcodec_open2 did not take (seam 4)
            raise AudioTranscodeError(f"options ignored: {decoder.options} {encoder.options}")
        self._decoder: Any = decoder
        self._encoder: Any = encoder
        self._config = bytes(encoder.extradata or b"")
        self._layout = layout
        self._format = "flt"  # the decoder's output (seam 1); silence is made to match it
        self._fed = 0  # samples given to the encoder: its own timeline
        self._segments: deque[tuple[int, int]] = deque()  # (encoder sample it starts at, caller pts − encoder pts)
        self._last: int | None = None  # pts of the last packet taken
        self._next = 0  # caller pts where the audio fed so far ends
        self.decode_errors = 0
        self.late_packets = 0  # started before the previous packet ended (duplicates): skipped
        self.silence_samples = 0  # filled into gaps
        self.resets = 0

    @property
    def config(self) -> bytes:
        """AudioSpecificConfig (the encoder's extradata), available right after __init__."""
        return self._config

    @property
    def channels(self) -> int:
        return 1 if self._layout == "mono" else 2

    def push(self, opus: bytes, pts: int) -> list[AacFrame]:
        """One Opus packet (an RTP payload) whose first sample is at ``pts`` (48 kHz ticks on
        the caller's timeline, increasing). Returns the AAC frames completed so far (each
        1024 samples). A gap in pts (lost packets) is filled with silence so the AAC timeline
        stays continuous and in step with pts; a pts going backwards or a jump of more than
        5 s resets the timeline (the next frames start at that pts). A packet that does not
        decode is skipped (counted in ``decode_errors``), never raises.
        """
        decoder = self._open_decoder()
        if self._last is not None and self._last <= pts < self._next:
            self.late_packets += 1
            return []
        if not opus:
            self.decode_errors += 1  # an empty packet would drain the decoder (seam 1)
            return []
        try:
            decoded: list[Any] = decoder.decode(av.Packet(opus))
        except av.FFmpegError:
            self.decode_errors += 1
            return []
        samples = sum(frame.samples for frame in decoded)
        if not samples:
            self.decode_errors += 1
            return []
        packets: list[Any] = []
        if self._last is None:
            self._segments.append((self._fed, pts - self._fed))
        elif pts < self._last or pts - self._next > MAX_GAP:
            self._start_segment(pts, packets)
        elif pts > self._next:
            self.silence_samples += pts - self._next
            self._feed_silence(pts - self._next, packets)
        for frame in decoded:
            self._feed(frame, packets)
        self._last, self._next = pts, pts + samples
        return self._frames(packets)

    def flush(self) -> list[AacFrame]:
        """The frames still in the encoder, the last one completed with silence; then closed."""
        self._open_decoder()
        if self._last is None:
            self.close()
            return []
        packets: list[Any] = []
        self._feed_silence(-self._fed % FRAME_SAMPLES, packets)
        packets += self._encode(None)
        frames = self._frames(packets)
        self.close()
        return frames

    def close(self) -> None:
        """Release the codecs; a ``push`` after this raises AudioTranscodeError. Idempotent."""
        self._decoder = self._encoder = None

    # ------------------------------------------------------------------ internals

    def _open_decoder(self) -> Any:  # the decoder, unless closed
        if self._decoder is None:
            raise AudioTranscodeError("the converter is closed")
        return self._decoder

    def _start_segment(self, pts: int, packets: list[Any]) -> None:
        self.resets += 1
        self._feed_silence(-self._fed % FRAME_SAMPLES, packets)  # no frame spans two segments
        self._segments.append((self._fed, pts - self._fed))

    def _feed_silence(self, samples: int, packets: list[Any]) -> None:
        while samples > 0:
            count = min(samples, _SILENCE_CHUNK)
            frame = av.AudioFrame(format=self._format, layout=self._layout, samples=count)
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.sample_rate = SAMPLE_RATE
            self._feed(frame, packets)
            samples -= count

    def _feed(self, frame: Any, packets: list[Any]) -> None:
        frame.pts = self._fed
        frame.time_base = _TIME_BASE  # PyAV's chunking graph carries pts in this time base (seam 2)
        self._fed += frame.samples
        packets += self._encode(frame)

    def _encode(self, frame: Any) -> list[Any]:
        try:
            encoded: list[Any] = self._encoder.encode(frame)
        except (av.FFmpegError, ValueError) as exc:  # a frame not like the first: our bug
            raise AudioTranscodeError(f"AAC encoding failed: {exc}") from exc
        return encoded

    def _frames(self, packets: list[Any]) -> list[AacFrame]:
        frames = []
        segments = self._segments
        for packet in packets:
            start = packet.pts  # its first decoded sample, on the encoder's timeline (seam 3)
            while len(segments) > 1 and segments[1][0] <= start:
                segments.popleft()
            if start < segments[0][0]:
                continue  # the priming frame
            frames.append(AacFrame(bytes(packet), start + segments[0][1], FRAME_SAMPLES))
        return frames
