"""Recording a station's relayed media by remux: RTP → frames → part files → one file.

Theory of operation.

- :class:`StreamRecorder` taps one :class:`~hub.media.station_stream.StationStream` for one
  part of one recording: each RTP packet the relay forwards is queued by the tap with its
  arrival time, and every ``BATCH_S`` the queue goes through a
  :class:`~hub.media.frames.FrameAssembler` per kind and every whole frame into a
  :class:`PartWriter`. Nothing is decoded. (Batches, because the same work done packet by
  packet between the relay's other work cost ~4× as much: cold caches.) A gap (loss the NACKs did not repair, a new
  publisher taking over the stream) drops video until the next keyframe and asks for one
  through the stream's own rate-limited ``request_keyframe``.
- **Time.** ``time_s`` counts seconds since the recording started; a part starts at
  ``start_time_s`` (the service's wall-clock offset of this part). Within one publisher a
  kind's frames are timed by their RTP timestamps, anchored at the arrival of the kind's
  first frame; after a publisher change (or an RTP clock that strays more than
  ``REANCHOR_S`` from the arrival clock) the anchor is taken again from the arrival clock,
  so a 10 s outage is a 10 s gap in the file, not a jump cut. Audio and video are anchored
  separately, each at its first frame's arrival, which keeps them within network jitter.
- :class:`PartWriter` is one part file (WebM for VP8, fragmented MP4 for H.264, written
  to survive ``kill -9``: :mod:`hub.media.containers`). It opens its file at the first
  video keyframe (whose header gives the picture size and, for H.264, the SPS/PPS) and
  drops audio before it, so every part starts decodable.
- :func:`finish` remuxes a recording's parts, in order, into one seekable file: packets
  are copied, the timeline is shifted to start at 0, parts overlapping (a clock that ran
  late) are pushed after their predecessor, and a part cut short is read up to its last
  whole packet.

The tap runs on the event loop in the relay's hot path and only appends to a list; the
batches run on the event loop too (a few ms every ``BATCH_S``). A write error stops this
part (``on_error`` is called once), never the relay.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.media import containers, seams_keyframes
from hub.media.containers import ContainerError, PacketWriter, Track
from hub.media.frames import FrameAssembler, annexb_nal_units, video_size
from hub.media.tap_queue import Batch, TappedStream, TapQueue
from hub.media.timeline import MediaTimeline

logger = logging.getLogger(__name__)

CLOCK_RATES = {"video": 90000, "audio": 48000}  # VP8, H.264 and Opus in RTP
ANCHOR_STEPS_S = {"video": 0.1, "audio": 0.02}  # a re-anchored kind's least step after its last frame
# packets are queued by the tap and turned into frames and written this often: each batch
# costs ≈ 0.18 ms of cold start besides ≈ 2.6 µs a packet, so 1 s cost 0.63× what 0.5 s did
# (docs/benchmarks.md, section 7); a kill -9 loses the batch besides the open cluster (≤ 1 s)
BATCH_S = 1.0
MAX_BATCH = 4096  # ... or when this many wait (an event loop held up)


class RecorderError(Exception):
    """A part could not go on (its file failed, or the publisher's codec changed)."""


def part_suffix(video_codec: str) -> str:
    """".webm" for VP8 (or no video), ".mp4" for H.264."""
    return containers.SUFFIXES[containers.format_for(video_codec)]


class PartWriter:
    """One part file; frames in, packets out; never decodes.

    ``video_codec`` / ``audio_codec``: mime types as :meth:`StationStream.codecs` gives them
    (``"video/vp8"``, ``"audio/opus"``); ``video_codec`` "" for an audio-only part. Frames
    before the first video keyframe are dropped; the file exists from that keyframe on.
    ``bytes_written`` counts the encoded frames written (the file's size once closed).
    """

    def __init__(self, path: Path, video_codec: str, audio_codec: str | None, start_pts_s: float) -> None:
        self.path = path
        self.video_codec = video_codec.lower()
        self.audio_codec = (audio_codec or "").lower()
        self.start_pts_s = start_pts_s
        self.format = containers.format_for(self.video_codec)
        self.bytes_written = 0
        self.last_time_s = start_pts_s
        self.frames_written = 0
        self._writer: PacketWriter | None = None
        self._closed = False

    @property
    def opened(self) -> bool:
        return self._writer is not None

    def write(self, kind: str, frame: bytes, keyframe: bool, time_s: float) -> None:
        """One encoded frame at ``time_s`` (seconds since the recording started)."""
        if self._closed:
            return
        if self._writer is None:
            if self.video_codec and not (kind == "video" and keyframe):
                return
            self._writer = self._open(kind, frame)
            if self._writer is None:
                return  # a keyframe without its picture size / SPS: wait for the next one
        time_s = max(time_s, self.start_pts_s)
        self._writer.write(kind, frame, keyframe, time_s)
        self.bytes_written += len(frame)
        self.frames_written += 1
        self.last_time_s = max(self.last_time_s, time_s)

    def _open(self, kind: str, first_frame: bytes) -> PacketWriter | None:
        tracks = []
        if self.video_codec:
            size = video_size(self.video_codec, first_frame)
            if size is None:
                return None
            extradata = b""
            if containers.codec_name(self.video_codec) == "h264":
                extradata = containers.h264_extradata(annexb_nal_units(first_frame))
                if not extradata:
                    return None
            tracks.append(Track("video", containers.codec_name(self.video_codec), size[0], size[1],
                                extradata=extradata))
        if self.audio_codec:
            tracks.append(Track("audio", containers.codec_name(self.audio_codec), extradata=containers.opus_head()))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return PacketWriter(self.path, self.format, tracks, containers.PART_OPTIONS[self.format])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
            try:
                self.bytes_written = os.path.getsize(self.path)
            except OSError:
                pass


class StreamRecorder:
    """Taps one StationStream for one part of one recording.

    ``start`` adds the tap and asks for a keyframe; frames before the first keyframe are
    dropped. ``stop`` removes the tap and closes the part, returning the last ``time_s``
    written. ``on_error`` is called once, on the event loop, if the part fails; the tap is
    removed then and ``stop`` still closes what can be closed.
    """

    def __init__(self, stream: TappedStream, part_path: Path, start_time_s: float,
                 on_error: Callable[[Exception], None], clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.part_path = part_path
        self.start_time_s = start_time_s
        self._on_error = on_error
        self._clock = clock
        self._codecs = {kind: mime.lower() for kind, mime in stream.codecs().items()}
        self.writer = PartWriter(part_path, self._codecs.get("video", ""), self._codecs.get("audio"), start_time_s)
        self._assemblers = {kind: FrameAssembler(mime, seams_keyframes.depayload)
                            for kind, mime in self._codecs.items() if kind in CLOCK_RATES}
        self._timelines = {kind: MediaTimeline(CLOCK_RATES[kind], ANCHOR_STEPS_S[kind]) for kind in self._assemblers}
        self._started_at = 0.0
        self._tap = TapQueue(stream, self._process_batch, BATCH_S, MAX_BATCH, clock)
        self._failed = False
        self.cpu_s = 0.0  # thread CPU of the batches: the recorder's own cost, apart from the relay's

    def start(self) -> None:
        self._started_at = self._clock()
        self._tap.start()
        self.stream.request_keyframe()

    def stop(self) -> float:
        self._tap.stop()
        self._tap.flush()
        try:
            self.writer.close()
        except ContainerError as exc:
            logger.warning("closing %s: %s", self.part_path, exc)
        return self.writer.last_time_s

    @property
    def bytes_written(self) -> int:
        return self.writer.bytes_written

    def _process_batch(self, queue: Batch) -> None:
        """The tap's batch (:mod:`hub.media.tap_queue`): frames assembled and written."""
        if self._failed:
            return
        started = time.thread_time()
        try:
            for item in queue:
                if item is None:
                    self._new_source()
                    continue
                kind, seq, ts, marker, payload, arrival = item
                assembler = self._assemblers.get(kind)
                if assembler is None:
                    continue
                frames = assembler.push(seq, ts, marker, payload)
                if frames:
                    arrival_s = self.start_time_s + (arrival - self._started_at)
                    timeline = self._timelines[kind]
                    for frame in frames:
                        self.writer.write(kind, frame.data, frame.keyframe,
                                          timeline.time_s(frame.timestamp, arrival_s))
            # once a batch, not per packet: a gap in it asks the publisher for a keyframe
            if any(a.video and a.take_keyframe_request() for a in self._assemblers.values()):
                self.stream.request_keyframe()
        except Exception as exc:  # the relay must go on whatever happens to the file
            self._fail(exc)
        self.cpu_s += time.thread_time() - started

    def _new_source(self) -> None:
        """Another publisher took the stream over: its numbers and clocks start afresh."""
        codecs = {kind: mime.lower() for kind, mime in self.stream.codecs().items()}
        if codecs != self._codecs:
            raise RecorderError(f"the publisher's codecs changed from {self._codecs} to {codecs}")
        for assembler in self._assemblers.values():
            assembler.reset()
        for timeline in self._timelines.values():
            timeline.reanchor()
        self.stream.request_keyframe()

    def _fail(self, exc: Exception) -> None:
        if self._failed:
            return
        self._failed = True
        self._tap.stop()
        logger.error("recording part %s failed: %s", self.part_path, exc)
        try:
            self._on_error(exc)
        except Exception:
            logger.exception("on_error of %s failed", self.part_path)


@dataclass(frozen=True)
class FinishedFile:
    path: Path
    duration_s: float
    bytes: int
    video_codec: str  # mime type, as StationStream.codecs() gives it: "video/vp8"; "" if none
    audio_codec: str  # "audio/opus"; "" if none


_MIMES = {"vp8": "video/vp8", "h264": "video/h264", "opus": "audio/opus"}


def finish(parts: list[Path], out: Path) -> FinishedFile:
    """Remux (copy packets) ``parts``, in order, into one seekable file at ``out``.

    Parts that are missing, empty or unreadable are skipped, and so are parts whose tracks
    differ from the first usable part's (another codec cannot share the file). A part cut
    short is read up to its last whole packet. Raises RecorderError if no part has media.
    Blocking (file I/O): run it in a worker thread.
    """
    usable: list[tuple[Path, list[Track]]] = []
    for part in parts:
        if not part.exists() or part.stat().st_size == 0:
            continue
        try:
            tracks = containers.read_tracks(part)
        except ContainerError as exc:
            logger.warning("recording part %s skipped: %s", part, exc)
            continue
        if not tracks:
            continue
        if usable and _signature(tracks) != _signature(usable[0][1]):
            logger.warning("recording part %s skipped: its codecs differ from the first part's", part)
            continue
        usable.append((part, tracks))
    if not usable:
        raise RecorderError(f"no media in {[str(p) for p in parts]}")
    tracks = usable[0][1]
    video = next((t for t in tracks if t.kind == "video"), None)
    fmt = containers.format_for(_MIMES.get(video.codec, "") if video else "")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    writer = PacketWriter(temporary, fmt, tracks, containers.FINISHED_OPTIONS[fmt])
    origin = _start_time(usable[0][0], {t.kind for t in tracks})
    end_s = 0.0
    previous_end = 0.0  # where the previous part's media ended (in output time)
    try:
        for part, _ in usable:
            shift = 0.0
            first = True
            part_end = previous_end
            for packet in containers.read_packets(part):
                time_s = max(0.0, packet.time_s - origin)
                if first:
                    first = False
                    if time_s < previous_end:  # overlapping the previous part: push it after
                        shift = previous_end - time_s
                time_s += shift
                writer.write(packet.kind, packet.data, packet.keyframe, time_s)
                part_end = max(part_end, time_s + _frame_duration(packet.kind))
            previous_end = part_end
            end_s = max(end_s, part_end)
        writer.close()
    except BaseException:
        writer.close()
        temporary.unlink(missing_ok=True)
        raise
    if not writer.packets_written:
        temporary.unlink(missing_ok=True)
        raise RecorderError(f"no packets in {[str(p) for p, _ in usable]}")
    os.replace(temporary, out)
    audio = next((t for t in tracks if t.kind == "audio"), None)
    return FinishedFile(out, round(end_s, 3), out.stat().st_size,
                        _MIMES.get(video.codec, video.codec) if video else "",
                        _MIMES.get(audio.codec, audio.codec) if audio else "")


def _start_time(part: Path, kinds: set[str]) -> float:
    """The earliest time in ``part``: the first packet of each kind (a few packets read)."""
    firsts: dict[str, float] = {}
    for packet in containers.read_packets(part):
        firsts.setdefault(packet.kind, packet.time_s)
        if set(firsts) >= kinds:
            break
    return min(firsts.values(), default=0.0)


def _signature(tracks: list[Track]) -> list[tuple[str, str]]:
    return sorted((t.kind, t.codec) for t in tracks)


def _frame_duration(kind: str) -> float:
    return 0.02 if kind == "audio" else 1 / 30

