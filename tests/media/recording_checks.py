"""What the recordings' end-to-end tests share: the hub's recording settings, waiting for a
finished recording through the public API, fetching its file, and reading it with ffprobe.

ffprobe is FFmpeg's own reader (Debian ``ffmpeg``, installed by ``.ci/run``): an independent
check that the file plays, not our own muxer reading back what it wrote. Without it the tests
skip (and on CI a skip fails the run).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients.agent import Agent
from tests.kit import timeout, wait_until

# Short resume window so a test sees a recording finished after a crash without waiting two
# minutes; no disk floor (a CI disk may have less than the 2 GB default free).
RECORDING = {"min_free_bytes": 0, "resume_s": 30.0}


def ffprobe_path() -> str:
    found = shutil.which("ffprobe")
    if found is None:
        pytest.skip("ffprobe missing (apt-get install ffmpeg; .ci/run installs it)")
    return found


@dataclass(frozen=True)
class Probe:
    duration_s: float
    bytes: int
    video_codec: str
    audio_codec: str
    video_packets: list[float]  # pts of every video packet, seconds
    raw: dict[str, Any]

    @property
    def bitrate_bps(self) -> float:
        return 8 * self.bytes / self.duration_s if self.duration_s else 0.0

    def largest_video_gap(self) -> float:
        times = sorted(self.video_packets)
        return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0)


def probe(path: Path) -> Probe:
    """Streams, duration and every video packet's time, read by ffprobe."""
    command = [ffprobe_path(), "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
               "-show_entries", "packet=stream_index,pts_time,flags", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout(60), check=False)
    assert result.returncode == 0, f"ffprobe could not read {path}: {result.stderr[-2000:]}"
    raw = json.loads(result.stdout)
    streams = {s["codec_type"]: s for s in raw.get("streams", [])}
    video_index = streams["video"]["index"] if "video" in streams else -1
    packets = [float(p["pts_time"]) for p in raw.get("packets", [])
               if p.get("stream_index") == video_index and p.get("pts_time") not in (None, "N/A")]
    return Probe(float(raw["format"].get("duration") or 0.0), path.stat().st_size,
                 streams.get("video", {}).get("codec_name", ""), streams.get("audio", {}).get("codec_name", ""),
                 packets, raw)


def decodes_cleanly(path: Path) -> str:
    """Every frame decoded by FFmpeg (ffprobe -count_frames); the errors it printed, if any."""
    command = [ffprobe_path(), "-v", "error", "-count_frames", "-select_streams", "v:0",
               "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout(120), check=False)
    return result.stderr.strip() if result.returncode == 0 else f"exit {result.returncode}: {result.stderr}"


async def recordings_of(http: httpx.AsyncClient, station: str) -> list[dict[str, Any]]:
    response = await http.get("/api/v1/recordings", params={"station": station})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["recordings"]
    return items


async def finished_recording(http: httpx.AsyncClient, station: str, wait: float = 60) -> dict[str, Any]:
    """The station's one recording once it has a ``url`` (finished); fails on more than one."""
    async def done() -> dict[str, Any] | None:
        items = await recordings_of(http, station)
        assert len(items) <= 1, f"one activity, one recording: {items}"
        return items[0] if items and items[0].get("url") else None

    return await wait_until(done, wait, f"the recording of {station} to be finished", every=0.25)


async def download(http: httpx.AsyncClient, url: str, into: Path) -> Path:
    response = await http.get(url)
    assert response.status_code == 200, f"{url}: {response.status_code}"
    assert response.headers.get("accept-ranges") == "bytes"
    into.write_bytes(response.content)
    return into


async def bytes_sent(agent: Agent) -> int:
    """RTP payload bytes the agent's publisher has sent (audio and video)."""
    assert agent.session is not None
    report = await agent.session.pc.getStats()
    return sum(getattr(s, "bytesSent", 0) or 0 for s in report.values() if s.type == "outbound-rtp")
