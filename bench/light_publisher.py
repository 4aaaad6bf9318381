"""Light WHIP publishers: aiortc negotiates, one timer per process sends the RTP.

A full aiortc publisher (:class:`bench.media_peers.ClipTrack` behind an ``RTCRtpSender``)
costs the client about as much CPU as the hub spends receiving it (≈ 0.4 % of a core each),
so on a small machine the load generators saturate before the hub does. Here aiortc still
does the WHIP offer/answer, ICE, DTLS and all RTCP (SRs out; RRs, NACKs, PLIs and REMBs in),
exactly as for a full publisher, but its sender is given a track that never yields. Once
DTLS is up the packets go out through the hub's own ``open_wire`` seam (synchronous SRTP
protect + ``sendto`` on the nominated ICE pair), built by :class:`PacketWriter` from the clip
packetized once per process. Each packet carries what aiortc's sender would put on it: the
negotiated payload type, the sender's SSRC, its own sequence numbers and timestamps, the
VP8 picture id counting up, and the ``mid`` and ``abs-send-time`` header extensions with the
negotiated ids (the hub's receiver feeds abs-send-time into its bandwidth estimator; leaving
it out would make the hub look cheaper than it is with real publishers). With ``audio``, a
second sender sends what a station's microphone does: Opus packets (the speech-like clip of
``bench.aac_cost``, 32 kbps) with the ``mid`` and ``ssrc-audio-level`` extensions aiortc
writes on them, of the ticker's ``OpusClip``: 20 ms as browsers send them (50 packets a
second, as many as the video's), or 60 ms as the station agent does (a third as many).

Use: ``await publish_light(base, station, token, ticker)``; :class:`Ticker` paces every
publisher of the process. ``python -m bench.light_publisher [--hub]`` checks the packet
bytes against aiortc's own serializer (and, with ``--hub``, that a real hub's receiver
answers with REMBs, which it only computes from abs-send-time, and loss-free RRs).
"""

from __future__ import annotations

import asyncio
import random
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

from aiortc.mediastreams import MediaStreamTrack

from bench.media_peers import FPS, rtp_packets, whip_publish
from hub.media.seams_egress import SrtpWire, on_nack, open_wire, report_with, sender_ssrcs
from hub.media.seams_peers import negotiated_media, parse_sdp

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900 (NTP) to 1970 (Unix)
TICKS_PER_FRAME = 4  # publishers are spread over 4 phases of each frame interval (see Ticker)
HISTORY = 128  # packets kept for NACKs, as aiortc's RTP_HISTORY_SIZE
FIRST_PICTURE_ID = 128  # ≥ 128: every VP8 descriptor has the 2-byte picture id aiortc writes
AUDIO_LEVEL = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
OPUS_PACKET_MS = 20  # what a browser sends: one 20 ms Opus packet at a time (the agent: 60, audio.packet_ms)
OPUS_CLOCK = 48000  # Opus's RTP clock
AUDIO_LEVEL_DBOV = 30  # the level every audio packet announces: speech in a quiet office (−30 dBov)

_HEADER = struct.Struct("!BBHII")


# ---------------------------------------------------------------- the clip, packetized once

class ClipPackets:
    """The clip's VP8 payloads, split around the 2-byte picture id so that it can be
    rewritten per send: per frame, a list of (descriptor head, payload after the id)."""

    def __init__(self, clip: list[tuple[bytes, bool]]) -> None:
        self.frames = [[(p[:2], p[4:]) for p in payloads]
                       for payloads in rtp_packets(clip, first_picture_id=FIRST_PICTURE_ID)]


def abs_send_time() -> int:
    """Now as abs-send-time (6.18 fixed-point NTP seconds), as aiortc computes it."""
    return int((time.time() + NTP_EPOCH_OFFSET) * (1 << 18)) & 0xFFFFFF


def _mid_element(mid_id: int | None, mid: str, *other_ids: int | None) -> bytes:
    """The ``mid`` element of a one-byte-header block (b"" without an id), once every id is
    checked to fit that form (RFC 8285 §4.2: ids 1-14, values of 1-16 bytes)."""
    if any(i is not None and not 1 <= i <= 14 for i in (mid_id, *other_ids)) or not 1 <= len(mid) <= 16:
        raise ValueError("only one-byte header extensions are written here (ids 1-14)")
    return b"" if mid_id is None else bytes([(mid_id << 4) | (len(mid) - 1)]) + mid.encode()


def aiortc_extension_ids(ids: dict[int, str]) -> Any:
    """aiortc's ``HeaderExtensionsMap`` for these negotiated ids (id → URI): what its
    serializer writes, to compare our packets with."""
    from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
    from aiortc.rtp import HeaderExtensionsMap

    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=i, uri=uri) for i, uri in ids.items()]))
    return extensions


def extension_block(mid_id: int | None, mid: str, abs_id: int | None) -> tuple[bytes, bytes]:
    """The RFC 8285 one-byte-header extension block aiortc's sender writes (mid, then
    abs-send-time), as (bytes before the 3 abs-send-time bytes, bytes after them); with
    no abs-send-time id negotiated, the whole block is the first part."""
    body = _mid_element(mid_id, mid, abs_id)
    if abs_id is not None:
        body += bytes([(abs_id << 4) | 2])
    length = len(body) + (3 if abs_id is not None else 0)
    if not length:
        return b"", b""
    padding = b"\x00" * (-length % 4)
    head = struct.pack("!HH", 0xBEDE, (length + len(padding)) // 4) + body
    return (head, padding) if abs_id is not None else (head + padding, b"")


def audio_extension_block(mid_id: int | None, mid: str, level_id: int | None) -> bytes:
    """The RFC 8285 one-byte-header block aiortc's sender writes on an audio packet: ``mid``,
    then ``ssrc-audio-level`` (no voice-activity flag, ``AUDIO_LEVEL_DBOV``)."""
    body = _mid_element(mid_id, mid, level_id)
    if level_id is not None:
        body += bytes([level_id << 4, AUDIO_LEVEL_DBOV & 0x7F])
    if not body:
        return b""
    body += b"\x00" * (-len(body) % 4)
    return struct.pack("!HH", 0xBEDE, len(body) // 4) + body


class OpusClip:
    """The audio every light publisher of a process loops: Opus packets of ``packet_ms``
    (20 as browsers send them, 60 as the station agent does), encoded once."""

    def __init__(self, seconds: float = 2.0, packet_ms: int = OPUS_PACKET_MS) -> None:
        from bench.aac_cost import opus_packets

        self.packets = opus_packets(max(seconds, packet_ms / 1000), packet_ms=packet_ms)
        self.packet_s = packet_ms / 1000
        self.samples = OPUS_CLOCK * packet_ms // 1000


class AudioWriter:
    """One publisher's Opus RTP stream (no I/O): ``packet(payload)`` answers its next packet."""

    def __init__(self, ssrc: int, payload_type: int, extensions: bytes, samples: int = 960,
                 rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self.ssrc, self.payload_type, self.extensions = ssrc, payload_type, extensions
        self.samples = samples  # per packet, on the 48 kHz clock
        self.seq = rng.randrange(1 << 16) % 32768
        self.ts_origin = rng.randrange(1 << 32)
        self.last_ts = self.ts_origin
        self.packets = self.octets = 0

    def packet(self, payload: bytes) -> bytes:
        ts = (self.ts_origin + self.packets * self.samples) & 0xFFFFFFFF
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        self.packets += 1
        self.octets += len(payload)
        self.last_ts = ts
        # aiortc marks the last packet of every encoded frame: an Opus frame is one packet
        first_byte = 0x90 if self.extensions else 0x80
        return b"".join((_HEADER.pack(first_byte, 0x80 | self.payload_type, seq, ts, self.ssrc),
                         self.extensions, payload))


class PacketWriter:
    """One publisher's RTP stream: builds its clear-text packets (no I/O).

    ``frame(clip_frame)`` answers the packets of the publisher's next frame and advances
    sequence number, timestamp and picture id; ``rtx_packet(seq)`` the RTX packet that
    answers a NACK for ``seq`` (None once ``seq`` left the history, or without RTX).
    """

    def __init__(self, ssrc: int, payload_type: int, extensions: tuple[bytes, bytes], has_abs: bool,
                 rtx: tuple[int, int] | None = None, rng: random.Random | None = None) -> None:
        rng = rng or random.Random()
        self.ssrc, self.payload_type = ssrc, payload_type
        self.ext_head, self.ext_tail = extensions
        self.has_abs = has_abs
        self.rtx = rtx  # (payload type, SSRC)
        # like aiortc: sequence numbers start in the lower half (no early SRTP rollover)
        self.seq = rng.randrange(1 << 16) % 32768
        self.rtx_seq = rng.randrange(1 << 16) % 32768
        self.ts_origin = rng.randrange(1 << 32)
        self.frames = self.packets = self.octets = 0
        self.last_ts = self.ts_origin
        self.history: list[tuple[int, int, int, bytes, bytes, bytes] | None] = [None] * HISTORY

    def frame(self, clip_frame: Sequence[tuple[bytes, bytes]]) -> list[bytes]:
        ts = (self.ts_origin + self.frames * (90000 // FPS)) & 0xFFFFFFFF
        picture_id = struct.pack("!H", 0x8000 | ((FIRST_PICTURE_ID + self.frames) & 0x7FFF))
        first_byte = 0x90 if self.ext_head else 0x80
        last = len(clip_frame) - 1
        out = []
        for i, (descriptor, rest) in enumerate(clip_frame):
            seq = self.seq
            self.seq = (seq + 1) & 0xFFFF
            marker = 0x80 if i == last else 0
            extensions = self._extensions()
            head = descriptor + picture_id
            out.append(b"".join((_HEADER.pack(first_byte, marker | self.payload_type, seq, ts, self.ssrc),
                                 extensions, head, rest)))
            self.history[seq % HISTORY] = (seq, ts, marker, extensions, head, rest)
            self.octets += len(head) + len(rest)
        self.packets += len(out)
        self.frames += 1
        self.last_ts = ts
        return out

    def _extensions(self) -> bytes:
        if not self.has_abs:
            return self.ext_head
        return self.ext_head + abs_send_time().to_bytes(3, "big") + self.ext_tail

    def rtx_packet(self, seq: int) -> bytes | None:
        entry = self.history[seq % HISTORY]
        if self.rtx is None or entry is None or entry[0] != seq:
            return None
        _, ts, marker, extensions, head, rest = entry
        rtx_seq = self.rtx_seq
        self.rtx_seq = (rtx_seq + 1) & 0xFFFF
        # as aiortc's wrap_rtx: original seq first in the payload, the original extensions kept
        return b"".join((_HEADER.pack(0x90 if extensions else 0x80, marker | self.rtx[0], rtx_seq, ts, self.rtx[1]),
                         extensions, struct.pack("!H", seq), head, rest))


# ---------------------------------------------------------------- aiortc around it

class IdleTrack(MediaStreamTrack):
    """A track that never yields: aiortc's sender starts (its RTCP loop runs) but waits
    forever for a frame instead of polling for one."""

    kind = "video"

    def __init__(self, kind: str = "video") -> None:
        super().__init__()
        self.kind = kind

    async def recv(self) -> Any:
        await asyncio.get_running_loop().create_future()


class LightPublisher:
    """A WHIP publisher whose RTP the :class:`Ticker` sends through ``open_wire``."""

    def __init__(self, pc: Any, sender: Any, audio_sender: Any = None, audio_samples: int = 960) -> None:
        """Make it right after the WHIP answer: each sender's SRs carry our counters from
        aiortc's first one on."""
        self.pc, self.sender, self.audio_sender = pc, sender, audio_sender
        self.audio_samples = audio_samples  # per audio packet, as the ticker's OpusClip has them
        self.wire: SrtpWire | None = None
        self.writer: PacketWriter | None = None
        self.audio: AudioWriter | None = None
        self.last_sent_at = 0.0
        self.audio_sent_at = 0.0
        self.audio_started_at = 0.0
        self.send_failures = 0
        self.rtx_sent = 0  # RTX packets sent in answer to the hub's NACKs
        report_with(sender, self._report)
        if audio_sender is not None:
            report_with(audio_sender, self._audio_report)

    @property
    def frames(self) -> int:
        """Frames sent, as the hub counts them: video frames, and each audio packet."""
        return (self.writer.frames if self.writer else 0) + (self.audio.packets if self.audio else 0)

    @property
    def packets(self) -> int:
        return (self.writer.packets if self.writer else 0) + (self.audio.packets if self.audio else 0)

    def start(self, wire: SrtpWire) -> None:
        """Call once DTLS is connected: from then on the ticker may send."""
        answer = self.pc.remoteDescription.sdp
        media = negotiated_media(answer)["video"]
        section = next(m for m in parse_sdp(answer).media if m.kind == "video")
        abs_id = next((e.id for e in section.rtp.headerExtensions if e.uri == ABS_SEND_TIME), None)
        ssrc, rtx_ssrc = sender_ssrcs(self.sender)
        rtx = (media.rtx_payload_type, rtx_ssrc) if media.rtx_payload_type is not None else None
        self.writer = PacketWriter(ssrc, media.payload_type, extension_block(media.mid_extension_id, media.mid, abs_id),
                                   abs_id is not None, rtx)
        if self.audio_sender is not None:
            sound = negotiated_media(answer)["audio"]
            section = next(m for m in parse_sdp(answer).media if m.kind == "audio")
            level_id = next((e.id for e in section.rtp.headerExtensions if e.uri == AUDIO_LEVEL), None)
            self.audio = AudioWriter(sender_ssrcs(self.audio_sender)[0], sound.payload_type,
                                     audio_extension_block(sound.mid_extension_id, sound.mid, level_id),
                                     self.audio_samples)
        self.wire = wire
        on_nack(self.sender, self._retransmit)

    def send_frame(self, clip: ClipPackets) -> None:
        writer, wire = self.writer, self.wire
        if writer is None or wire is None:
            return
        for packet in writer.frame(clip.frames[writer.frames % len(clip.frames)]):
            if not wire.send(packet):
                self.send_failures += 1
        self.last_sent_at = time.monotonic()

    def send_audio(self, clip: OpusClip, now: float) -> None:
        """Send the audio packets due by ``now``, one per ``clip.packet_s`` since its first, or
        only the last 0.5 s of them for a publisher that fell behind (as a late video tick is
        skipped)."""
        audio, wire = self.audio, self.wire
        if audio is None or wire is None:
            return
        if not self.audio_started_at:
            self.audio_started_at = now
        due = int((now - self.audio_started_at) / clip.packet_s) + 1
        most = max(1, round(0.5 / clip.packet_s))
        if due - audio.packets > most:
            audio.packets = due - most  # the skipped packets are a gap in its timestamps, as a stall
        while audio.packets < due:
            if not wire.send(audio.packet(clip.packets[audio.packets % len(clip.packets)])):
                self.send_failures += 1
        self.audio_sent_at = time.monotonic()

    def _audio_report(self, now: float) -> tuple[int, int, int] | None:
        audio = self.audio
        if audio is None or not audio.packets:
            return None
        ts = (audio.last_ts + round((now - self.audio_sent_at) * OPUS_CLOCK)) & 0xFFFFFFFF
        return ts, audio.packets & 0xFFFFFFFF, audio.octets & 0xFFFFFFFF

    def _retransmit(self, seqs: Any) -> None:
        for seq in seqs:
            packet = self.writer.rtx_packet(seq) if self.writer else None
            if packet is not None and self.wire is not None:
                self.wire.send(packet)
                self.rtx_sent += 1

    def _report(self, now: float) -> tuple[int, int, int] | None:
        """Our counters for aiortc's SR: its own stay zero, as it sends no RTP here."""
        writer = self.writer
        if writer is None or not writer.packets:
            return None
        ts = (writer.last_ts + round((now - self.last_sent_at) * 90000)) & 0xFFFFFFFF
        return ts, writer.packets & 0xFFFFFFFF, writer.octets & 0xFFFFFFFF


class Ticker:
    """One timer per process sending every publisher's frames at 15 fps.

    Publishers are spread over ``TICKS_PER_FRAME`` phases of the frame interval (the
    ticker runs at 60 Hz, each publisher sends on one tick in four), so the hub gets the
    packets spread over time like independently started publishers, not as one burst.
    A tick more than half a second late is skipped, not caught up: a client that falls
    behind then shows as a lower sent frame rate.
    """

    def __init__(self, clip: ClipPackets, audio: OpusClip | None = None) -> None:
        self.clip = clip
        self.audio = audio  # set before the first publisher with audio is added
        self.phases: list[list[LightPublisher]] = [[] for _ in range(TICKS_PER_FRAME)]
        self.task: asyncio.Task[None] | None = None

    def add(self, publisher: LightPublisher) -> None:
        min(self.phases, key=len).append(publisher)
        if self.task is None:
            self.task = asyncio.ensure_future(self._run())

    def remove(self, publisher: LightPublisher) -> None:
        for phase in self.phases:
            if publisher in phase:
                phase.remove(publisher)

    async def _run(self) -> None:
        period = 1 / (FPS * TICKS_PER_FRAME)
        start, tick = time.monotonic(), 0
        while True:
            delay = start + tick * period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.5:
                tick = int((time.monotonic() - start) / period)
            for publisher in self.phases[tick % TICKS_PER_FRAME]:
                publisher.send_frame(self.clip)
            if self.audio is not None:  # every publisher, every tick: what is due of its 50 a second
                now = time.monotonic()
                for phase in self.phases:
                    for publisher in phase:
                        publisher.send_audio(self.audio, now)
            tick += 1

    def clear(self) -> None:
        """Forget every publisher (they were closed): the ticker can be used again."""
        self.stop()
        self.phases = [[] for _ in range(TICKS_PER_FRAME)]

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None


async def publish_light(base: str, station: str, token: str | None, ticker: Ticker,
                        timeout: float = 20, audio: bool = False) -> LightPublisher:
    """WHIP-publish ``station`` with a light publisher (with ``audio``: a microphone too, sent
    from ``ticker.audio``); its ``wire`` is None if ICE or DTLS did not come up within
    ``timeout`` (the caller should close ``pc`` then)."""
    if audio and ticker.audio is None:
        raise ValueError("a publisher with audio needs a ticker with an OpusClip")
    pc, _ = await whip_publish(base, station, token, IdleTrack(), IdleTrack("audio") if audio else None)
    senders = {t.kind: t.sender for t in pc.getTransceivers()}
    publisher = LightPublisher(pc, senders["video"], senders.get("audio"),
                               ticker.audio.samples if ticker.audio is not None else 960)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pc.connectionState not in ("failed", "closed"):
        wire = open_wire(publisher.sender.transport) if pc.connectionState == "connected" else None
        if wire is not None:
            publisher.start(wire)
            ticker.add(publisher)
            break
        await asyncio.sleep(0.05)
    return publisher


# ---------------------------------------------------------------- self-check

def check_against_aiortc() -> None:
    """Our packet bytes must equal aiortc's serializer's for the same values."""
    from aiortc.rtp import RtpPacket

    from bench.media_peers import load_clip

    mid_id, abs_id, mid = 1, 3, "0"
    ids = aiortc_extension_ids({mid_id: MID, abs_id: ABS_SEND_TIME})
    clip = ClipPackets(load_clip()[:3])
    writer = PacketWriter(0x11223344, 96, extension_block(mid_id, mid, abs_id), True, rtx=(97, 0x55667788))
    for n, clip_frame in enumerate(clip.frames):
        for i, data in enumerate(writer.frame(clip_frame)):
            ours = RtpPacket.parse(data, ids)
            sent_at = ours.extensions.abs_send_time
            assert ours.extensions.mid == mid and sent_at is not None and abs(sent_at - abs_send_time()) < 1000
            expected = RtpPacket(payload_type=96, marker=int(i == len(clip_frame) - 1),
                                 sequence_number=ours.sequence_number, timestamp=writer.ts_origin + n * 6000,
                                 ssrc=0x11223344, payload=ours.payload)
            expected.extensions.mid, expected.extensions.abs_send_time = mid, ours.extensions.abs_send_time
            assert expected.serialize(ids) == data, (n, i)
            assert ours.payload[2:4] == struct.pack("!H", 0x8000 | (FIRST_PICTURE_ID + n))
    rtx_data = writer.rtx_packet(writer.seq - 1)
    assert rtx_data is not None, "the last packet is in the history"
    rtx = RtpPacket.parse(rtx_data, ids)
    assert (rtx.payload_type, rtx.ssrc, rtx.payload[:2]) == (97, 0x55667788, struct.pack("!H", writer.seq - 1))
    print(f"ok: {writer.packets} packets byte-identical to aiortc's, extensions mid={mid!r} and abs-send-time")


async def check_against_hub(seconds: float = 5.0) -> None:
    """One light publisher into a real hub: the hub's receiver must answer with REMBs (it
    only estimates bandwidth from packets carrying abs-send-time) and loss-free RRs."""
    from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, RtcpRrPacket

    from bench.common import install_cleanup, mint_tokens, start_hub, station_ids, stop, temp_dir
    from bench.media_peers import load_clip

    install_cleanup()
    proc, port, config = await start_hub(temp_dir("bench-light-"))
    station = station_ids()[0]
    tokens = await asyncio.to_thread(mint_tokens, config, [station])
    ticker = Ticker(ClipPackets(load_clip()))
    publisher = await publish_light(f"http://127.0.0.1:{port}", station, tokens[station], ticker)
    got = {"remb": 0, "rr": 0}
    handle = publisher.sender._handle_rtcp_packet

    async def counting(packet: Any) -> None:
        got["remb"] += isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP
        got["rr"] += isinstance(packet, RtcpRrPacket)
        await handle(packet)

    publisher.sender._handle_rtcp_packet = counting
    await asyncio.sleep(seconds)
    lost = [s.packetsLost for s in (await publisher.sender.getStats()).values() if s.type == "remote-inbound-rtp"]
    ticker.stop()
    await publisher.pc.close()
    await stop(proc)
    print(f"hub: {got['remb']} REMBs, {got['rr']} RRs, lost {lost} of {publisher.packets} packets sent")
    assert got["remb"] and got["rr"] and lost == [0], "the hub did not see abs-send-time, or lost packets"


if __name__ == "__main__":
    check_against_aiortc()
    if "--hub" in sys.argv:
        asyncio.run(check_against_hub())
