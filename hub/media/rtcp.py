"""A viewer's RTCP feedback read, and our sender reports written, as plain values (RFC 3550
§6.4, RFC 4585 §6.2-6.3).

Each viewer sends a compound every 0.5-1.5 s (a receiver report, its CNAME, from aiortc and
browsers often a REMB), and NACKs and PLIs as it loses packets; the hub sends each of a
viewer's senders an SR as often. aiortc parses a compound into dataclasses and writes an SR
from them: with 32 browser-like viewers that parsing and writing was about a tenth of the
hub's CPU per viewer (docs/benchmarks.md section 3). ``read_feedback`` returns what the relay
reads from a compound made only of receiver feedback; for anything else (an SR, a BYE, an
APP, transport-wide feedback, an unknown type) or anything malformed it answers None, and
the caller hands the compound to aiortc's parser, so what is accepted and what is refused
stays aiortc's. ``sender_report`` writes the SR aiortc's sender would (no report blocks).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import NamedTuple

RTCP_SR, RTCP_RR, RTCP_SDES, RTCP_RTPFB, RTCP_PSFB = 200, 201, 202, 205, 206
RTPFB_NACK = 1  # generic NACK (RFC 4585 §6.2.1)
PSFB_PLI, PSFB_FIR, PSFB_APP = 1, 4, 15  # picture loss, full intra request (RFC 5104), REMB rides on APP
NTP_UNIX_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01
MASK32 = 0xFFFFFFFF

_HEADER = struct.Struct("!BBH")
_BLOCK = struct.Struct("!IIIIII")  # SSRC, fraction lost + cumulative lost, highest, jitter, LSR, DLSR
_TWO_SSRCS = struct.Struct("!II")
_NACK_ITEM = struct.Struct("!HH")
_SR = struct.Struct("!BBHIQIII")
_SR_WORDS = 6  # the SR's length field: 28 bytes without report blocks, in words, minus one


class ReceiverReport(NamedTuple):
    """One RFC 3550 report block about a sender's SSRC, as the viewer sent it."""

    fraction_lost: int  # 0..255 since the viewer's previous report
    packets_lost: int  # cumulative, signed
    highest_sequence: int  # extended highest sequence number received (low 16 bits used)
    jitter: int  # interarrival jitter, RTP clock units
    lsr: int  # middle 32 bits of the NTP time of our last SR the viewer had; 0: none
    dlsr: int  # delay since that SR at the viewer, 1/65536 s


class Feedback:
    """What one compound asks of the hub's senders, each item with the SSRC it is about."""

    __slots__ = ("keyframe_requests", "nacks", "reports")

    def __init__(self) -> None:
        self.reports: list[tuple[int, ReceiverReport]] = []  # (sender SSRC, block)
        self.nacks: list[tuple[int, int, list[int]]] = []  # (viewer's SSRC, media SSRC, sequence numbers)
        self.keyframe_requests: list[int] = []  # media SSRCs of PLIs and FIRs


def read_feedback(data: bytes) -> Feedback | None:
    """Report blocks, NACKs and keyframe requests of a compound of RR, SDES, generic NACK,
    PLI, FIR and REMB packets; None for any other compound (another type, or one aiortc's
    ``RtcpPacket.parse`` would refuse: the same length, version, padding and item checks)."""
    feedback = Feedback()
    position, size = 0, len(data)
    while position < size:
        if position + 4 > size:
            return None
        first, kind, words = _HEADER.unpack_from(data, position)
        start = position + 4
        end = start + 4 * words
        if first >> 6 != 2 or end > size:
            return None
        stop = end
        if first & 0x20:
            padding = data[end - 1] if end > start else 0
            if not padding or padding > end - start:
                return None
            stop -= padding
        count = first & 0x1F
        if not _read_packet(data, kind, count, start, stop, feedback):
            return None
        position = end
    return feedback


def _read_packet(data: bytes, kind: int, count: int, start: int, stop: int, feedback: Feedback) -> bool:
    if kind == RTCP_RR:
        if stop - start != 4 + 24 * count:
            return False
        for offset in range(start + 4, stop, 24):
            ssrc, lost, highest, jitter, lsr, dlsr = _BLOCK.unpack_from(data, offset)
            cumulative = lost & 0xFFFFFF
            if cumulative & 0x800000:
                cumulative -= 0x1000000  # 24-bit two's complement
            feedback.reports.append((ssrc, ReceiverReport(lost >> 24, cumulative, highest, jitter, lsr, dlsr)))
        return True
    if kind == RTCP_SDES:
        return _sdes_well_formed(data, count, start, stop)
    if kind == RTCP_RTPFB and count == RTPFB_NACK:
        if stop - start < 8 or (stop - start) % 4:
            return False
        sender, media = _TWO_SSRCS.unpack_from(data, start)
        feedback.nacks.append((sender, media, _nacked(data, start + 8, stop)))
        return True
    if kind == RTCP_PSFB and count in (PSFB_PLI, PSFB_FIR, PSFB_APP):
        if stop - start < 8:
            return False
        if count != PSFB_APP:
            feedback.keyframe_requests.append(_TWO_SSRCS.unpack_from(data, start)[1])
        return True
    return False


def _nacked(data: bytes, start: int, stop: int) -> list[int]:
    """The sequence numbers of a NACK's items: each PID and the ones its bitmask flags."""
    lost = []
    for offset in range(start, stop, 4):
        pid, mask = _NACK_ITEM.unpack_from(data, offset)
        lost.append(pid)
        bit = 1
        while mask:
            if mask & 1:
                lost.append((pid + bit) & 0xFFFF)
            mask >>= 1
            bit += 1
    return lost


def _sdes_well_formed(data: bytes, count: int, start: int, stop: int) -> bool:
    """aiortc's SDES checks: every chunk's SSRC and every item's value inside the packet."""
    position = start
    for _ in range(count):
        if stop < position + 4:
            return False
        position += 4
        while position < stop - 1:
            item, length = data[position], data[position + 1]
            position += 2
            if stop < position + length:
                return False
            position += length
            if item == 0:
                break
    return True


def ntp_now(wall: Callable[[], float] = time.time) -> int:
    """The wall clock as a 64-bit NTP timestamp (seconds since 1900, 32.32 fixed point)."""
    return int((wall() + NTP_UNIX_OFFSET_S) * (1 << 32))


def middle_bits(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: what a viewer echoes as LSR."""
    return (ntp >> 16) & MASK32


def remb(ssrc: int, bitrate: int, ssrcs: list[int]) -> bytes:
    """A REMB (draft-alvestrand-rmcat-remb-03: PSFB, FMT 15) from ``ssrc``: ``bitrate`` as an
    18-bit mantissa and a 6-bit exponent, for the media ``ssrcs`` — the bytes aiortc's
    ``RtcpPsfbPacket`` with ``pack_remb_fci`` makes, without the packet object."""
    exponent = max(0, bitrate.bit_length() - 18)
    mantissa = bitrate >> exponent
    return struct.pack(f"!BBHII4sBBH{len(ssrcs)}I", 0x80 | PSFB_APP, RTCP_PSFB, 4 + len(ssrcs), ssrc, 0, b"REMB",
                       len(ssrcs), (exponent << 2) | (mantissa >> 16), mantissa & 0xFFFF, *ssrcs)


def sender_report(ssrc: int, ntp: int, rtp_timestamp: int, packet_count: int, octet_count: int) -> bytes:
    """An SR without report blocks (a relay's sender receives nothing); the counts wrap at 2³²."""
    return _SR.pack(0x80, RTCP_SR, _SR_WORDS, ssrc, ntp, rtp_timestamp & MASK32, packet_count & MASK32,
                    octet_count & MASK32)
