"""``hub.media.rtp.parse_rtp`` against aiortc's own serializer, and against hostile bytes."""

from __future__ import annotations

import struct

from aiortc.rtcrtpparameters import RTCRtpHeaderExtensionParameters, RTCRtpParameters
from aiortc.rtp import HeaderExtensionsMap, RtpPacket
from hypothesis import given
from hypothesis import strategies as st

from hub.media.rtp import parse_rtp

ABS_SEND_TIME = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
MID = "urn:ietf:params:rtp-hdrext:sdes:mid"
ABS_ID, MID_ID = 3, 9


def _extensions_map() -> HeaderExtensionsMap:
    extensions = HeaderExtensionsMap()
    extensions.configure(RTCRtpParameters(headerExtensions=[
        RTCRtpHeaderExtensionParameters(id=MID_ID, uri=MID),
        RTCRtpHeaderExtensionParameters(id=ABS_ID, uri=ABS_SEND_TIME),
    ]))
    return extensions


EXTENSIONS = _extensions_map()


@given(
    payload_type=st.integers(0, 127), marker=st.integers(0, 1), seq=st.integers(0, 0xFFFF),
    ts=st.integers(0, 0xFFFFFFFF), ssrc=st.integers(0, 0xFFFFFFFF), payload=st.binary(max_size=300),
    csrcs=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15), padding=st.integers(0, 255),
    abs_send_time=st.none() | st.integers(0, 0xFFFFFF), mid=st.none() | st.text("0123456789", min_size=1, max_size=3),
)
def test_fields_match_what_aiortc_serialized(payload_type: int, marker: int, seq: int, ts: int, ssrc: int,
                                            payload: bytes, csrcs: list[int], padding: int,
                                            abs_send_time: int | None, mid: str | None) -> None:
    packet = RtpPacket(payload_type=payload_type, marker=marker, sequence_number=seq, timestamp=ts, ssrc=ssrc,
                       payload=payload)
    packet.csrc = csrcs
    packet.padding_size = padding
    packet.extensions.abs_send_time = abs_send_time
    packet.extensions.mid = mid

    fields = parse_rtp(packet.serialize(EXTENSIONS), ABS_ID)

    assert fields == (payload_type, marker, seq, ts, ssrc, payload, abs_send_time)


def test_abs_send_time_is_only_read_when_its_id_is_known() -> None:
    packet = RtpPacket(payload_type=96, sequence_number=1, timestamp=2, ssrc=3, payload=b"x")
    packet.extensions.abs_send_time = 0x123456
    data = packet.serialize(EXTENSIONS)

    def abs_send_time(extension_id: int | None = None) -> int | None:
        fields = parse_rtp(data, extension_id)
        assert fields is not None
        return fields[-1]

    assert abs_send_time() is None
    assert abs_send_time(MID_ID) is None  # a 1-byte mid is not a 3-byte timestamp
    assert abs_send_time(ABS_ID) == 0x123456


def test_two_byte_header_extensions() -> None:
    # RFC 8285 §4.3: profile 0x100 + appbits, then (id, length, value) with padding zeros
    elements = bytes([0, ABS_ID, 3]) + (0xABCDEF).to_bytes(3, "big") + bytes([MID_ID, 1]) + b"7"
    elements += b"\x00" * (-len(elements) % 4)
    data = struct.pack("!BBHII", 0x90, 96, 7, 8, 9) + struct.pack("!HH", 0x1000, len(elements) // 4)
    data += elements + b"payload"
    assert parse_rtp(data, ABS_ID) == (96, 0, 7, 8, 9, b"payload", 0xABCDEF)


HEADER = struct.pack("!BBHII", 0x80, 96, 1, 2, 3)


def test_malformed_packets_are_none_never_an_exception() -> None:
    assert parse_rtp(b"") is None
    assert parse_rtp(HEADER[:11]) is None
    assert parse_rtp(b"\x40" + HEADER[1:] + b"x") is None  # version 1
    assert parse_rtp(b"\x8f" + HEADER[1:]) is None  # 15 CSRCs announced, none there
    assert parse_rtp(b"\x90" + HEADER[1:] + b"\xbe\xde") is None  # extension header cut short
    assert parse_rtp(b"\x90" + HEADER[1:] + b"\xbe\xde\x00\x05" + b"\x00" * 8) is None  # block overruns
    assert parse_rtp(b"\xa0" + HEADER[1:] + b"ab\x00") is None  # padding count 0
    assert parse_rtp(b"\xa0" + HEADER[1:] + b"ab\x09") is None  # more padding than payload
    assert parse_rtp(HEADER) == (96, 0, 1, 2, 3, b"", None)  # empty payload is fine


@given(st.binary(max_size=64), st.integers(1, 14))
def test_any_bytes_parse_or_are_refused(data: bytes, wanted: int) -> None:
    parse_rtp(data, wanted)
    parse_rtp(b"\x90" + data, wanted)
