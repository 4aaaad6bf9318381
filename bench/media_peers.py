"""Media peers for the relay benchmarks: a deterministic publisher and cheap viewers.

- :func:`load_clip` encodes a 640×360 @ 15 fps VP8 clip (~500 kbps CBR, a keyframe every
  2 s) once, with the same libvpx settings aiortc uses, and caches it under
  ``bench/results``. Every run then replays exactly the same packets. :func:`load_h264_clip`
  does the same pictures in H.264 (libx264 baseline) for the HLS benchmark.
- :class:`ClipTrack` replays the clip as ``av.Packet`` s, paced at 15 fps: aiortc's sender
  only packetizes such input, so the publisher costs little and sends the same bytes to
  every system. (It cannot honour a PLI; viewers get the next keyframe of the clip.)
- :class:`CountingViewer` is an aiortc receiver whose encoded frames go to a counter through
  the hub's own ``take_encoded_frames`` seam: nothing is decoded, so a viewer stays cheap.
  :class:`FullViewer` is the same receiver with its track consumed by ``recv()`` (the relay
  benchmark's browser-like viewers).
- :func:`rtp_packets` packetizes the clip as plain RTP, for feeding Janus's Streaming plugin.
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import os
import random
import struct
import time
from collections.abc import Callable, Iterator
from typing import Any

import av
import msgpack
from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.stream import Stream

from bench.common import RESULTS, http_client
from hub.media.seams_keyframes import take_encoded_frames
from hub.media.seams_peers import close_peer_connection, new_peer_connection
from jaga.ice_consent import patient_consent
from jaga.ice_hosts import announced_host_addresses

WIDTH, HEIGHT, FPS = 640, 360, 15
BITRATE = 500_000
GOP = 30
CLIP_SECONDS = 10
LOOPBACK = ("127.0.0.1",)


# ---------------------------------------------------------------- the clip

def _frames() -> Iterator[av.VideoFrame]:
    rng = random.Random(8)
    # 8×8 blocks of random grey, scrolling: textured enough to need ~500 kbps, unlike noise
    rows = []
    for _ in range((HEIGHT + 64) // 8):
        row = b"".join(bytes([rng.randrange(60, 196)]) * 8 for _ in range(WIDTH // 8))
        rows.append(row * 8)
    texture = b"".join(rows)
    chroma = bytes([128]) * (WIDTH * HEIGHT // 4)
    for i in range(CLIP_SECONDS * FPS):
        shift = (i * 7) % (WIDTH * 32)
        luma = bytearray(texture[shift:shift + WIDTH * HEIGHT])
        x = (i * 12) % (WIDTH - 64)
        for y in range(140, 220):
            luma[y * WIDTH + x:y * WIDTH + x + 64] = b"\xf0" * 64
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        frame.planes[0].update(bytes(luma))
        frame.planes[1].update(chroma)
        frame.planes[2].update(chroma)
        frame.pts = i
        frame.time_base = fractions.Fraction(1, FPS)
        yield frame


def encode_clip() -> list[tuple[bytes, bool]]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = BITRATE
    codec.gop_size = GOP
    codec.qmin, codec.qmax = 2, 56
    codec.options = {"bufsize": str(BITRATE), "cpu-used": "-6", "deadline": "realtime", "lag-in-frames": "0",
                     "minrate": str(BITRATE), "maxrate": str(BITRATE), "noise-sensitivity": "4",
                     "overshoot-pct": "15", "partitions": "0", "static-thresh": "1", "undershoot-pct": "100"}
    return _encode(codec)


def _encode(codec: Any) -> list[tuple[bytes, bool]]:
    """Every picture of the clip through ``codec``, then its delayed frames: (data, keyframe)."""
    out = []
    for frame in itertools.chain(_frames(), [None]):
        for packet in codec.encode(frame):
            out.append((bytes(packet), bool(packet.is_keyframe)))
    return out


def _cached(name: str, encode: Callable[[], list[tuple[bytes, bool]]]) -> list[tuple[bytes, bool]]:
    """An encoded clip, kept under ``bench/results`` so every run sends the same bytes."""
    path = RESULTS / f"{name}.msgpack"
    if path.exists():
        return [(data, key) for data, key in msgpack.unpackb(path.read_bytes())]
    clip = encode()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgpack.packb(clip))
    return clip


def load_clip() -> list[tuple[bytes, bool]]:
    return _cached(f"clip_vp8_{WIDTH}x{HEIGHT}_{FPS}fps_{BITRATE // 1000}k", encode_clip)


H264_BITRATE = 580_000  # x264 undershoots on this texture: ≈ 490 kbps, as the VP8 clip


def encode_h264_clip() -> list[tuple[bytes, bool]]:
    """The same pictures as H.264 (for HLS): libx264 constrained baseline, zerolatency, no
    B-frames, an IDR every GOP frames and no other (no scene cuts), SPS/PPS in band, Annex B."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = fractions.Fraction(1, FPS)
    codec.framerate = fractions.Fraction(FPS, 1)
    codec.bit_rate = H264_BITRATE
    codec.gop_size = GOP
    codec.max_b_frames = 0
    codec.profile = "Baseline"
    codec.options = {"preset": "veryfast", "tune": "zerolatency", "maxrate": str(H264_BITRATE),
                     "bufsize": str(H264_BITRATE), "keyint_min": str(GOP), "sc_threshold": "0",
                     "x264-params": "scenecut=0:repeat-headers=1"}
    return _encode(codec)


def load_h264_clip() -> list[tuple[bytes, bool]]:
    """:func:`encode_h264_clip`, cached under ``bench/results`` like :func:`load_clip`."""
    return _cached(f"clip_h264_{WIDTH}x{HEIGHT}_{FPS}fps_{H264_BITRATE // 1000}k", encode_h264_clip)


def agent_thumbnail(clip: list[tuple[bytes, bool]]) -> bytes:
    """What a station agent sends as ``thumb``: its own encoder (``clients.thumbs``) on the
    clip's first picture."""
    from clients.thumbs import thumbnail

    decoder = av.CodecContext.create("vp8", "r")
    frames = decoder.decode(av.Packet(next(data for data, keyframe in clip if keyframe)))
    return thumbnail(frames[0])


def clip_kbps(clip: list[tuple[bytes, bool]]) -> float:
    return sum(len(d) for d, _ in clip) * 8 / (len(clip) / FPS) / 1000


class ClipTrack(MediaStreamTrack):
    """Replays the pre-encoded clip in a loop at 15 fps, as av.Packets (no encoder runs)."""

    kind = "video"

    def __init__(self, clip: list[tuple[bytes, bool]]) -> None:
        super().__init__()
        self.clip = clip
        self.count = 0
        self.start: float | None = None

    async def recv(self) -> av.Packet[Stream]:  # no stream: aiortc's sender reads its bytes and pts
        await _pace(self)
        data, _ = self.clip[self.count % len(self.clip)]
        packet = av.Packet(data)
        packet.pts = self.count * (90000 // FPS)
        packet.time_base = fractions.Fraction(1, 90000)
        self.count += 1
        return packet


async def _pace(track: ClipTrack | LivePatternTrack) -> None:
    """Hold a track to FPS on its own clock (frame ``count`` is due at start + count / FPS)."""
    if track.readyState != "live":
        raise MediaStreamError
    if track.start is None:
        track.start = time.monotonic()
        return
    delay = track.start + track.count / FPS - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class LivePatternTrack(MediaStreamTrack):
    """A live 640×360 @ 15 fps source for aiortc's own encoder (so PLIs get keyframes)."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.frames = list(itertools.islice(_frames(), 30))
        self.count = 0
        self.start: float | None = None

    async def recv(self) -> av.VideoFrame:
        await _pace(self)
        frame = self.frames[self.count % len(self.frames)]
        frame.pts = self.count * (90000 // FPS)
        frame.time_base = fractions.Fraction(1, 90000)
        self.count += 1
        return frame


def prefer_vp8(pc: RTCPeerConnection) -> None:
    caps = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.name.lower() in ("vp8", "rtx")]
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.setCodecPreferences(caps)


async def local_offer(pc: RTCPeerConnection) -> str:
    offer = await pc.createOffer()
    with announced_host_addresses(LOOPBACK):
        await pc.setLocalDescription(offer)
    return pc.localDescription.sdp


async def whip_publish(base: str, station: str, token: str | None, track: MediaStreamTrack,
                       audio_track: MediaStreamTrack | None = None) -> tuple[RTCPeerConnection, str]:
    pc = new_peer_connection(())
    pc.addTransceiver(track, direction="sendonly")
    if audio_track is not None:
        pc.addTransceiver(audio_track, direction="sendonly")
    prefer_vp8(pc)
    offer = await local_offer(pc)
    patient_consent(pc)  # as the station agent's (clients/publisher.py)
    headers = {"Content-Type": "application/sdp"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with http_client(timeout=30) as http:
        response = await http.post(f"{base}/whip/{station}", content=offer, headers=headers)
    if response.status_code != 201:
        await close_peer_connection(pc)
        raise RuntimeError(f"WHIP {response.status_code}: {response.text[:200]}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return pc, response.headers.get("location", "")


# ---------------------------------------------------------------- viewers

class CountingViewer:
    """A WHEP viewer that counts the encoded video frames it reassembles; decodes nothing
    unless ``decode`` (then it records the time of its first decoded picture)."""

    def __init__(self, decode: bool = False) -> None:
        self.pc = new_peer_connection(())
        self.frames = 0
        self.bytes = 0
        self.keyframes = 0
        self.first_frame_at: float | None = None
        self.decode = decode
        self.tasks: list[asyncio.Task[Any]] = []
        self.first = asyncio.Event()

    def _on_frame(self, mime: str, rate: int, data: bytes, ts: int) -> None:
        self.frames += 1
        self.bytes += len(data)
        if self.first_frame_at is None:
            self.first_frame_at = time.monotonic()

    def _prepare(self) -> None:
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        prefer_vp8(self.pc)
        if self.decode:
            self.pc.on("track", lambda track: self.tasks.append(asyncio.ensure_future(self._read(track))))
        else:
            take_encoded_frames(transceiver.receiver, self._on_frame)

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.frames += 1
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                    self.first.set()
        except MediaStreamError:
            pass

    async def whep(self, base: str, station: str) -> None:
        self._prepare()
        offer = await local_offer(self.pc)
        async with http_client(timeout=30) as http:
            response = await http.post(f"{base}/whep/{station}", content=offer,
                                       headers={"Content-Type": "application/sdp"})
        if response.status_code != 201:
            raise RuntimeError(f"WHEP {response.status_code}: {response.text[:200]}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))

    async def answer(self, offer_sdp: str, addresses: tuple[str, ...] = ()) -> str:
        """Janus makes the offer for its Streaming plugin; answer it (recvonly, counted).

        libnice (Janus) never gathers loopback candidates: the benchmark runs Janus and this
        viewer in a lab namespace (``bench/lab.py``) and passes its address as ``addresses``,
        the only one to gather."""
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video" and not self.decode:
                take_encoded_frames(transceiver.receiver, self._on_frame)
        answer = await self.pc.createAnswer()
        with announced_host_addresses(addresses):
            await self.pc.setLocalDescription(answer)
        return self.pc.localDescription.sdp

    async def lost(self) -> int:
        try:
            report = await self.pc.getStats()
        except Exception:
            return 0
        return sum(getattr(s, "packetsLost", 0) or 0 for s in report.values() if s.type == "inbound-rtp")

    async def close(self) -> None:
        await close_peer_connection(self.pc)
        for task in self.tasks:
            task.cancel()


class EncodedFrameTrack(MediaStreamTrack):
    """A track whose frames are the receiver's reassembled, still encoded frames."""

    kind = "video"

    def __init__(self) -> None:
        super().__init__()
        self.queue: asyncio.Queue[tuple[bytes, int] | None] = asyncio.Queue()

    async def recv(self) -> Any:  # (data, timestamp): what a decoder would be given
        if self.readyState != "live":
            raise MediaStreamError
        frame = await self.queue.get()
        if frame is None:
            self.stop()
            raise MediaStreamError
        return frame


class FullViewer(CountingViewer):
    """A browser-like viewer: everything aiortc's receiver does on the wire runs — the jitter
    buffer, RTCP receiver reports every 0.5–1.5 s, a NACK at each gap, a PLI when the jitter
    buffer drops a frame — and the frames are consumed from a track with ``recv()``. Only the
    VP8 decode is skipped (a decoder per viewer would fill the machine): the receiver's
    reassembled frames go, through the hub's ``take_encoded_frames`` seam, to an
    :class:`EncodedFrameTrack` instead of aiortc's decoder thread (whose end would end the
    receiver's own track). Lost against a real decoder: a PLI after a frame that fails to
    decode (on loopback none does); the receiver's RTCP is aiortc's own either way."""

    def __init__(self) -> None:
        super().__init__()
        self.track = EncodedFrameTrack()

    def _take(self, receiver: Any) -> None:
        take_encoded_frames(receiver, lambda mime, rate, data, ts: self.track.queue.put_nowait((data, ts)))
        self.tasks.append(asyncio.ensure_future(self._consume()))

    def _prepare(self) -> None:
        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        prefer_vp8(self.pc)
        self._take(transceiver.receiver)

    async def _consume(self) -> None:
        try:
            while True:
                data, ts = await self.track.recv()
                self._on_frame("video/VP8", 90000, data, ts)
        except MediaStreamError:
            pass

    async def answer(self, offer_sdp: str, addresses: tuple[str, ...] = ()) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == "video":
                self._take(transceiver.receiver)
        answer = await self.pc.createAnswer()
        with announced_host_addresses(addresses):
            await self.pc.setLocalDescription(answer)
        return self.pc.localDescription.sdp

    async def close(self) -> None:
        self.track.stop()
        await super().close()


# ---------------------------------------------------------------- plain RTP (Janus)

def rtp_packets(clip: list[tuple[bytes, bool]], first_picture_id: int | None = None) -> list[list[bytes]]:
    """The clip's RTP *payloads* per frame (VP8 descriptor + data, aiortc's packetizer; the
    RTP header is added at send). Picture ids count up from ``first_picture_id`` (default:
    aiortc's random start); the descriptor always holds it in 2 bytes, as aiortc writes it."""
    from aiortc.codecs.vpx import Vp8Encoder

    packer = Vp8Encoder()
    if first_picture_id is not None:
        packer.picture_id = first_picture_id
    frames = []
    for data, _ in clip:
        payloads = packer._packetize(data, packer.picture_id)
        packer.picture_id = (packer.picture_id + 1) % (1 << 15)
        frames.append(payloads)
    return frames


async def send_rtp(clip_packets: list[list[bytes]], port: int, stop: asyncio.Event, ssrc: int = 0x1234ABCD,
                   pt: int = 96) -> int:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, remote_addr=("127.0.0.1", port))
    seq = random.Random(1).randrange(1 << 16)
    start = time.monotonic()
    count = sent = 0
    try:
        while not stop.is_set():
            payloads = clip_packets[count % len(clip_packets)]
            ts = (count * (90000 // FPS)) & 0xFFFFFFFF
            for i, payload in enumerate(payloads):
                marker = 0x80 if i == len(payloads) - 1 else 0
                header = struct.pack("!BBHII", 0x80, marker | pt, seq & 0xFFFF, ts, ssrc)
                transport.sendto(header + payload)
                seq += 1
                sent += 1
            count += 1
            delay = start + count / FPS - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except TimeoutError:
                    pass
    finally:
        transport.close()
    return sent


if __name__ == "__main__":
    t = time.monotonic()
    c = load_clip()
    print(f"{len(c)} frames, {sum(k for _, k in c)} keyframes, {clip_kbps(c):.0f} kbps, "
          f"{sum(len(p) for p in rtp_packets(c)) / (len(c) / FPS):.0f} packets/s, {time.monotonic() - t:.1f}s")
    os._exit(0)
