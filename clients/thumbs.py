"""Thumbnails: a small JPEG of a video frame for ``thumb {jpeg}`` (DESIGN §5).

PyAV's MJPEG encoder, no Pillow: ~320 px wide, aspect kept, even height. A JPEG that comes
out larger than ``MAX_BYTES`` (a noisy camera at high quality) is re-encoded at a coarser
quantiser, then at half the width, so it always fits the hub's 64 KiB frame limit.
"""

from __future__ import annotations

import fractions

import av

WIDTH = 320
MAX_BYTES = 60 * 1024  # the hub's frame limit is 64 KiB for everything but thumbs; stay under


def encode_jpeg(frame: av.VideoFrame, width: int = WIDTH, quality: int = 5) -> bytes:
    """A JPEG of ``frame`` at ``width`` px; ``quality`` is the MJPEG qscale (2 best .. 31)."""
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    small = frame.reformat(width=width, height=height, format="yuvj420p")
    small.pts = None
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuvj420p"
    codec.time_base = fractions.Fraction(1, 25)
    codec.qmin = codec.qmax = quality  # a fixed quantiser: size follows the picture
    data = b"".join(bytes(p) for p in codec.encode(small))
    data += b"".join(bytes(p) for p in codec.encode(None))
    return data


def thumbnail(frame: av.VideoFrame) -> bytes:
    """A JPEG under ``MAX_BYTES``."""
    for width, quality in ((WIDTH, 5), (WIDTH, 12), (WIDTH // 2, 20)):
        data = encode_jpeg(frame, width, quality)
        if len(data) <= MAX_BYTES:
            return data
    return data
