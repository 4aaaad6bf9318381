"""One live station's H.264 + Opus → CMAF parts and segments for (LL-)HLS, by remux.

Theory of operation.

- **Tap.** Like the recorder, :class:`HlsPackager` taps a
  :class:`~hub.media.station_stream.StationStream` (:mod:`hub.media.tap_queue`): every
  forwarded RTP packet is queued with its arrival time, and every ``BATCH_S`` the queue goes through a
  :class:`~hub.media.frames.FrameAssembler` per kind. The video is never decoded or encoded:
  an H.264 access unit's NAL units become one fMP4 sample as they are (:mod:`hub.media.cmaf`).
  Audio is the exception: browsers' HLS wants AAC, publishers send Opus, so audio alone is
  transcoded (:mod:`hub.media.aac`), on one worker thread for the whole process
  (``AUDIO_WORKER``): its AAC frames join the parts cut after they are back.
- **Time.** Both kinds are put on the arrival clock (:class:`~hub.media.timeline.MediaTimeline`,
  seconds since packaging started): video in 90 kHz ticks, audio in 48 kHz samples. A
  segment's program date-time is the wall clock at packaging start plus its first frame's time.
- **Cutting.** A video sample's duration is known when the next frame arrives, so the last
  frame waits for its successor (one frame of delay). Before a frame is added:
  a keyframe from ``KEYFRAME_EARLY_S`` before ``segment_s`` on closes the segment and opens
  the next at that keyframe; a segment that would outgrow ``segment_s`` + ``FORCE_CUT_S``
  without a keyframe is cut anyway (its parts then say they are not independent); any keyframe, or
  a part that would outgrow ``part_s``, closes the part. AAC frames go into the part whose time they fall in
  (a late one into the next). ``KEYFRAME_LEAD_S`` before a segment is due the publisher is
  asked for a keyframe, so segments are ≈ ``segment_s`` whatever its own keyframe interval
  (a little shorter on a fast link, where the answer comes at once).
- **Audio only.** When video stops (an office on its audio-only level, docs/station.md),
  parts are cut on time from the audio, so listeners keep hearing it.
- **Changes.** A new publisher (or the same one after a reconnect) restarts the assemblers
  and the timeline; a keyframe whose SPS/PPS differ from the current init segment's (a new
  picture size) starts a new init segment and a segment marked as a discontinuity.

The packager keeps only the window's media in memory (``keep_segments`` complete segments
and the open one). ``on_change`` is called after every new part, for blocked requests.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.core.hls_playlist import Names, Window, first_msn
from hub.media import cmaf, seams_keyframes
from hub.media.cmaf import AudioTrack, Sample, TrackRun, VideoTrack
from hub.media.frames import FrameAssembler, annexb_nal_units, video_size
from hub.media.tap_queue import Batch, TappedStream, TapQueue
from hub.media.timeline import MediaTimeline

logger = logging.getLogger(__name__)

BATCH_S = 0.1  # queue → frames → parts this often: the delay it adds is small against a part
MAX_BATCH = 2048
VIDEO_RATE = cmaf.VIDEO_TIMESCALE
AUDIO_RATE = 48000
# ask for the next segment's keyframe this long before it is due (the answer takes a round
# trip and a frame) and take any keyframe from KEYFRAME_EARLY_S before it as the segment's end
KEYFRAME_LEAD_S = 0.3
KEYFRAME_EARLY_S = 0.5
FORCE_CUT_S = 0.49  # a segment is never longer than segment_s + this (rounds to the target duration)
VIDEO_STALL_S = 1.0  # no video frame for this long: parts are cut from the audio alone
DEFAULT_FRAME_TICKS = VIDEO_RATE // 15
# Opus → AAC, one batch at a time, for every packaged station of the process: FFmpeg does the
# work with the GIL released, so it runs beside the event loop (on the other core) instead of
# in it (0.12 ms per 20 ms packet, more than the relay's whole ingest: bench/aac_cost.py).
# One thread: a station's batches stay in order, and a CodecContext is used by one thread.
AUDIO_WORKER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="hls-audio")


class AudioTranscoder(Protocol):
    """What the packager needs of :class:`hub.media.aac.OpusToAac`."""

    @property
    def config(self) -> bytes: ...
    @property
    def channels(self) -> int: ...
    def push(self, opus: bytes, pts: int) -> Sequence[AacFrameLike]: ...
    def close(self) -> None: ...


class AacFrameLike(Protocol):
    @property
    def data(self) -> bytes: ...
    @property
    def pts(self) -> int: ...
    @property
    def duration(self) -> int: ...


class PackagingError(Exception):
    """The station's media cannot be packaged (not H.264)."""


@dataclass(frozen=True)
class PackagerOptions:
    part_s: float = 0.4
    segment_s: float = 2.0
    keep_segments: int = 6


@dataclass(slots=True)
class _VideoFrame:
    sample_data: bytes
    ticks: int
    time_s: float
    keyframe: bool


@dataclass(slots=True)
class _OpenPart:
    start_s: float
    video: list[Sample] = field(default_factory=list)
    video_base: int | None = None
    independent: bool = False


class HlsPackager:
    def __init__(self, stream: TappedStream, options: PackagerOptions, transcoder: Callable[[], AudioTranscoder] | None,
                 *, clock: Callable[[], float] = time.monotonic,
                 wall_clock: Callable[[], float] = time.time, run: str | None = None) -> None:
        codecs = {kind: mime.lower() for kind, mime in stream.codecs().items()}
        if codecs.get("video") != "video/h264":
            raise PackagingError(f"HLS needs H.264 video, the station sends {codecs.get('video') or 'no video'}")
        self.stream = stream
        self.options = options
        self.on_change: Callable[[], None] = lambda: None  # set by the owner: wakes blocked requests
        self._clock = clock
        self._wall_clock = wall_clock
        self.names = Names(run or secrets.token_hex(4))
        self.window = Window(self.names, options.segment_s, options.part_s, options.keep_segments)
        self._video_assembler = FrameAssembler("video/h264", seams_keyframes.depayload)
        self._audio_assembler = FrameAssembler("audio/opus", seams_keyframes.depayload) if "audio" in codecs else None
        self._video_timeline = MediaTimeline(VIDEO_RATE, 0.1)
        self._audio_timeline = MediaTimeline(AUDIO_RATE, 0.02)
        self._new_transcoder = transcoder
        self._transcoder: AudioTranscoder | None = None
        self._opus: list[tuple[bytes, int]] = []  # this batch's audio for the worker: (payload, pts)
        self.audio_cpu_s = 0.0  # the worker's thread CPU for this station
        self._audio_generation = 0  # bumped at a publisher change: the old one's frames still coming are dropped
        self.inits: dict[int, bytes] = {}
        self.parts: dict[tuple[int, int], bytes] = {}
        self._segment_bytes: dict[int, bytes] = {}
        self._init_index = -1
        self._init_key: tuple[bytes, bytes] | None = None
        self._video_track: VideoTrack | None = None
        self._sequence = 0  # fragment sequence numbers (mfhd)
        self._pending: _VideoFrame | None = None
        self._part: _OpenPart | None = None
        self._segment_start_s = 0.0
        self._keyframe_asked = False
        self._discontinuity = False
        self._audio: list[AacFrameLike] = []
        self._last_video_s = 0.0
        self._last_video_clock = 0.0
        self._started_at = 0.0
        self._started_wall = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tap = TapQueue(stream, self._process_batch, BATCH_S, MAX_BATCH, clock)
        self.cpu_s = 0.0
        self.failed: Exception | None = None

    # --- life ----------------------------------------------------------------------------

    def start(self) -> None:
        self._started_at = self._clock()
        self._started_wall = self._wall_clock()
        self._tap.start()
        with contextlib.suppress(RuntimeError):  # outside an event loop (tests): audio at once
            self._loop = asyncio.get_running_loop()
        self.stream.request_keyframe()

    def stop(self) -> None:
        self._tap.stop()
        if self._transcoder is not None:
            # after the batches already queued for it, on the thread that uses it
            AUDIO_WORKER.submit(self._transcoder.close)
            self._transcoder = None

    def segment_bytes(self, msn: int) -> bytes | None:
        """A complete segment: its parts' fragments, one after the other."""
        found = self._segment_bytes.get(msn)
        if found is None:
            segment = self.window.find(msn)
            if segment is None or not segment.complete:
                return None
            found = self._segment_bytes[msn] = b"".join(self.parts[(msn, p.index)] for p in segment.parts)
        return found

    # --- the tap and the batches ----------------------------------------------------------

    def _process_batch(self, queue: Batch) -> None:
        """The tap's batch (:mod:`hub.media.tap_queue`): frames → parts."""
        if self.failed is not None:
            return
        started = time.thread_time()
        changed = self.window.version
        try:
            for item in queue:
                if item is None:
                    self._new_source()
                    continue
                kind, seq, ts, marker, payload, arrival = item
                arrival_s = arrival - self._started_at
                if kind == "video":
                    for frame in self._video_assembler.push(seq, ts, marker, payload):
                        self._video_frame(frame.data, frame.keyframe,
                                          self._video_timeline.time_s(frame.timestamp, arrival_s), arrival)
                elif kind == "audio" and self._audio_assembler is not None:
                    for frame in self._audio_assembler.push(seq, ts, marker, payload):
                        self._audio_frame(frame.data, self._audio_timeline.time_s(frame.timestamp, arrival_s))
            self._transcode()
            self._on_time(self._clock())
            if self._video_assembler.take_keyframe_request():
                self.stream.request_keyframe()
        except Exception as exc:  # the relay goes on whatever happens here
            self.failed = exc
            logger.exception("HLS packaging of %s failed", getattr(self.stream, "station_id", "?"))
            self.stop()
        self.cpu_s += time.thread_time() - started
        if self.window.version != changed:
            self.on_change()

    # --- video ---------------------------------------------------------------------------

    def _video_frame(self, data: bytes, keyframe: bool, time_s: float, arrival: float) -> None:
        nal_units = annexb_nal_units(data)
        if keyframe and self._new_init(nal_units, data):
            self._discontinuity = bool(self.window.segments)
        if self._part is None and not keyframe:
            return  # nothing opened yet: wait for a keyframe (asked for at start)
        frame = _VideoFrame(cmaf.avcc_sample(nal_units), round(time_s * VIDEO_RATE), time_s, keyframe)
        self._last_video_s, self._last_video_clock = time_s, arrival
        pending = self._pending
        if pending is not None:
            self._add_video(pending, max(1, frame.ticks - pending.ticks))
        if self._part is None or (keyframe and (self._discontinuity or self._segment_due(time_s))):
            self._cut(time_s, new_segment=True, independent=True)
        elif self._segment_overdue(time_s, pending):
            self._cut(time_s, new_segment=True, independent=False)
        elif keyframe or self._part_full(time_s, pending):
            self._cut(time_s, new_segment=False, independent=keyframe)
        self._pending = frame
        self._ask_keyframe_if_due(time_s)

    def _new_init(self, nal_units: list[bytes], data: bytes) -> bool:
        sps = next((nal for nal in nal_units if nal and nal[0] & 0x1F == 7), None)
        pps = next((nal for nal in nal_units if nal and nal[0] & 0x1F == 8), None)
        if sps is None or pps is None or (sps, pps) == self._init_key:
            return False
        size = video_size("video/h264", data) or (0, 0)
        self._init_key = (sps, pps)
        self._video_track = VideoTrack(sps, pps, size[0], size[1])
        if self._transcoder is None and self._new_transcoder is not None and self._audio_assembler is not None:
            self._transcoder = self._new_transcoder()
        transcoder = self._transcoder
        audio = AudioTrack(transcoder.config, channels=transcoder.channels) if transcoder is not None else None
        self._init_index += 1
        self.inits[self._init_index] = cmaf.init_segment(self._video_track, audio)
        return True

    def _segment_due(self, time_s: float) -> bool:
        """A keyframe now may start the next segment: it is about when one was asked for."""
        return time_s - self._segment_start_s >= self.options.segment_s - KEYFRAME_EARLY_S

    def _segment_overdue(self, time_s: float, previous: _VideoFrame | None) -> bool:
        """No keyframe came: cut before the segment outgrows what rounds to the target duration."""
        frame_s = time_s - previous.time_s if previous is not None else 0.0
        return time_s + frame_s - self._segment_start_s > self.options.segment_s + FORCE_CUT_S

    def _part_full(self, time_s: float, previous: _VideoFrame | None) -> bool:
        frame_s = time_s - previous.time_s if previous is not None else 0.0
        return time_s + frame_s - self._part_start_s > self.options.part_s + 1e-6

    @property
    def _part_start_s(self) -> float:
        return self._part.start_s if self._part is not None else 0.0

    def _add_video(self, frame: _VideoFrame, duration: int) -> None:
        part = self._part
        if part is None:
            return
        if part.video_base is None:
            part.video_base = frame.ticks
        part.video.append(Sample(frame.sample_data, duration, frame.keyframe))

    def _ask_keyframe_if_due(self, time_s: float) -> None:
        if not self._keyframe_asked and time_s - self._segment_start_s >= self.options.segment_s - KEYFRAME_LEAD_S:
            self._keyframe_asked = True
            self.stream.request_keyframe()

    # --- audio ---------------------------------------------------------------------------

    def _audio_frame(self, opus: bytes, time_s: float) -> None:
        if self._part is None or self._transcoder is None:
            return  # audio waits for the first video keyframe: every segment starts with a picture
        self._opus.append((opus, round(time_s * AUDIO_RATE)))

    def _transcode(self) -> None:
        """Send the batch's audio to the worker; its AAC frames join the next parts cut (a
        part takes the frames that are back by then; a later one takes the rest: each run
        carries its own start time, so nothing is out of place)."""
        batch, self._opus = self._opus, []
        transcoder = self._transcoder
        if not batch or transcoder is None:
            return
        if self._loop is None:  # no event loop (tests): at once
            self._audio.extend(_transcode_batch(transcoder, batch)[0])
            return
        loop = self._loop
        generation = self._audio_generation
        job = AUDIO_WORKER.submit(_transcode_batch, transcoder, batch)
        job.add_done_callback(lambda done: loop.call_soon_threadsafe(self._transcoded, transcoder, generation, done))

    def _transcoded(self, transcoder: AudioTranscoder, generation: int,
                    job: concurrent.futures.Future[tuple[list[Any], float]]) -> None:
        if transcoder is not self._transcoder or self.failed is not None:
            return  # stopped meanwhile
        try:
            frames, cpu_s = job.result()
        except Exception as exc:
            self.failed = exc
            logger.exception("HLS audio of %s failed", getattr(self.stream, "station_id", "?"))
            self.stop()
            self.on_change()
            return
        self.audio_cpu_s += cpu_s
        if generation == self._audio_generation:
            self._audio.extend(frames)

    # --- cutting -------------------------------------------------------------------------

    def _on_time(self, now: float) -> None:
        """Video stopped (audio-only level, a stalled camera): cut on the audio's time."""
        if self._part is None or now - self._last_video_clock < VIDEO_STALL_S or not self._audio:
            return
        if self._pending is not None:
            self._add_video(self._pending, DEFAULT_FRAME_TICKS)
            self._pending = None
        audio_end_s = (self._audio[-1].pts + self._audio[-1].duration) / AUDIO_RATE
        if audio_end_s - self._part.start_s < self.options.part_s:
            return
        due = audio_end_s - self._segment_start_s >= self.options.segment_s
        self._cut(audio_end_s, new_segment=due, independent=True)

    def _cut(self, at_s: float, *, new_segment: bool, independent: bool) -> None:
        """Close the open part at ``at_s`` (and the segment if ``new_segment``); open the next."""
        part = self._part
        if part is not None:
            self._publish_part(part, at_s)
        if new_segment or part is None:
            self._next_segment(at_s)
        self._part = _OpenPart(at_s, independent=independent)

    def _flush(self) -> None:
        """The publisher changed: what it sent goes out now (one frame's duration for its
        last frame), so the gap until the next one is not counted into a part."""
        pending, part = self._pending, self._part
        if part is None:
            return
        end_s = part.start_s
        if pending is not None:
            self._add_video(pending, DEFAULT_FRAME_TICKS)
            end_s = pending.time_s + DEFAULT_FRAME_TICKS / VIDEO_RATE
        self._publish_part(part, max(end_s, self._last_video_s))
        self._pending = self._part = None
        self._audio.clear()
        self._opus.clear()
        self._audio_generation += 1
        if self.window.open is not None and self.window.open.parts:
            self.window.close_segment()

    def _publish_part(self, part: _OpenPart, end_s: float) -> None:
        end_audio = round(end_s * AUDIO_RATE)
        audio = [frame for frame in self._audio if frame.pts < end_audio]
        if audio:
            self._audio = self._audio[len(audio):]
        runs = []
        if part.video:
            runs.append(TrackRun(cmaf.VIDEO_TRACK_ID, part.video_base or 0, part.video))
        if audio:
            runs.append(TrackRun(cmaf.AUDIO_TRACK_ID, audio[0].pts,
                                 [Sample(frame.data, frame.duration) for frame in audio]))
        if not runs:
            return
        self._sequence += 1
        fragment = cmaf.media_fragment(self._sequence, runs)
        segment = self.window.open
        assert segment is not None
        self.parts[(segment.msn, len(segment.parts))] = fragment
        independent = part.independent or (not part.video and bool(audio))
        self.window.add_part(max(end_s - part.start_s, 0.001), independent, len(fragment))

    def _next_segment(self, at_s: float) -> None:
        segment = self.window.open
        program_time = self._started_wall + at_s
        if segment is not None and not segment.parts:  # cut twice at one frame: start it again
            segment.init, segment.program_time = self._init_index, program_time
            segment.discontinuity |= self._discontinuity
        else:
            self.window.close_segment()
            msn = (self.window.segments[-1].msn + 1 if self.window.segments
                   else first_msn(self._wall_clock(), self.options.segment_s))
            self.window.open_segment(msn, self._init_index, program_time, self._discontinuity)
        self._discontinuity = False
        self._segment_start_s = at_s
        self._keyframe_asked = False
        self._forget_old_media()

    def _forget_old_media(self) -> None:
        oldest = self.window.segments[0].msn
        for key in [key for key in self.parts if key[0] < oldest]:
            del self.parts[key]
        for msn in [msn for msn in self._segment_bytes if msn < oldest]:
            del self._segment_bytes[msn]
        used = {segment.init for segment in self.window.segments}
        for index in [index for index in self.inits if index not in used and index != self._init_index]:
            del self.inits[index]

    def _new_source(self) -> None:
        """Another publisher (or the same after a reconnect): its numbers and clocks start afresh."""
        codecs = {kind: mime.lower() for kind, mime in self.stream.codecs().items()}
        if codecs.get("video") != "video/h264":
            raise PackagingError(f"the new publisher sends {codecs.get('video') or 'no video'}, not H.264")
        self._flush()
        self._video_assembler.reset()
        if self._audio_assembler is not None:
            self._audio_assembler.reset()
        self._video_timeline.reanchor()
        self._audio_timeline.reanchor()
        self._pending = None
        self._discontinuity = bool(self.window.segments)
        self.stream.request_keyframe()


def _transcode_batch(transcoder: AudioTranscoder, batch: list[tuple[bytes, int]]) -> tuple[list[Any], float]:
    """On the audio worker: one station's batch of Opus packets → AAC frames, and its CPU."""
    started = time.thread_time()
    frames: list[Any] = []
    for opus, pts in batch:
        frames.extend(transcoder.push(opus, pts))
    return frames, time.thread_time() - started
