"""Whole encoded frames from one kind's RTP packets, for the recorder. Pure: no I/O, no clock.

Theory of operation. The relay forwards packets as they arrive; a file needs frames. A
:class:`FrameAssembler` takes one kind's packets in arrival order (``push``) and returns the
frames they complete, in order, each as the codec's bitstream (VP8 frame, H.264 Annex B
access unit, Opus packet) with its keyframe flag and RTP timestamp.

- **Order.** Packets are put back in sequence-number order (16-bit numbers extended across
  wrap-around). A packet older than the next one expected is late (or a duplicate) and
  ignored. While a sequence number is missing, later packets wait, up to ``window`` of
  them: enough for a retransmission (RTX, already unwrapped by the ingest) to fill the hole.
- **Frames.** A frame is every packet with one timestamp, ended by the marker bit (or, if
  the marker was never seen, by the next timestamp arriving without a hole). Its payloads
  are depayloaded (VP8: the payload descriptor cut off here, RFC 7741; H.264: by the
  injected ``depayload(mime, payload)``, seam 12) and joined.
  Audio: one packet is one frame.
- **Gaps.** When the window is exceeded the missing packets are given up: the frame being
  built is dropped, and so is every video frame until the first packet of a keyframe
  (``starts_keyframe``), since deltas without their reference decode to garbage.
  :meth:`take_keyframe_request` then answers True once per gap, so the caller can ask the
  publisher for one. Audio just skips the lost packets (Opus conceals them).
- **Start.** A new assembler (or one :meth:`reset` for a new publisher) waits for the first
  packet of a keyframe; the caller asks for one itself. A keyframe whose first packet was
  missed (its timestamp was seen on a dropped packet, or it turns out incomplete: no
  keyframe bit, an H.264 access unit without its SPS) is not a start either.

The state, as a formula: ``next`` is the extended sequence number of the next packet to
take; ``pending`` holds packets ≥ ``next`` (at most ``window`` + 1); ``parts`` is the frame
being built (packets ``first..next-1`` of timestamp ``frame_ts``); ``synced`` is False while
video waits for a keyframe.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hub.media.keyframes import H264_NAL_SPS, h264_nal_types, is_keyframe, starts_keyframe, vp8_descriptor_size

# (mime type, one RTP payload) → its share of the encoded frame; raises ValueError if malformed
Depayloader = Callable[[str, bytes], bytes]

VIDEO_WINDOW = 64  # packets held behind a hole: ~0.35 s at 2 Mbps, long enough for a NACK's RTX
AUDIO_WINDOW = 8  # audio is not NACKed here: only reordering


@dataclass(frozen=True, slots=True)
class Frame:
    data: bytes
    keyframe: bool
    timestamp: int  # RTP timestamp (32 bits, the publisher's clock)


class FrameAssembler:
    """One kind of one publisher's RTP → whole frames. Call :meth:`push` per packet, in
    arrival order; call :meth:`reset` when another publisher's packets follow."""

    def __init__(self, mime_type: str, depayload: Depayloader, window: int | None = None) -> None:
        self.mime_type = mime_type.lower()
        self.video = self.mime_type.startswith("video/")
        self._vp8 = self.mime_type == "video/vp8"
        self._depayload = depayload
        self.window = window if window is not None else (VIDEO_WINDOW if self.video else AUDIO_WINDOW)
        self.gaps = 0  # holes given up (a counter for tests and metrics)
        self.reset()

    def reset(self) -> None:
        """Forget everything: the next frame starts at the next keyframe (video)."""
        self._highest: int | None = None  # highest extended sequence number seen
        self._next: int | None = None
        self._pending: dict[int, tuple[int, int, bytes]] = {}
        self._late = 0  # late packets in a row
        self._parts: list[bytes] = []
        self._frame_ts: int | None = None
        self._synced = not self.video
        self._syncing = False  # the frame being built is the first after waiting for a keyframe
        self._dropped_ts: int | None = None  # the timestamp of the last packet dropped while waiting
        self._keyframe_wanted = False

    def take_keyframe_request(self) -> bool:
        """True once after a gap made video wait for a keyframe (ask the publisher for one)."""
        wanted, self._keyframe_wanted = self._keyframe_wanted, False
        return wanted

    def push(self, seq: int, ts: int, marker: int, payload: bytes) -> list[Frame]:
        """One RTP packet; returns the frames it completed (often none, sometimes several)."""
        ext = self._extend(seq)
        if (ext == self._next or self._next is None) and not self._pending:  # in order: the usual case
            self._next = ext + 1
            self._late = 0
            frames: list[Frame] = []
            self._take(ts, marker, payload, frames)
            return frames
        if self._next is None:
            self._next = ext
        elif ext < self._next or ext in self._pending:
            self._late += 1
            if self._late > 2 * self.window:  # not late: the numbers jumped back (a new sender)
                self._gap()
                self._highest = self._next = None
                self._pending.clear()
                return self.push(seq, ts, marker, payload)
            return []  # late or duplicate
        self._late = 0
        self._pending[ext] = (ts, marker, payload)
        return self._drain()

    # --- internals ------------------------------------------------------------------

    def _extend(self, seq: int) -> int:
        highest = self._highest
        if highest is None:
            self._highest = seq
            return seq
        delta = (seq - highest) & 0xFFFF
        if delta < 0x8000:
            ext = highest + delta
            self._highest = ext
            return ext
        return highest - (0x10000 - delta)

    def _drain(self) -> list[Frame]:
        frames: list[Frame] = []
        pending = self._pending
        while pending:
            assert self._next is not None
            packet = pending.pop(self._next, None)
            if packet is None:
                assert self._highest is not None
                if self._highest - self._next < self.window:
                    break  # a hole: wait for it to be filled (reordering, RTX)
                self._gap()
                self._next = min(pending)
                continue
            self._next += 1
            self._take(*packet, frames)
        return frames

    def _gap(self) -> None:
        self.gaps += 1
        self._parts = []
        self._dropped_ts = self._frame_ts  # the rest of this frame cannot start one
        self._frame_ts = None
        self._syncing = False
        if self.video and self._synced:
            self._synced = False
            self._keyframe_wanted = True

    def _take(self, ts: int, marker: int, payload: bytes, frames: list[Frame]) -> None:
        if not self.video:
            if payload:
                frames.append(Frame(payload, True, ts))
            return
        if self._frame_ts is not None and ts != self._frame_ts:
            # no marker seen, but no hole either: the previous frame is whole
            self._emit(frames)
        if self._frame_ts is None:  # this packet starts a frame
            if not self._synced:
                if ts == self._dropped_ts or not starts_keyframe(self.mime_type, payload):
                    self._dropped_ts = ts  # waiting for a keyframe (its first packet): drop
                    return
                self._synced = self._syncing = True
            self._frame_ts = ts
        try:
            if self._vp8:  # our own: aiortc's depayloader costs ~5 µs a packet in objects
                self._parts.append(payload[vp8_descriptor_size(payload):])
            else:
                self._parts.append(self._depayload(self.mime_type, payload))
        except ValueError:
            self._gap()  # a malformed packet is as good as a lost one
            return
        if marker:
            self._emit(frames)

    def _emit(self, frames: list[Frame]) -> None:
        data = b"".join(self._parts)
        ts = self._frame_ts
        self._parts = []
        self._frame_ts = None
        keyframe = bool(data) and is_keyframe(self.mime_type, data)
        if self._syncing:
            self._syncing = False
            if not keyframe or (self.mime_type == "video/h264" and H264_NAL_SPS not in h264_nal_types(data)):
                self._synced = False  # not a whole keyframe after all (it began before we did)
                self._dropped_ts = ts
                return
        if data and ts is not None:
            frames.append(Frame(data, keyframe, ts))


# --- what a keyframe says about the picture ---------------------------------------------


def video_size(mime_type: str, keyframe: bytes) -> tuple[int, int] | None:
    """(width, height) from a keyframe's own header, without decoding; None if not found.

    VP8: the key frame header (RFC 6386 §9.1: start code 9d 01 2a, then 14-bit sizes).
    H.264: the SPS of the Annex B access unit (ITU-T H.264 §7.3.2.1.1, cropping applied).
    """
    mime = mime_type.lower()
    if mime == "video/vp8":
        if len(keyframe) < 10 or keyframe[0] & 1 or keyframe[3:6] != b"\x9d\x01\x2a":
            return None
        width = int.from_bytes(keyframe[6:8], "little") & 0x3FFF
        height = int.from_bytes(keyframe[8:10], "little") & 0x3FFF
        return (width, height) if width and height else None
    if mime == "video/h264":
        sps = next((nal for nal in annexb_nal_units(keyframe) if nal and nal[0] & 0x1F == 7), None)
        if sps is None:
            return None
        try:
            return _sps_size(sps)
        except IndexError:
            return None
    return None


def annexb_nal_units(data: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, start codes (3 or 4 bytes) removed."""
    units: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while start != -1:
        begin = start + 3
        following = data.find(b"\x00\x00\x01", begin)
        end = len(data) if following == -1 else following
        unit = data[begin:end]
        if following != -1 and unit.endswith(b"\x00"):
            unit = unit[:-1]  # the leading zero of a 4-byte start code
        units.append(unit)
        start = following
    return units


class _Bits:
    """Exp-Golomb reader over an RBSP (emulation-prevention bytes removed)."""

    def __init__(self, nal: bytes) -> None:
        self.data = nal.replace(b"\x00\x00\x03", b"\x00\x00")
        self.at = 0

    def bit(self) -> int:
        byte = self.data[self.at >> 3]
        value = (byte >> (7 - (self.at & 7))) & 1
        self.at += 1
        return value

    def bits(self, count: int) -> int:
        value = 0
        for _ in range(count):
            value = (value << 1) | self.bit()
        return value

    def ue(self) -> int:
        zeros = 0
        while self.bit() == 0:
            zeros += 1
            if zeros > 31:
                raise IndexError("bad exp-Golomb code")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        value = self.ue()
        return (value + 1) // 2 if value & 1 else -(value // 2)


_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


def _sps_size(sps: bytes) -> tuple[int, int] | None:
    bits = _Bits(sps)
    bits.bits(8)  # NAL header
    profile = bits.bits(8)
    bits.bits(16)  # constraint flags, level
    bits.ue()  # seq_parameter_set_id
    chroma_format = 1
    if profile in _HIGH_PROFILES:
        chroma_format = bits.ue()
        if chroma_format == 3:
            bits.bit()  # separate_colour_plane_flag
        bits.ue()  # bit_depth_luma
        bits.ue()  # bit_depth_chroma
        bits.bit()  # qpprime_y_zero_transform_bypass
        if bits.bit():  # seq_scaling_matrix_present
            for index in range(8 if chroma_format != 3 else 12):
                if bits.bit():
                    last = next_scale = 8
                    for _ in range(16 if index < 6 else 64):
                        if next_scale:
                            next_scale = (last + bits.se() + 256) % 256
                        last = next_scale or last
    bits.ue()  # log2_max_frame_num
    order_type = bits.ue()
    if order_type == 0:
        bits.ue()
    elif order_type == 1:
        bits.bit()
        bits.se()
        bits.se()
        for _ in range(bits.ue()):
            bits.se()
    bits.ue()  # max_num_ref_frames
    bits.bit()  # gaps_in_frame_num_allowed
    width_mbs = bits.ue() + 1
    height_units = bits.ue() + 1
    frame_mbs_only = bits.bit()
    if not frame_mbs_only:
        bits.bit()  # mb_adaptive_frame_field
    bits.bit()  # direct_8x8_inference
    width = width_mbs * 16
    height = height_units * 16 * (2 - frame_mbs_only)
    if bits.bit():  # frame_cropping
        left, right, top, bottom = bits.ue(), bits.ue(), bits.ue(), bits.ue()
        crop_x = 2 if chroma_format in (1, 2) else 1
        crop_y = (2 if chroma_format == 1 else 1) * (2 - frame_mbs_only)
        width -= (left + right) * crop_x
        height -= (top + bottom) * crop_y
    return (width, height) if width > 0 and height > 0 else None
