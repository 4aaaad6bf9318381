"""Media sources as aiortc tracks: test pattern, tone, camera/mic, screen, file.

Theory of operation
-------------------
The publisher always sends two tracks, :class:`StationVideo` and :class:`StationAudio`.
Each wraps an optional *device* (a PyAV input through aiortc's ``MediaPlayer``: a camera,
microphone, screen grabber or file) and a built-in fallback (the test pattern / silence).
Every frame leaving them is normalised (size, pixel format, frame rate and no picture type
for video; s16 mono 48 kHz for audio) and re-stamped on the track's own clock, so switching between device and
fallback mid-stream never confuses the encoder or the RTP timestamps.

When the device fails (unplugged camera: the read errors or stalls), the track drops it,
shows the pattern with a "KAMERA TIDAK TERSEDIA" overlay, reports ``camera_status =
"missing"`` and retries opening it every ``camera_retry_s`` in a worker thread. A device
that opens again is used from its next frame on.

``latest`` always holds the most recent video frame, for thumbnails.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fractions
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import av
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients.config import StationConfig, source_kind
from clients.pattern import PatternLayout, render, tone_frames

log = logging.getLogger("jaga.station.sources")

VIDEO_CLOCK = 90_000
AUDIO_RATE = 48_000
AUDIO_PTIME = 0.020
MISSING_OVERLAY = "kamera tidak tersedia"
DEVICE_READ_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class DeviceSpec:
    """How to open one PyAV input: ``av.open(file, format=format, options=options)``."""

    file: str
    format: str | None
    options: dict[str, str]
    loop: bool = False

    def describe(self) -> str:
        return f"{self.format or 'file'}:{self.file}"


def camera_spec(config: StationConfig) -> DeviceSpec:
    video = config.video
    size = {"video_size": f"{video.width}x{video.height}", "framerate": str(video.fps)}
    name = config.devices.camera
    if sys.platform.startswith("win"):
        return DeviceSpec(name if name.startswith("video=") else f"video={name or 'USB Camera'}", "dshow", size)
    if sys.platform == "darwin":
        return DeviceSpec(name or "default:none", "avfoundation", size)
    return DeviceSpec(name or "/dev/video0", "v4l2", size)


def microphone_spec(config: StationConfig) -> DeviceSpec:
    name = config.devices.microphone
    if sys.platform.startswith("win"):
        return DeviceSpec(name if name.startswith("audio=") else f"audio={name or 'Microphone'}", "dshow", {})
    if sys.platform == "darwin":
        return DeviceSpec(name or "none:default", "avfoundation", {})
    if ":" in name and name.split(":")[0] in ("alsa", "pulse"):
        fmt, _, device = name.partition(":")
    else:
        fmt, device = "alsa", name
    return DeviceSpec(device or "default", fmt, {})


def screen_spec(config: StationConfig) -> DeviceSpec:
    rate = {"framerate": str(config.video.fps)}
    if sys.platform.startswith("win"):
        return DeviceSpec("desktop", "gdigrab", rate)
    if sys.platform == "darwin":
        return DeviceSpec("Capture screen 0", "avfoundation", rate)
    import os

    return DeviceSpec(os.environ.get("DISPLAY", ":0.0"), "x11grab", rate)


def video_spec(config: StationConfig) -> DeviceSpec | None:
    kind = source_kind(config.source)
    if kind == "camera":
        return camera_spec(config)
    if kind == "screen":
        return screen_spec(config)
    if kind == "file":
        return DeviceSpec(str(config.resolve(config.source)), None, {}, loop=True)
    return None


def audio_spec(config: StationConfig) -> DeviceSpec | None:
    if not config.audio.enabled:
        return None
    kind = source_kind(config.source)
    if kind in ("camera", "screen"):
        return microphone_spec(config)
    if kind == "file":
        return DeviceSpec(str(config.resolve(config.source)), None, {}, loop=True)
    return None


def open_player(spec: DeviceSpec, kind: str) -> MediaPlayer:
    """Open a device (blocking: call in a thread); ValueError if it has no ``kind`` stream."""
    player = MediaPlayer(spec.file, format=spec.format, options=spec.options or None, timeout=5,
                         loop=spec.loop)
    if getattr(player, kind) is None:
        raise ValueError(f"{spec.describe()} has no {kind} stream")
    return player


class _DeviceSlot:
    """One optional device track, reopened in the background while it is missing."""

    def __init__(self, spec: DeviceSpec | None, kind: str, retry_s: float,
                 opener: Callable[[DeviceSpec, str], Any] = open_player) -> None:
        self.spec = spec
        self.kind = kind
        self.retry_s = retry_s
        self.opener = opener
        self.track: MediaStreamTrack | None = None
        self.last_error = ""
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def wanted(self) -> bool:
        return self.spec is not None

    def start(self) -> None:
        if self.spec is not None and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._keep_open())

    async def _keep_open(self) -> None:
        assert self.spec is not None
        while not self._closed:
            if self.track is None:
                try:
                    player = await asyncio.to_thread(self.opener, self.spec, self.kind)
                    self.track = getattr(player, self.kind)
                    self.last_error = ""
                    log.info("%s opened: %s", self.kind, self.spec.describe())
                except Exception as exc:  # any PyAV/OS error means "not there now"
                    message = f"{self.spec.describe()}: {exc}"
                    if message != self.last_error:
                        log.warning("%s not available (%s); retrying every %.0f s", self.kind, message,
                                    self.retry_s)
                    self.last_error = message
            await asyncio.sleep(self.retry_s)  # a retry cadence, not a wait for state

    async def read(self) -> Any | None:
        """The device's next frame, or None when it has none (then it is dropped)."""
        track = self.track
        if track is None:
            return None
        try:
            return await asyncio.wait_for(track.recv(), DEVICE_READ_TIMEOUT_S)
        except (TimeoutError, MediaStreamError, OSError, av.FFmpegError) as exc:
            if self.track is track:
                self.last_error = f"{self.kind} stopped: {type(exc).__name__} {exc}".strip()
                log.warning("%s lost (%s); falling back", self.kind, self.last_error)
                self.drop()
            return None

    def drop(self) -> None:
        track, self.track = self.track, None
        if track is not None:
            try:
                track.stop()
            except Exception:
                log.debug("stopping %s failed", self.kind, exc_info=True)

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        self.drop()


class StationVideo(MediaStreamTrack):
    kind = "video"

    def __init__(self, config: StationConfig, label: str, now: Callable[[], float] = time.time,
                 timezone: Callable[[], Any] = lambda: None, opener: Callable[[DeviceSpec, str], Any] = open_player
                 ) -> None:
        super().__init__()
        video = config.video
        self.width, self.height, self.fps = video.width, video.height, video.fps
        self.label = label
        self.now = now  # the hub's time, for the clock on the pattern
        self.timezone = timezone
        self.device = _DeviceSlot(video_spec(config), "video", config.devices.camera_retry_s, opener)
        self.source = source_kind(config.source)
        self.latest: av.VideoFrame | None = None
        self.frames = 0
        self._start: float | None = None
        self._last_pts = -1
        probe = av.VideoFrame(self.width, self.height, "yuv420p")
        self._layout = PatternLayout(self.width, self.height, probe.planes[0].line_size, probe.planes[1].line_size)

    @property
    def camera_status(self) -> str:
        """For heartbeats: ``test`` (by config), ``ok``, or ``missing`` (falling back)."""
        if not self.device.wanted:
            return "test"
        return "ok" if self.device.track is not None else "missing"

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
            self.device.start()
        frame = None
        while self.device.track is not None and frame is None:
            frame = await self.device.read()
            if frame is not None and self.latest is not None:
                # Too soon for the configured rate: drop it (cameras often run at 30 fps).
                if (loop.time() - self._start) * self.fps < self.frames - 0.5:
                    frame = None
        if frame is None:
            frame = await self._pattern(loop)
        elif frame.width != self.width or frame.height != self.height or frame.format.name != "yuv420p":
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
        pts = max(self._last_pts + 1, int((loop.time() - self._start) * VIDEO_CLOCK))
        frame.pts, frame.time_base = pts, fractions.Fraction(1, VIDEO_CLOCK)
        # Decoders mark every camera frame (rawvideo, MJPEG) as an I picture, and FFmpeg's
        # libvpx wrapper turns that mark into a forced keyframe: VP8 then sent every frame as
        # a keyframe, twice its target bitrate (measured: 975 kbps for 500). Clear it.
        frame.pict_type = av.video.frame.PictureType.NONE
        self._last_pts = pts
        self.frames += 1
        self.latest = frame
        return frame

    async def _pattern(self, loop: asyncio.AbstractEventLoop) -> av.VideoFrame:
        assert self._start is not None
        due = self._start + self.frames / self.fps
        if due > loop.time():
            await asyncio.sleep(due - loop.time())  # pacing: one frame per 1/fps
        overlay = MISSING_OVERLAY if self.device.wanted else ""
        planes = render(self._layout, self.frames, self.fps, self.clock_text(), self.label, overlay)
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        for plane, data in zip(frame.planes, planes, strict=True):  # Y, U, V
            plane.update(data)
        return frame

    def clock_text(self) -> str:
        tz = self.timezone()
        stamp = dt.datetime.fromtimestamp(self.now(), tz) if tz else dt.datetime.fromtimestamp(self.now())
        return stamp.strftime("%Y-%m-%d %H:%M:%S") + (" WIB" if tz and str(tz) == "Asia/Jakarta" else "")

    def stop(self) -> None:
        super().stop()
        self.device.close()


class StationAudio(MediaStreamTrack):
    kind = "audio"

    def __init__(self, config: StationConfig, opener: Callable[[DeviceSpec, str], Any] = open_player) -> None:
        super().__init__()
        self.device = _DeviceSlot(audio_spec(config), "audio", config.devices.camera_retry_s, opener)
        self.tone = source_kind(config.source) == "test" and config.audio.enabled
        self.tone_hz = config.audio.tone_hz
        self._samples = 0
        self._start: float | None = None
        self._resampler: av.AudioResampler | None = None
        self._pending: list[av.AudioFrame] = []

    @property
    def microphone_status(self) -> str:
        if not self.device.wanted:
            return "test" if self.tone else "off"
        return "ok" if self.device.track is not None else "missing"

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
            self.device.start()
        frame = self._pending.pop(0) if self._pending else None
        while frame is None and self.device.track is not None:
            raw = await self.device.read()
            if raw is None:
                break
            if self._resampler is None:
                self._resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_RATE)
            raw.pts = None
            self._pending += self._resampler.resample(raw)
            frame = self._pending.pop(0) if self._pending else None
        if frame is None:
            frame = await self._generated(loop)
        frame.pts, frame.time_base = self._samples, fractions.Fraction(1, AUDIO_RATE)
        self._samples += frame.samples
        return frame

    async def _generated(self, loop: asyncio.AbstractEventLoop) -> av.AudioFrame:
        assert self._start is not None
        due = self._start + self._samples / AUDIO_RATE
        if due > loop.time():
            await asyncio.sleep(due - loop.time())  # pacing: real time
        samples = int(AUDIO_RATE * AUDIO_PTIME)
        beep, silence = tone_frames(AUDIO_RATE, samples, self.tone_hz)
        # 200 ms of beep at the start of every second, silence otherwise.
        in_beep = self.tone and (self._samples % AUDIO_RATE) < AUDIO_RATE // 5
        frame = av.AudioFrame(format="s16", layout="mono", samples=samples)
        frame.planes[0].update(beep if in_beep else silence)
        frame.sample_rate = AUDIO_RATE
        return frame

    def stop(self) -> None:
        super().stop()
        self.device.close()
