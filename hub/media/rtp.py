"""Reading an RTP packet's fixed header, once SRTP has been removed (RFC 3550 §5.1).

The ingest fast path (``hub.media.ingest``) reads every packet a publisher sends. aiortc's
``RtpPacket.parse`` builds an object, a header-extension object and a padding count per
packet; the relay needs five header fields, the payload, and one extension
(abs-send-time, for the receive-side bandwidth estimate). ``parse_rtp`` returns exactly
that as a tuple, or None for anything malformed: it never raises on hostile bytes.
"""

from __future__ import annotations

import struct

# (payload type, marker, sequence number, timestamp, SSRC, payload, abs-send-time or None)
RtpFields = tuple[int, int, int, int, int, bytes, "int | None"]

_FIXED = struct.Struct("!BBHII")
_EXTENSION = struct.Struct("!HH")
FIXED_HEADER_BYTES = 12
ONE_BYTE_PROFILE = 0xBEDE  # RFC 8285 §4.2
TWO_BYTE_PROFILE_MASK, TWO_BYTE_PROFILE = 0xFFF0, 0x1000  # RFC 8285 §4.3
ABS_SEND_TIME_BYTES = 3


def parse_rtp(data: bytes, abs_send_time_id: int | None = None) -> RtpFields | None:
    """The fields the relay uses, with CSRCs, header extensions and padding removed.

    ``abs_send_time_id``: the negotiated id of the abs-send-time extension; its 24-bit
    value is returned when present. None: malformed (not version 2, lengths that overrun
    the packet, padding longer than the payload).
    """
    if len(data) < FIXED_HEADER_BYTES:
        return None
    first, second, seq, ts, ssrc = _FIXED.unpack_from(data)
    if first >> 6 != 2:
        return None
    position = FIXED_HEADER_BYTES + 4 * (first & 0x0F)
    end = len(data)
    abs_send_time = None
    if first & 0x10:
        if position + 4 > end:
            return None
        profile, words = _EXTENSION.unpack_from(data, position)
        position += 4
        block_end = position + 4 * words
        if block_end > end:
            return None
        if abs_send_time_id is not None:
            abs_send_time = _find_abs_send_time(data, position, block_end, profile, abs_send_time_id)
        position = block_end
    if first & 0x20:
        padding = data[-1]
        if padding == 0 or position + padding > end:
            return None
        end -= padding
    if position > end:
        return None
    return second & 0x7F, second >> 7, seq, ts, ssrc, data[position:end], abs_send_time


def _find_abs_send_time(data: bytes, position: int, end: int, profile: int, wanted: int) -> int | None:
    """RFC 8285 one-byte or two-byte elements; None if the extension is absent or malformed."""
    if profile == ONE_BYTE_PROFILE:
        while position < end:
            byte = data[position]
            if byte == 0:  # padding between elements
                position += 1
                continue
            element_id, length = byte >> 4, (byte & 0x0F) + 1
            if element_id == 15:  # reserved: stop reading (RFC 8285 §4.2)
                return None
            position += 1
            if element_id == wanted:
                return _abs_send_time(data, position, length, end)
            position += length
        return None
    if profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        while position < end:
            element_id = data[position]
            if element_id == 0:
                position += 1
                continue
            if position + 1 >= end:
                return None
            length = data[position + 1]
            position += 2
            if element_id == wanted:
                return _abs_send_time(data, position, length, end)
            position += length
    return None


def _abs_send_time(data: bytes, position: int, length: int, end: int) -> int | None:
    if length != ABS_SEND_TIME_BYTES or position + length > end:
        return None
    return int.from_bytes(data[position:position + ABS_SEND_TIME_BYTES], "big")
