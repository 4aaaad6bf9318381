"""Things the portal tests feed the hub: registries, station sessions, JPEGs, ledger rows."""

from __future__ import annotations

import datetime as dt
import fractions
import random
from zoneinfo import ZoneInfo

from hub.ledger.base import Ledger, LedgerWrite
from tests.kit import TEST_REGISTRY

XSS = "<img src=x onerror=alert(1)>"
XSS_STATION = "35.09.02.2001"
# The test registry plus a public station whose *name* is markup (a registry is operator input,
# but the pages must not trust it either).
WEB_REGISTRY = TEST_REGISTRY + f'{XSS_STATION},"{XSS}",desa,Kencong,true\n'
PUBLIC_IDS = ["35.09.01", "35.09.01.2001", "35.09.01.2002", "35.09.02", "35.09.02.1001", "opd.dinkes", XSS_STATION]
PRIVATE_ID = "opd.bakesbangpol"
PRIVATE_MARKERS = ("bakesbangpol", "Kesatuan Bangsa", "Rahasia")
WIB = ZoneInfo("Asia/Jakarta")


def make_jpeg(width: int = 320, height: int = 180, seed: int = 0, detail: float = 0.5) -> bytes:
    """A JPEG that compresses like a busy office picture (~14 KB at 320x180, detail 0.5)."""
    import av

    rng = random.Random(seed)
    luma = bytearray(width * height)
    for by in range(0, height, 8):
        for bx in range(0, width, 8):
            base = rng.randrange(40, 220)
            for y in range(by, min(by + 8, height)):
                for x in range(bx, min(bx + 8, width)):
                    luma[y * width + x] = max(0, min(255, base + int(rng.gauss(0, 24 * detail))))
    frame = av.VideoFrame(width, height, "yuvj420p")
    frame.planes[0].update(bytes(luma))
    chroma = bytes([128]) * ((width // 2) * (height // 2))
    frame.planes[1].update(chroma)
    frame.planes[2].update(chroma)
    codec = av.CodecContext.create("mjpeg", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuvj420p"
    codec.time_base = fractions.Fraction(1, 10)
    return b"".join(bytes(packet) for packet in [*codec.encode(frame), *codec.encode(None)])


def wib(day: dt.date, hh: int, mm: int = 0) -> float:
    return dt.datetime.combine(day, dt.time(hh, mm), WIB).timestamp()


async def seed_intervals(ledger: Ledger, station: str, spans: list[tuple[str | None, float]]) -> None:
    """Write transitions straight into the ledger: [(state or None for offline, at), ...]."""
    for state, at in spans:
        await ledger.apply(LedgerWrite("transition", station, state, at, state or "closed"))
