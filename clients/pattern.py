"""The built-in test source: a moving bar, a clock, the station name, and a 1 kHz beep.

Frames are built from bytes (no numpy, no fonts, no ffmpeg filters: the Windows PyAV wheel
has no ``drawtext``), so the output is the same on every machine and costs little: one
copy of a cached background per frame, a few hundred slice assignments, and text rendered
from a 5×7 bitmap font, cached per string. ``render`` is pure: the same inputs give the same
bytes, which is what tests compare.
"""

from __future__ import annotations

import array
import functools
import math
from dataclasses import dataclass

# 5x7 glyphs, one string per row, "#" = ink. Upper-case letters, digits, a little punctuation.
_FONT_ROWS = {
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    ":": (".....", "..#..", "..#..", ".....", "..#..", "..#..", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "/": ("....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."),
    ",": (".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."),
    "(": ("...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."),
    ")": (".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."),
    " ": (".....",) * 7,
}
GLYPH_W, GLYPH_H = 5, 7
BLACK, WHITE, GREY = 16, 235, 60  # limited-range luma


@functools.lru_cache(maxsize=256)
def text_bitmap(text: str, scale: int) -> tuple[int, int, tuple[bytes, ...]]:
    """(width, height, rows) of ``text`` in white on black luma, ``scale`` pixels per dot."""
    text = text.upper()
    cell = (GLYPH_W + 1) * scale
    width = max(1, len(text) * cell)
    rows = []
    for glyph_row in range(GLYPH_H):
        row = bytearray([BLACK]) * width
        for index, char in enumerate(text):
            pattern = _FONT_ROWS.get(char, _FONT_ROWS[" "])[glyph_row]
            for dot, ink in enumerate(pattern):
                if ink == "#":
                    x = index * cell + dot * scale
                    row[x:x + scale] = bytes([WHITE]) * scale
        rows += [bytes(row)] * scale
    return width, GLYPH_H * scale, tuple(rows)


@dataclass(frozen=True)
class PatternLayout:
    width: int
    height: int
    stride_y: int  # bytes per luma row (PyAV may pad rows)
    stride_c: int  # bytes per chroma row


@functools.lru_cache(maxsize=8)
def _background(layout: PatternLayout) -> tuple[bytes, bytes, bytes]:
    """Eight grey-to-colour bars (limited range), so colour and scaling problems show."""
    bars = [(180, 128, 128), (168, 44, 136), (145, 147, 44), (133, 63, 52), (63, 193, 204),
            (51, 109, 212), (28, 212, 120), (GREY, 128, 128)]
    w, h, cw, ch = layout.width, layout.height, layout.width // 2, layout.height // 2

    def plane(width: int, rows: int, stride: int, channel: int) -> bytes:
        row = bytearray(stride)
        for x in range(width):
            row[x] = bars[min(7, x * 8 // width)][channel]
        return bytes(row) * rows

    return plane(w, h, layout.stride_y, 0), plane(cw, ch, layout.stride_c, 1), plane(cw, ch, layout.stride_c, 2)


def _blit(plane: bytearray, stride: int, x: int, y: int, bitmap: tuple[int, int, tuple[bytes, ...]],
          max_w: int, max_h: int) -> None:
    width, height, rows = bitmap
    width = min(width, max_w - x)
    for i, row in enumerate(rows[: max(0, max_h - y)]):
        start = (y + i) * stride + x
        plane[start:start + width] = row[:width]


def _fit(text: str, scale: int, width: int) -> int:
    """The largest scale up to ``scale`` at which ``text`` fits in ``width`` pixels."""
    return max(1, min(scale, width // max(1, len(text) * (GLYPH_W + 1))))


def render(layout: PatternLayout, index: int, fps: int, clock_text: str, name: str,
           overlay: str = "") -> tuple[bytes, bytes, bytes]:
    """The Y, U, V planes of frame ``index`` (the bar moves one frame-step per frame)."""
    y_plane, u_plane, v_plane = _background(layout)
    y = bytearray(y_plane)
    w, h = layout.width, layout.height
    scale = max(1, h // 120)
    # A white bar sweeping left to right once every 4 s: motion the encoder must carry.
    bar_w = max(2, w // 32)
    period = max(1, 4 * fps)
    x0 = (index % period) * (w - bar_w) // period
    band = bytes([WHITE]) * bar_w
    for row in range(h // 3, 2 * h // 3):
        start = row * layout.stride_y + x0
        y[start:start + bar_w] = band
    margin = 4 * scale
    _blit(y, layout.stride_y, margin, margin, text_bitmap(name[:40], scale), w, h)
    clock = text_bitmap(clock_text, _fit(clock_text, scale * 2, w - 2 * margin))
    _blit(y, layout.stride_y, margin, h - clock[1] - margin, clock, w, h)
    if overlay:
        note = text_bitmap(overlay, _fit(overlay, scale * 2, w - 2 * margin))
        _blit(y, layout.stride_y, max(0, (w - note[0]) // 2), h // 2 - note[1] // 2, note, w, h)
    return bytes(y), u_plane, v_plane


@functools.lru_cache(maxsize=4)
def tone_frames(sample_rate: int, samples: int, tone_hz: int) -> tuple[bytes, bytes]:
    """(beep, silence) as 16-bit mono PCM of ``samples`` samples each, at -12 dBFS."""
    amplitude = 0.25 * 32767
    beep = array.array("h", (int(amplitude * math.sin(2 * math.pi * tone_hz * i / sample_rate))
                             for i in range(samples)))
    return beep.tobytes(), bytes(2 * samples)
