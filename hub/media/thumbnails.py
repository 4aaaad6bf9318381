"""A small JPEG from one encoded keyframe, for publishers that send no thumbnails of their own.

Decoding is the expensive thing the relay otherwise never does, so it happens for at most
one keyframe every ``thumbnail_s`` per publisher, in a worker thread, with a decoder that
lives only for that one frame (a keyframe needs no earlier state).
"""

from __future__ import annotations

import fractions
from typing import Literal

import av

THUMBNAIL_WIDTH = 320
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
    small = picture.reformat(width=width, height=height, format="yuvj420p")
    small.pts = 0
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width = width
    encoder.height = height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = fractions.Fraction(1, 1)
    packets = list(encoder.encode(small)) + list(encoder.encode(None))
    return b"".join(bytes(packet) for packet in packets) or None
