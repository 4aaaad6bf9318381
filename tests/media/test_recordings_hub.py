"""A real hub, a real aiortc publisher and the real recorder: an activity becomes one done,
playable file in the index (docs/recordings.md)."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hub.backends.base import Recording
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout, wait_until
from tests.media.peers import Publisher
from tests.wsclient import heartbeat, station

pytest.importorskip("hub.media.recorder")

DESA = "35.09.01.2001"


@pytest.fixture
async def recording_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path, recording={"min_free_bytes": 0}))
    try:
        yield running
    finally:
        await stop_hub(running)


@pytest.mark.parametrize("codec, extension", [("VP8", ".webm"), ("H264", ".mp4")])
async def test_an_activity_becomes_one_done_file(recording_hub: RunningHub, codec: str, extension: str) -> None:
    hub = recording_hub.hub
    client, _ = await station(recording_hub.ws, DESA, await recording_hub.token(DESA))
    beating = asyncio.create_task(heartbeat(client))
    publisher = await Publisher.start(hub.media, DESA, video=codec)
    try:
        await wait_until(lambda: hub.stations.table.get(DESA).state == "live", message="the station to be live")
        await client.send({"t": "activity.start", "title": "Musyawarah Desa"})
        held = await wait_until(lambda: hub.recordings.open.get(DESA), message="a recording to start")
        assert held.recorder is not None and held.part is not None and held.part.suffix == extension

        def grown() -> bool:
            return held.part is not None and held.part.exists() and held.part.stat().st_size > 20_000

        await wait_until(grown, timeout=20, message="the part to hold a few seconds of media")
        await client.send({"t": "activity.stop"})

        async def done() -> Recording | None:
            found = await hub.backend.recordings.list(station=DESA)
            return found[0] if found and found[0].state == "done" else None

        recording = await wait_until(done, timeout=30, message="the recording to be finished")
    finally:
        await publisher.close()
        beating.cancel()
        with contextlib.suppress(Exception):
            await client.close()
    assert (recording.station, recording.title, recording.reason) == (DESA, "Musyawarah Desa", "activity")
    assert recording.end is not None and recording.duration_s > 0.5 and recording.parts == ()
    assert recording.video_codec.lower().endswith(codec.lower()) and "opus" in recording.audio_codec.lower()
    path = hub.settings.recording_path / recording.path
    assert path.suffix == extension and path.stat().st_size == recording.bytes > 0
    assert not (path.parent / recording.id).exists()  # the parts are gone
    if shutil.which("ffprobe"):
        probe = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0",
                                str(path)], capture_output=True, text=True, timeout=timeout(20), check=True)
        assert set(probe.stdout.split()) == {codec.lower(), "opus"}
    metrics = hub.recordings.metrics()
    assert metrics["active"] == 0 and metrics["bytes"] > 0 and metrics["errors"] == 0 and metrics["cpu_s"] > 0
