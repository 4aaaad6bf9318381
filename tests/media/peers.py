"""Real aiortc publishers and viewers for the relay tests, over 127.0.0.1.

The publisher sends a deterministic test pattern (four flat quadrants, plus a block moving
along the bottom band so that delta frames carry changes) and a 400 Hz tone. A viewer
decodes everything and classifies each picture: which pattern it shows, or "corrupt" if
its quadrants are off (what a frame decoded without its keyframe looks like).
"""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hub.media import MediaRelay
from hub.media.seams_peers import close_peer_connection, new_peer_connection
from jaga.ice_hosts import announced_host_addresses
from tests.kit import wait_until

LOOPBACK = ("127.0.0.1",)
WIDTH, HEIGHT, FPS = 320, 240, 15
BAND = 32  # bottom rows where the moving block runs; not checked
PATTERNS = {"A": (40, 100, 160, 220), "B": (220, 160, 100, 40)}
TOLERANCE = 28
WAIT_S = 10.0  # how long a peer waits for media or a state change (nominal: the kit scales it)


def _luma_plane(levels: tuple[int, int, int, int]) -> bytes:
    half_w, half_h = WIDTH // 2, HEIGHT // 2
    rows = []
    for y in range(HEIGHT):
        left, right = (levels[0], levels[1]) if y < half_h else (levels[2], levels[3])
        rows.append(bytes([left]) * half_w + bytes([right]) * half_w)
    return b"".join(rows)


async def _pace(track: PatternTrack | ToneTrack, period: float) -> None:
    """Hold a live source to one frame per ``period`` on its own clock; counts the frame."""
    if track.readyState != "live":
        raise MediaStreamError
    if not track.flowing.is_set():  # paused: no frames, so no RTP; then on from now, no burst
        await track.flowing.wait()
        track._start = time.monotonic() - track._count * period
    if track._start is None:
        track._start = time.monotonic()
        return
    track._count += 1
    delay = track._start + track._count * period - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)  # pacing a live source, not waiting for an event


class PatternTrack(MediaStreamTrack):
    """A paced 320x240 @ 15 fps test pattern."""

    kind = "video"

    def __init__(self, pattern: str = "A") -> None:
        super().__init__()
        self._luma = _luma_plane(PATTERNS[pattern])
        self._chroma = bytes([128]) * (WIDTH * HEIGHT // 4)
        self._start: float | None = None
        self._count = 0
        self.flowing = asyncio.Event()  # cleared: the track pauses (Publisher.pause)
        self.flowing.set()

    @property
    def frames_sent(self) -> int:
        """Pictures handed to the encoder so far."""
        return 0 if self._start is None else self._count + 1

    async def recv(self) -> av.VideoFrame:
        await _pace(self, 1 / FPS)
        luma = bytearray(self._luma)
        x = (self._count * 8) % (WIDTH - 16)
        for y in range(HEIGHT - BAND + 8, HEIGHT - 8):
            luma[y * WIDTH + x : y * WIDTH + x + 16] = b"\xff" * 16
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(self._chroma)
        frame.planes[2].update(self._chroma)
        frame.pts = self._count * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


class ToneTrack(MediaStreamTrack):
    """A paced 400 Hz tone in 20 ms frames (400 Hz fits 960 samples exactly)."""

    kind = "audio"
    SAMPLES = 960

    def __init__(self) -> None:
        super().__init__()
        tone = array.array("h", (int(8000 * math.sin(2 * math.pi * 400 * i / 48000)) for i in range(self.SAMPLES)))
        self._pcm = tone.tobytes()
        self._start: float | None = None
        self._count = 0
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def recv(self) -> av.AudioFrame:
        await _pace(self, 0.02)
        frame = av.AudioFrame(format="s16", layout="mono", samples=self.SAMPLES)
        frame.planes[0].update(self._pcm)
        frame.sample_rate = 48000
        frame.pts = self._count * self.SAMPLES
        frame.time_base = fractions.Fraction(1, 48000)
        return frame


def classify(frame: av.VideoFrame) -> str:
    """Which pattern a decoded picture shows: "A", "B", "corrupt" or "wrong-size"."""
    if (frame.width, frame.height) != (WIDTH, HEIGHT):
        return "wrong-size"
    plane = frame.planes[0]
    data, stride = bytes(plane), plane.line_size
    usable_h = HEIGHT - BAND
    boxes = [(0, 0), (WIDTH // 2, 0), (0, HEIGHT // 2), (WIDTH // 2, HEIGHT // 2)]
    means = []
    for x0, y0 in boxes:
        samples = [
            data[y * stride + x]
            for y in range(y0 + 12, min(y0 + HEIGHT // 2, usable_h) - 12, 6)
            for x in range(x0 + 12, x0 + WIDTH // 2 - 12, 6)
        ]
        means.append(sum(samples) / len(samples))
    for name, levels in PATTERNS.items():
        if all(abs(m - level) <= TOLERANCE for m, level in zip(means, levels, strict=True)):
            return name
    return "corrupt"


def prefer(pc: RTCPeerConnection, kind: str, codec_name: str) -> None:
    """Force one codec (plus RTX) on the peer's transceiver of ``kind``."""
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in capabilities if c.name.lower() in (codec_name.lower(), "rtx")]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == kind:
            transceiver.setCodecPreferences(chosen)


async def make_offer(pc: RTCPeerConnection) -> str:
    offer = await pc.createOffer()
    with announced_host_addresses(LOOPBACK):
        await pc.setLocalDescription(offer)
    return pc.localDescription.sdp


async def wait_for_state(pc: RTCPeerConnection, wanted: str, timeout: float = WAIT_S) -> None:
    changed = asyncio.Event()
    pc.on("connectionstatechange", changed.set)
    try:
        await wait_until(lambda: pc.connectionState == wanted, timeout, f"the peer connection to be {wanted}",
                         changed=changed)
    finally:
        pc.remove_listener("connectionstatechange", changed.set)


@dataclass
class Publisher:
    pc: RTCPeerConnection
    session_id: str = ""

    @classmethod
    async def start(
        cls, relay: MediaRelay, station: str, *, video: str | None = "VP8", audio: bool = True, pattern: str = "A",
        owner: str = "station:test", client_addr: str = "127.0.0.1",
    ) -> Publisher:
        pc = new_peer_connection(())
        if video:
            pc.addTransceiver(PatternTrack(pattern), direction="sendonly")
            prefer(pc, "video", video)
        if audio:
            pc.addTransceiver(ToneTrack(), direction="sendonly")
        offer = await make_offer(pc)
        try:
            session = await relay.publish(station, offer, owner=owner, client_addr=client_addr)
        except BaseException:
            await close_peer_connection(pc)
            raise
        await pc.setRemoteDescription(RTCSessionDescription(sdp=session.answer_sdp, type="answer"))
        return cls(pc, session.id)

    def pause(self, *kinds: str) -> None:
        """Stop sending ``kinds`` (no frames, so no RTP) until :meth:`resume`: a stall."""
        for track in self._tracks(kinds):
            track.flowing.clear()

    def resume(self, *kinds: str) -> None:
        for track in self._tracks(kinds):
            track.flowing.set()

    def _tracks(self, kinds: tuple[str, ...]) -> list[PatternTrack | ToneTrack]:
        tracks = [sender.track for sender in self.pc.getSenders() if sender.track is not None]
        return [t for t in tracks if t.kind in kinds and isinstance(t, (PatternTrack, ToneTrack))]

    async def close(self) -> None:
        await close_peer_connection(self.pc)


@dataclass
class Viewer:
    """Receives and decodes a station; records every picture and audio level it gets."""

    pc: RTCPeerConnection
    session_id: str = ""
    pictures: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time, class)
    audio_frames: int = 0
    loud_audio_frames: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _progress: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    async def start(
        cls, relay: MediaRelay, station: str, *, video: str | None = None, audio: bool = True,
        owner: str = "public", client_addr: str = "127.0.0.1",
    ) -> Viewer:
        viewer, offer = await cls.offering(video=video, audio=audio)
        await viewer.join(relay, station, offer, owner=owner, client_addr=client_addr)
        return viewer

    @classmethod
    async def offering(cls, *, video: str | None = None, audio: bool = True) -> tuple[Viewer, str]:
        """A viewer and its offer, not yet sent (``join`` sends it): to send several at once."""
        pc = new_peer_connection(())
        viewer = cls(pc)
        pc.addTransceiver("video", direction="recvonly")
        if video:
            prefer(pc, "video", video)
        if audio:
            pc.addTransceiver("audio", direction="recvonly")
        pc.on("track", viewer._consume)
        return viewer, await make_offer(pc)

    async def join(self, relay: MediaRelay, station: str, offer: str, *, owner: str = "public",
                   client_addr: str = "127.0.0.1") -> None:
        try:
            session = await relay.view(station, offer, owner=owner, client_addr=client_addr)
        except BaseException:
            await close_peer_connection(self.pc)
            raise
        self.session_id = session.id
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=session.answer_sdp, type="answer"))

    def _consume(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.ensure_future(self._read(track)))

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, av.VideoFrame):
                    self.pictures.append((time.monotonic(), classify(frame)))
                elif isinstance(frame, av.AudioFrame):
                    self.audio_frames += 1
                    pcm = array.array("h", bytes(frame.planes[0]))
                    if pcm and max(abs(s) for s in pcm[:: max(1, len(pcm) // 64)]) > 1000:
                        self.loud_audio_frames += 1
                self._progress.set()
        except MediaStreamError:
            self.ended.set()

    async def wait_for(self, pictures: int = 0, audio: int = 0, pattern: str | None = None,
                       timeout: float = WAIT_S) -> None:
        """Wait until this many pictures (of ``pattern``, if given) and audio frames arrived."""
        def done() -> bool:
            seen = [c for _, c in self.pictures if pattern is None or c == pattern]
            return len(seen) >= pictures and self.loud_audio_frames >= audio

        what = f"{pictures} pictures{f' of {pattern}' if pattern else ''} and {audio} loud audio frames"
        await wait_until(done, timeout, what, changed=self._progress)

    async def close(self) -> None:
        await close_peer_connection(self.pc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# (payload type, sequence number, timestamp, marker, payload) of each packet a test receiver gets
RtpSink = Callable[[int, int, int, int, bytes], None]


def tap_rtp(receiver: Any, on_packet: RtpSink) -> None:
    """Call ``on_packet`` for each RTP packet the aiortc ``receiver`` of a test viewer gets,
    before aiortc handles it (RTX still wrapped). Call before the receiver starts: the DTLS
    transport looks ``_handle_rtp_packet`` up on the instance for every packet."""
    handle = receiver._handle_rtp_packet

    async def tapped(packet: Any, arrival_time_ms: int) -> None:
        on_packet(packet.payload_type, packet.sequence_number, packet.timestamp, packet.marker, packet.payload)
        await handle(packet, arrival_time_ms=arrival_time_ms)

    receiver._handle_rtp_packet = tapped


async def whip_publish(http: Any, station: str, token: str, video: MediaStreamTrack) -> RTCPeerConnection:
    """A publisher over a hub's real WHIP route (``http``: an httpx client on the hub): ``video``
    in VP8 and a tone; returns once its media is connected."""
    pc = new_peer_connection(())
    pc.addTransceiver(video, direction="sendonly")
    prefer(pc, "video", "VP8")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    created = await http.post(f"/whip/{station}", content=await make_offer(pc),
                              headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {token}"})
    assert created.status_code == 201, created.text
    await pc.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
    await wait_for_state(pc, "connected")
    return pc
