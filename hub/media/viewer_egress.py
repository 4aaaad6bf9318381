"""One viewer's copy of a station's audio or video: the publisher's RTP, re-headed and sent.

Theory of operation. The station forwards every RTP packet of its source as it arrives
(no jitter buffer, no re-packetisation): the payload (plus the header-extension block,
shared by every viewer with the same one) is serialised once per station, and each
viewer's ``send`` only packs a 12-byte header with the viewer's own SSRC, payload type,
sequence number and timestamp in front of it, then hands the bytes to its ``Wire``
(SRTP-protect + ``sendto``, synchronously: no task or queue per viewer).

Per viewer, sequence numbers and timestamps are the publisher's plus an offset fixed for an
*era*: an era starts at the packet where the viewer (re)starts — the first packet of a
keyframe for video, any packet for audio — and is chosen so that the viewer's numbers
continue from its previous era (or start at random, as RFC 3550 asks). So a publisher's
packet loss shows as the same gap to the viewer (who then NACKs), reordering is preserved,
and a publisher replaced mid-stream or a resync is invisible to the viewer's RTP clock.
Packets older than the era's first are never sent (they would reuse a sequence number).

States: ``inactive`` (not connected; nothing is sent, or the viewer would start with a
burst of stale packets) → ``waiting`` (for a start point) → ``flowing``. ``resync`` (a new
publisher) and overflow go back to ``waiting``. ``paused`` (video only): the viewer's link
cannot carry video (``hub.media.congestion``), so nothing is sent until ``resume``, which
goes back to ``waiting`` (the next keyframe, asked for); a new publisher meanwhile changes
nothing. Audio is never paused. The hot path pays nothing for it: a paused egress is one
more case of "not flowing".

Slow-viewer policy: a viewer whose socket buffer holds more than ``Wire.congested``
allows is not written to. Video then waits for the next keyframe (and the hub asks for
one); audio just drops the packet (a gap the viewer conceals). Nothing else waits for it.

NACK: answered from the station's ``PacketCache`` as RTX (RFC 4588; a plain resend would
reuse a sequence number, which SRTP refuses). Without RTX negotiated, NACKs are ignored.
"""

from __future__ import annotations

import asyncio
import random
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import NoReturn, Protocol

from hub.media.packet_cache import PacketCache
from hub.media.seams_peers import MediaStreamError, MediaStreamTrack

INACTIVE, WAITING, FLOWING, PAUSED = "inactive", "waiting", "flowing", "paused"
HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence number, timestamp, SSRC
MASK32 = 0xFFFFFFFF
MAX_NACKED_PER_REQUEST = 64
# How far a viewer's RTP clock moves on, at least, across a gap between eras: one frame.
ERA_STEP = {"video": 90000 // 30, "audio": 960}


# What ``Wire.send_parts`` answers (``seams_egress`` defines the same).
SENT, NOT_SENT, CONGESTED = 1, 0, -1


class Wire(Protocol):
    """Where a viewer's packets go (``seams_egress.SrtpWire`` in production)."""

    # protect and send header + rest (not joined first): SENT, NOT_SENT, or CONGESTED (the
    # viewer's socket is backed up: nothing sent)
    def send_parts(self, header: bytes, rest: bytes) -> int: ...
    def send(self, packet: bytes) -> bool: ...  # protect and send; False if not sent


class StreamClock:
    """The newest RTP timestamp of a station's source per kind, and when it arrived
    (monotonic): what a viewer's sender report extrapolates from."""

    __slots__ = ("at", "ts")

    def __init__(self) -> None:
        self.ts = 0
        self.at = 0.0


@dataclass(frozen=True)
class EgressParameters:
    """What the viewer negotiated for one kind (from the hub's answer and its sender)."""

    kind: str
    payload_type: int
    clock_rate: int
    ssrc: int
    rtx_payload_type: int | None = None
    rtx_ssrc: int | None = None
    extensions: bytes = b""  # the header-extension block (profile, length, elements)


def mid_extension_block(extension_id: int, mid: str) -> bytes:
    """The RFC 8285 one-byte-header extension block carrying only the ``mid``."""
    value = mid.encode("ascii")
    if not 1 <= extension_id <= 14 or not 1 <= len(value) <= 16:
        raise ValueError(f"cannot carry mid {mid!r} as one-byte extension {extension_id}")
    element = bytes([(extension_id << 4) | (len(value) - 1)]) + value
    element += b"\x00" * (-len(element) % 4)
    return b"\xbe\xde" + struct.pack("!H", len(element) // 4) + element


class ViewerEgress:
    def __init__(
        self,
        parameters: EgressParameters,
        clock: StreamClock,
        cache: PacketCache | None,
        on_keyframe_needed: Callable[[], None],
        on_dropped: Callable[[int], None],
        on_retransmitted: Callable[[int], None] = lambda packets: None,
        rng: random.Random | None = None,
    ) -> None:
        self.kind = parameters.kind
        self.parameters = parameters
        self._audio = parameters.kind != "video"
        self._clock = clock
        self._cache = cache
        self._on_keyframe_needed = on_keyframe_needed
        self._on_dropped = on_dropped
        self._on_retransmitted = on_retransmitted
        self._rng = rng or random.Random()
        self._wire: Wire | None = None
        self._state = INACTIVE
        self._overflowed = False  # waiting because this viewer was too slow: count what it misses
        # constant header fields
        self._first_byte = 0x90 if parameters.extensions else 0x80
        self._pt = parameters.payload_type
        self._pt_marker = parameters.payload_type | 0x80
        self._ssrc = parameters.ssrc
        self._extensions = parameters.extensions
        self._rate = parameters.clock_rate
        # the current era
        self._era_start = 0  # publisher sequence number of the era's first packet
        self._seq_off = 0
        self._ts_off = 0
        self._top = -1  # highest (seq - era_start) sent in this era
        self._top_ts = 0  # the viewer timestamp of that packet
        # where the next era continues from (None: nothing sent yet)
        self._resume: tuple[int, int, float] | None = None  # (next seq, last ts, when paused)
        self._rtx_seq = self._rng.randrange(32768)
        # totals for sender reports and metrics
        self.packets = 0
        self.octets = 0  # including the extension block; see sender_report
        # distinct sequence numbers the viewer NACKed while flowing (congestion evidence); a
        # repeat of one of the last 256 is not counted again (aiortc re-NACKs every missing one
        # at each new gap, libwebrtc once per round trip)
        self.nacked = 0
        self._nacked_ring: list[int] | None = None
        # sequence numbers passed over because the publisher's packet never reached us (a gap
        # it made upstream, forwarded as the same gap); a late one that fills it counts back
        self.skipped = 0

    @property
    def state(self) -> str:
        return self._state

    @property
    def waiting_for_keyframe(self) -> bool:
        return self._state == WAITING and not self._audio

    # --- control ----------------------------------------------------------------------

    def attach(self, wire: Wire) -> None:
        """The viewer is connected: start sending (video from the next keyframe)."""
        if self._state == INACTIVE:
            self._wire = wire
            self._state = WAITING
            if not self._audio:
                self._on_keyframe_needed()

    def resync(self) -> None:
        """Start a new era at the next start point (a new publisher: its next keyframe)."""
        if self._state in (INACTIVE, PAUSED):
            return  # paused: ``resume`` starts at the new publisher's keyframe anyway
        self._end_era()
        self._overflowed = False
        if not self._audio:
            self._on_keyframe_needed()

    def pause(self) -> None:
        """Stop sending (video: the viewer's link cannot carry it) until :meth:`resume`.
        The viewer's numbers continue from here when it resumes, so it sees no gap."""
        if self._state in (WAITING, FLOWING) and not self._audio:
            self._end_era()
            self._overflowed = False
            self._state = PAUSED

    def resume(self) -> None:
        """Send again after :meth:`pause`, from the next keyframe (asked for now)."""
        if self._state == PAUSED:
            self._state = WAITING
            self._on_keyframe_needed()

    def close(self) -> None:
        self._state = INACTIVE
        self._wire = None

    # --- the hot path -----------------------------------------------------------------

    def send(self, seq: int, ts: int, marker: int, rest: bytes, keyframe_start: bool) -> int:
        """Send one packet of the station's source (``rest``: extension block + payload).

        Returns 1 if sent, else 0. Never blocks and never raises for a dead viewer.
        """
        if self._state != FLOWING:
            if self._state != WAITING:
                return 0  # inactive or paused
            if not (keyframe_start or self._audio):
                if self._overflowed:
                    self._on_dropped(1)
                return 0
            self._start_era(seq, ts)
        distance = (seq - self._era_start) & 0xFFFF
        if distance >= 0x8000:
            return 0  # from before this era: its sequence number may be taken
        wire = self._wire
        if wire is None:
            return 0
        vts = (ts + self._ts_off) & MASK32
        header = HEADER.pack(
            self._first_byte, self._pt_marker if marker else self._pt, (seq + self._seq_off) & 0xFFFF, vts, self._ssrc
        )
        result = wire.send_parts(header, rest)
        if result != SENT:
            if result == CONGESTED:
                self._overflow()
            return 0
        if distance > self._top:
            if distance > self._top + 1 and self._top >= 0:
                self.skipped += distance - self._top - 1
            self._top = distance
            self._top_ts = vts
        elif self.skipped:
            self.skipped -= 1  # a retransmission from the publisher filled a hole
        self.packets += 1
        self.octets += len(rest)
        return 1

    def _start_era(self, seq: int, ts: int) -> None:
        resume = self._resume
        if resume is None:
            vseq, vts = self._rng.randrange(32768), self._rng.randrange(1 << 32)
        else:
            vseq, last_ts, paused_at = resume
            gap = max(ERA_STEP[self.kind], int((time.monotonic() - paused_at) * self._rate))
            vts = (last_ts + gap) & MASK32
        self._era_start = seq
        self._seq_off = (vseq - seq) & 0xFFFF
        self._ts_off = (vts - ts) & MASK32
        self._top = -1
        self._state = FLOWING

    def _end_era(self) -> None:
        if self._state == FLOWING and self._top >= 0:
            next_seq = (self._era_start + self._seq_off + self._top + 1) & 0xFFFF
            self._resume = (next_seq, self._top_ts, time.monotonic())
        self._state = WAITING

    def _overflow(self) -> None:
        self._on_dropped(1)
        if self._audio:
            return  # drop this packet only: a gap Opus conceals
        self._end_era()
        self._overflowed = True
        self._on_keyframe_needed()

    # --- feedback ---------------------------------------------------------------------

    def retransmit(self, sequence_numbers: Iterable[int]) -> int:
        """Answer a viewer's NACK (its own sequence numbers) with RTX from the cache."""
        rtx_pt, rtx_ssrc = self.parameters.rtx_payload_type, self.parameters.rtx_ssrc
        if self._state != FLOWING or rtx_pt is None or rtx_ssrc is None or self._cache is None or self._wire is None:
            return 0
        sent = 0
        ring = self._nacked_ring
        if ring is None:
            ring = self._nacked_ring = [-1] * 256
        for count, vseq in enumerate(sequence_numbers):
            if count >= MAX_NACKED_PER_REQUEST:
                break
            seq = (vseq - self._seq_off) & 0xFFFF
            if (seq - self._era_start) & 0xFFFF > self._top:
                continue  # not sent to this viewer in this era
            cached = self._cache.get(seq)
            if cached is None:
                continue  # too old, or never received from the publisher: not this viewer's loss
            if ring[vseq & 0xFF] != vseq:
                ring[vseq & 0xFF] = vseq
                self.nacked += 1
            _, ts, marker, payload = cached
            header = HEADER.pack(
                self._first_byte, rtx_pt | (0x80 if marker else 0), self._rtx_seq, (ts + self._ts_off) & MASK32,
                rtx_ssrc,
            )
            self._rtx_seq = (self._rtx_seq + 1) & 0xFFFF
            if self._wire.send(header + self._extensions + struct.pack("!H", vseq & 0xFFFF) + payload):
                sent += 1
        if sent:
            self._on_retransmitted(sent)
        return sent

    def sender_report(self, now: float) -> tuple[int, int, int] | None:
        """(RTP timestamp now, packets, payload octets) for an RTCP SR; None before any
        packet of the current era (the timestamp would not match what the viewer has)."""
        if self._state != FLOWING or self._top < 0:
            return None
        clock = self._clock
        rtp = (clock.ts + self._ts_off + int((now - clock.at) * self._rate)) & MASK32
        octets = self.octets - self.packets * len(self._extensions)
        return rtp, self.packets & MASK32, octets & MASK32


class IdleTrack(MediaStreamTrack):
    """The track given to a viewer's ``RTCRtpSender``: aiortc negotiates it and runs its
    RTCP (reports, PLI/NACK routing) but never gets a frame, since ``ViewerEgress`` sends
    the media itself. ``recv`` waits until the track stops."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self._stopped = asyncio.Event()

    async def recv(self) -> NoReturn:
        await self._stopped.wait()
        raise MediaStreamError

    def stop(self) -> None:
        super().stop()
        self._stopped.set()
