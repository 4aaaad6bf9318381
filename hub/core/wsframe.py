"""Server-to-client WebSocket frames (RFC 6455 §5.2), encoded once and written to many sockets.

A frame the server sends is never masked, and without an extension (permessage-deflate off)
its bytes depend only on the payload and the opcode. So one event's frame is the same bytes
for every watcher with the same codec: the watch fan-out encodes it once per event and writes
it to each socket as is (see :mod:`hub.routes.uvicorn_seams`).

Only whole messages (FIN = 1), text or binary: no fragmentation, no control frames, no RSV
bits, no mask. Pure code: no sockets, no asyncio.
"""

from __future__ import annotations

import struct

OPCODE_TEXT = 0x1
OPCODE_BINARY = 0x2
_FIN = 0x80
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")


def encode_frame(payload: bytes, opcode: int) -> bytes:
    """The complete frame (header + ``payload``) for one unfragmented, unmasked message.

    The payload length goes in 7 bits up to 125, else 126 and a 16-bit length up to 65,535,
    else 127 and a 64-bit length (RFC 6455 §5.2: always the shortest form).
    """
    if opcode not in (OPCODE_TEXT, OPCODE_BINARY):
        raise ValueError(f"only text (1) and binary (2) frames, not opcode {opcode}")
    size = len(payload)
    if size <= 125:
        header = bytes((_FIN | opcode, size))
    elif size <= 0xFFFF:
        header = _LEN16.pack(_FIN | opcode, 126, size)
    else:
        header = _LEN64.pack(_FIN | opcode, 127, size)
    return header + payload


def binary_frame(payload: bytes) -> bytes:
    return encode_frame(payload, OPCODE_BINARY)


def text_frame(text: str) -> bytes:
    return encode_frame(text.encode("utf-8"), OPCODE_TEXT)
