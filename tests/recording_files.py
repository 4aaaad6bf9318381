"""Recordings as test data: a real WebM on disk (PyAV: testsrc VP8 + a sine in Opus) and its
row in the index, so the HTTP routes and the pages can be tested without the recorder.

:func:`make_webm` encodes ``seconds`` of FFmpeg's ``testsrc`` (a counter and colour bars,
so a seek shows a different picture) with a keyframe every second, so a player can seek
anywhere; :func:`add_recording` writes the file where ``[recording] dir`` keeps finished
recordings (docs/recordings.md "Files on disk") and adds the ``done`` row pointing at it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from hub.backends.base import Recording

WIB = ZoneInfo("Asia/Jakarta")


def make_webm(path: Path, seconds: float = 6.0, width: int = 320, height: int = 240, fps: int = 15) -> Path:
    """A playable, seekable WebM (VP8 + Opus) of ``seconds`` at ``path``."""
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    video_in = av.open(f"testsrc=size={width}x{height}:rate={fps}:duration={seconds}", format="lavfi")
    audio_in = av.open(f"sine=frequency=440:sample_rate=48000:duration={seconds}", format="lavfi")
    with av.open(str(path), "w", format="webm") as out:
        video = out.add_stream("libvpx", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 300_000
        video.codec_context.gop_size = fps  # a keyframe every second: seekable anywhere
        audio = out.add_stream("libopus", rate=48000)
        audio.layout = "mono"
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        for frame in video_in.decode(video=0):
            frame = frame.reformat(format="yuv420p")
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        for sound in audio_in.decode(audio=0):
            for converted in resampler.resample(sound):
                out.mux(audio.encode(converted))
        out.mux(audio.encode(None))
    video_in.close()
    audio_in.close()
    return path


def recording_row(station: str, title: str, start: float, *, duration_s: float = 6.0,
                  **changes: Any) -> Recording:
    """A ``done`` index row (``changes`` override any field)."""
    day = dt.datetime.fromtimestamp(start, WIB).date().isoformat()
    fields: dict[str, Any] = {
        "id": secrets.token_hex(8), "station": station, "title": title, "start": start,
        "end": start + duration_s, "duration_s": duration_s, "bytes": 0, "video_codec": "VP8",
        "audio_codec": "opus", "state": "done", "visible": True, "hidden_reason": "", "reason": "activity",
        "parts": (), "path": "", "day": day,
    }
    fields.update(changes)
    return Recording(**fields)


async def add_recording(store: Any, recordings_dir: Path, station: str, title: str, start: float,
                        source: Path | None = None, **changes: Any) -> Recording:
    """A finished recording of ``station``: ``source`` (a WebM, e.g. from :func:`make_webm`)
    copied to ``<dir>/<station>/<day>/<id>.webm`` and its ``done`` row added to ``store``.
    Without ``source`` only the row is added (``changes`` may set ``state``, ``path`` …)."""
    row = recording_row(station, title, start, **changes)
    if source is not None:
        relative = f"{station}/{row.day}/{row.id}.webm"
        target = recordings_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        row = dataclasses.replace(row, path=relative, bytes=target.stat().st_size)
    await store.add(row)
    return row
