"""Containers for already-encoded media: the PyAV muxing and demuxing the recorder uses.

This is the seam to PyAV (``av``) for recordings; ``tests/media/test_seams_containers.py``
pins the behaviour relied on here against the locked PyAV:

1. **Streams without an encoder.** A stream made by ``add_stream`` gets an encoder context
   that PyAV opens when the header is written (an encoder per file we never use), and
   ``add_mux_stream`` has no codec context, so its extradata and channel count cannot be
   set (Opus needs an OpusHead in Matroska and MP4). So each stream is copied from a
   *template*: a stream of a scratch container that is never written. PyAV marks a stream
   made by ``add_stream_from_template`` as initialised (``_ctxflags |= 1``), so
   ``start_encoding`` does not open its codec context but copies its parameters (size,
   sample rate, layout, extradata) to the stream (``_finalize_for_output``).
2. **H.264 as Annex B.** The SPS and PPS of the first keyframe are given as Annex B
   extradata and frames are muxed as Annex B access units: FFmpeg's MP4 muxer writes the
   ``avcC`` box and rewrites each sample to length-prefixed NAL units itself.
3. **Crash safety** (``PART_OPTIONS``): every packet is handed to the file at once
   (``flush_packets``); Matroska in ``live`` mode writes each cluster when it closes, at
   most every ``cluster_time_limit`` ms; fragmented MP4 (``frag_keyframe+empty_moov+
   default_base_moof``) writes a fragment at each keyframe and at least every
   ``frag_duration`` µs; ``frag_discont`` with ``avoid_negative_ts=disabled`` keeps the
   packets' own times (by default the MP4 muxer starts every track of a file at 0, which
   would lose a part's place in the recording). A file cut anywhere (``kill -9``) is read up to its last whole
   cluster / fragment: the demuxers stop with an error at the cut (caught here) and mark a
   short packet corrupt (skipped).
4. **Finished files** (``FINISHED_OPTIONS``): plain Matroska/WebM writes Cues (the seek
   index) at the end; MP4 with ``faststart`` moves the ``moov`` box to the front, so a
   browser can seek with Range requests before it has the whole file.

No frame is ever decoded or encoded here.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

FORMATS = {"video/vp8": "webm", "video/h264": "mp4"}  # the publisher's video codec → container
SUFFIXES = {"webm": ".webm", "mp4": ".mp4"}
PART_OPTIONS: dict[str, dict[str, str]] = {
    "webm": {"live": "1", "cluster_time_limit": "1000", "flush_packets": "1"},
    # frag_discont + avoid_negative_ts=disabled: each fragment's tfdt is the packets' own
    # time, so a part keeps its place in the recording (else every track starts at 0)
    "mp4": {"movflags": "frag_keyframe+empty_moov+default_base_moof+frag_discont", "frag_duration": "1000000",
            "avoid_negative_ts": "disabled", "flush_packets": "1"},
}
FINISHED_OPTIONS: dict[str, dict[str, str]] = {"webm": {}, "mp4": {"movflags": "+faststart"}}
# stream time bases: Matroska counts milliseconds whatever is asked; MP4 keeps the RTP clocks
TIME_BASES = {"webm": {"video": Fraction(1, 1000), "audio": Fraction(1, 1000)},
              "mp4": {"video": Fraction(1, 90000), "audio": Fraction(1, 48000)}}
# the encoder whose (never opened) context stands as a stream's template
_TEMPLATE_ENCODERS = {"vp8": "libvpx", "h264": "libx264", "opus": "libopus"}


class ContainerError(Exception):
    """A part could not be written or read (the message says what FFmpeg said)."""


@dataclass(frozen=True)
class Track:
    kind: str  # "video" | "audio"
    codec: str  # FFmpeg's name: "vp8", "h264", "opus"
    width: int = 0
    height: int = 0
    sample_rate: int = 48000
    channels: int = 2
    extradata: bytes = b""


def format_for(video_mime: str) -> str:
    """The container for a publisher's video codec ("video/vp8" → "webm"); WebM without video."""
    return FORMATS.get(video_mime.lower(), "webm")


def codec_name(mime_type: str) -> str:
    """"video/VP8" → "vp8"."""
    return mime_type.partition("/")[2].lower()


def opus_head(channels: int = 2, sample_rate: int = 48000, pre_skip: int = 0) -> bytes:
    """An OpusHead (RFC 7845 §5.1), channel mapping family 0: Opus's codec private data.

    WebRTC's Opus is always announced as 2 channels (RFC 7587); a mono stream decodes as
    stereo. Pre-skip 0: a recording starts in the middle of a stream, the encoder's
    look-ahead is long past.
    """
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, sample_rate, 0, 0)


def h264_extradata(nal_units: list[bytes]) -> bytes:
    """Annex B extradata: the SPS and PPS NAL units of a keyframe (seam 2)."""
    chosen = [nal for nal in nal_units if nal and nal[0] & 0x1F in (7, 8)]
    return b"".join(b"\x00\x00\x00\x01" + nal for nal in chosen)


class PacketWriter:
    """One output file of encoded packets. ``write`` in time order per kind; ``close`` once.

    ``time_s`` is rounded to the stream's time base; a time not after the kind's previous
    one is moved one tick after it (muxers refuse timestamps going back).
    """

    def __init__(self, path: Path, fmt: str, tracks: list[Track], options: dict[str, str]) -> None:
        self.path = path
        self._time_bases = TIME_BASES[fmt]
        self._rates = {kind: float(1 / time_base) for kind, time_base in self._time_bases.items()}
        try:
            self._output: Any = av.open(str(path), "w", format=fmt, options=dict(options))
        except av.FFmpegError as exc:
            raise ContainerError(f"cannot create {path}: {exc}") from exc
        scratch = av.open(io.BytesIO(), "w", format=fmt)  # never written: holds the templates
        self._streams: dict[str, Any] = {}
        try:
            for track in tracks:
                template = scratch.add_stream(_TEMPLATE_ENCODERS[track.codec])
                stream = self._output.add_stream_from_template(template, opaque=True)
                context: Any = stream.codec_context
                if track.kind == "video":
                    context.width, context.height = track.width, track.height
                else:
                    context.sample_rate = track.sample_rate
                    context.layout = "stereo" if track.channels == 2 else "mono"
                if track.extradata:
                    context.extradata = track.extradata
                stream.time_base = self._time_bases[track.kind]
                self._streams[track.kind] = stream
        except (av.FFmpegError, ValueError, KeyError) as exc:
            self._output.close()
            raise ContainerError(f"cannot set up {path}: {exc}") from exc
        finally:
            scratch.close()
        self._last: dict[str, int] = {kind: -1 << 62 for kind in self._streams}
        self._closed = False
        self.packets_written = 0

    @property
    def kinds(self) -> set[str]:
        return set(self._streams)

    def write(self, kind: str, data: bytes, keyframe: bool, time_s: float) -> None:
        stream = self._streams.get(kind)
        if stream is None:
            return
        time_base = self._time_bases[kind]
        pts = round(time_s * self._rates[kind])  # floats: Fraction arithmetic costs µs per frame
        if pts <= self._last[kind]:
            pts = self._last[kind] + 1
        self._last[kind] = pts
        packet = av.Packet(data)
        packet.stream = stream
        packet.time_base = time_base
        packet.pts = packet.dts = pts
        packet.is_keyframe = keyframe
        try:
            self._output.mux_one(packet)
        except av.FFmpegError as exc:
            raise ContainerError(f"writing {self.path}: {exc}") from exc
        self.packets_written += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._output.close()
        except av.FFmpegError as exc:
            raise ContainerError(f"closing {self.path}: {exc}") from exc


@dataclass(frozen=True)
class ReadPacket:
    kind: str
    data: bytes
    keyframe: bool
    time_s: float


def read_tracks(path: Path) -> list[Track]:
    """The tracks of a written file (a part cut short included); ContainerError if unreadable."""
    try:
        with av.open(str(path), "r") as container:
            return [_track_of(stream) for stream in container.streams if stream.type in ("video", "audio")]
    except (av.FFmpegError, OSError) as exc:
        raise ContainerError(f"cannot read {path}: {exc}") from exc


def read_packets(path: Path) -> Iterator[ReadPacket]:
    """Every whole packet of a file in file order, up to where it was cut (seam 3)."""
    try:
        container: Any = av.open(str(path), "r")
    except (av.FFmpegError, OSError) as exc:
        raise ContainerError(f"cannot read {path}: {exc}") from exc
    with container:
        kinds = {stream.index: stream.type for stream in container.streams if stream.type in ("video", "audio")}
        demuxed = container.demux()
        while True:
            try:
                packet = next(demuxed)
            except StopIteration:
                return
            except (av.FFmpegError, OSError):
                return  # the cut: everything before it was whole
            kind = kinds.get(packet.stream.index)
            if kind is None or packet.size == 0 or packet.pts is None or packet.is_corrupt:
                continue
            assert packet.time_base is not None
            yield ReadPacket(kind, bytes(packet), packet.is_keyframe, float(packet.pts * packet.time_base))


def _track_of(stream: Any) -> Track:
    context = stream.codec_context
    extradata = bytes(context.extradata or b"")
    name = context.codec.canonical_name  # "vp8", whichever decoder FFmpeg would pick
    if stream.type == "video":
        return Track("video", name, context.width, context.height, extradata=extradata)
    return Track("audio", context.name, sample_rate=context.sample_rate or 48000,
                 channels=context.channels or 2, extradata=extradata)
