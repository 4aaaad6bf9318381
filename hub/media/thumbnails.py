"""Thumbnails: a small JPEG from one encoded keyframe (publishers that send none of their
own), and a fresh JPEG from the one an agent sent (:func:`reencode_jpeg`).

Decoding is the expensive thing the relay otherwise never does, so it happens for at most
one keyframe every ``thumbnail_s`` per publisher, in a worker thread, with a decoder that
lives only for that one frame (a keyframe needs no earlier state).

An agent's JPEG is never served as sent: it is decoded and encoded again, which keeps only
pixels (no EXIF, comments or trailing bytes, nothing a browser could sniff as something
else), scaled down to fit ``MAX_WIDTH`` × ``MAX_HEIGHT``. Its size is read from the frame
header before anything is decoded, so a small file that claims a huge picture (a
decompression bomb) costs nothing.
"""

from __future__ import annotations

import fractions
from typing import Literal

import av

THUMBNAIL_WIDTH = 320
MAX_WIDTH, MAX_HEIGHT = 640, 480  # what a re-encoded thumbnail fits in (agents send 320 px wide)
MAX_SOURCE_PIXELS = 4096 * 4096  # a larger picture is refused before it is decoded
# Start-of-frame markers (baseline, progressive, lossless …); C4, C8 and CC are not frames.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


class BadImage(ValueError):
    """Not a JPEG this hub will decode; the message says why, for the station's log."""


DECODERS: dict[str, Literal["libvpx", "h264"]] = {"video/vp8": "libvpx", "video/h264": "h264"}


def keyframe_to_jpeg(mime_type: str, keyframe: bytes, width: int = THUMBNAIL_WIDTH) -> bytes | None:
    """Decode one keyframe and encode it as a JPEG ``width`` pixels wide (None if it fails).

    Blocking and CPU-bound: run it in an executor.
    """
    decoder_name = DECODERS.get(mime_type.lower())
    if decoder_name is None:
        return None
    try:
        decoder = av.CodecContext.create(decoder_name, "r")
        frames = list(decoder.decode(av.Packet(keyframe))) + list(decoder.decode(None))
    except av.FFmpegError:
        return None
    if not frames:
        return None
    picture = frames[0]
    width = min(width, picture.width) // 2 * 2
    height = max(2, round(picture.height * width / picture.width / 2) * 2)
    return _encode(picture, width, height) or None


def jpeg_dimensions(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's start-of-frame header, without decoding. Pure."""
    if not data.startswith(b"\xff\xd8"):
        raise BadImage("not a JPEG (no SOI marker)")
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise BadImage("not a JPEG (broken marker structure)")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # markers without a length
            at += 2
            continue
        length = int.from_bytes(data[at + 2:at + 4], "big")
        if length < 2:
            raise BadImage("not a JPEG (bad segment length)")
        if marker in _SOF:
            if at + 9 > len(data):
                break
            height = int.from_bytes(data[at + 5:at + 7], "big")
            width = int.from_bytes(data[at + 7:at + 9], "big")
            if not width or not height:
                raise BadImage("JPEG without a picture size")
            return width, height
        if marker == 0xDA:  # scan data before any frame header
            break
        at += 2 + length
    raise BadImage("not a JPEG (no frame header)")


def reencode_jpeg(data: bytes, max_width: int = MAX_WIDTH, max_height: int = MAX_HEIGHT) -> bytes:
    """A fresh JPEG of the picture in ``data``, scaled down (aspect kept) to fit the bounds.
    Raises :class:`BadImage`. Blocking and CPU-bound: run it in an executor."""
    width, height = jpeg_dimensions(data)
    if width * height > MAX_SOURCE_PIXELS:
        raise BadImage(f"JPEG of {width}x{height} is larger than this hub decodes")
    try:
        decoder = av.CodecContext.create("mjpeg", "r")
        frames = list(decoder.decode(av.Packet(data))) + list(decoder.decode(None))
    except (av.FFmpegError, ValueError) as exc:
        raise BadImage(f"JPEG does not decode: {exc}") from None
    if not frames:
        raise BadImage("JPEG does not decode to a picture")
    picture = frames[0]
    scale = min(1.0, max_width / picture.width, max_height / picture.height)
    out_width = max(2, int(picture.width * scale) // 2 * 2)
    out_height = max(2, int(picture.height * scale) // 2 * 2)
    jpeg = _encode(picture, out_width, out_height)
    if not jpeg:
        raise BadImage("JPEG could not be encoded again")
    return jpeg


def _encode(picture: av.VideoFrame, width: int, height: int) -> bytes:
    small = picture.reformat(width=width, height=height, format="yuvj420p")
    small.pts = 0
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 1)
    packets = list(encoder.encode(small)) + list(encoder.encode(None))
    return b"".join(bytes(packet) for packet in packets)
