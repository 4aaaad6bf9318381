"""Pre-encoded server frames: RFC 6455 §5.2 headers, checked byte by byte and by websockets' parser."""

from __future__ import annotations

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from hub.core import wsframe

# Each boundary of the three length forms: 7-bit, 16-bit (126), 64-bit (127).
SIZES = [0, 1, 125, 126, 127, 65_535, 65_536, 300_000]


def parse(data: bytes) -> Frame:
    """Parse one frame as a client would (server frames must arrive unmasked)."""
    reader = StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    parser = Frame.parse(reader.read_exact, mask=False, max_size=None)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
    else:
        raise AssertionError("frame incomplete")
    assert not reader.buffer, "bytes left after the frame"
    return frame


def test_short_frame_headers_byte_by_byte() -> None:
    assert wsframe.binary_frame(b"") == b"\x82\x00"
    assert wsframe.binary_frame(b"abc") == b"\x82\x03abc"
    assert wsframe.text_frame("hi") == b"\x81\x02hi"
    assert wsframe.binary_frame(bytes(125))[:2] == b"\x82\x7d"


def test_16_bit_and_64_bit_lengths() -> None:
    assert wsframe.binary_frame(bytes(126))[:4] == b"\x82\x7e\x00\x7e"
    assert wsframe.binary_frame(bytes(65_535))[:4] == b"\x82\x7e\xff\xff"
    assert wsframe.binary_frame(bytes(65_536))[:10] == b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"
    assert len(wsframe.binary_frame(bytes(65_536))) == 10 + 65_536


@pytest.mark.parametrize("size", SIZES)
def test_frames_decode_with_websockets_parser_and_match_its_serializer(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    framed = wsframe.binary_frame(payload)
    frame = parse(framed)
    assert (frame.opcode, frame.fin, frame.data) == (Opcode.BINARY, True, payload)
    assert not (frame.rsv1 or frame.rsv2 or frame.rsv3)
    # Byte for byte what websockets (and so uvicorn) would put on the wire for this message.
    assert framed == Frame(Opcode.BINARY, payload).serialize(mask=False)

    text = "é" * (size // 2) + "a" * (size % 2)  # multi-byte UTF-8: the length is in bytes
    framed_text = wsframe.text_frame(text)
    frame = parse(framed_text)
    assert (frame.opcode, frame.fin, bytes(frame.data).decode()) == (Opcode.TEXT, True, text)
    assert framed_text == Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def test_only_text_and_binary_opcodes() -> None:
    with pytest.raises(ValueError):
        wsframe.encode_frame(b"", 0x9)  # ping: a control frame is not ours to send
