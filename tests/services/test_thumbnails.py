"""A station's thumbnails on a real hub: re-encoded (no metadata, bounded size), bad ones
refused without losing the last good one, at most one per half ``thumbnail_s``."""

from __future__ import annotations

import time
from pathlib import Path

import av
import httpx

from hub.media.thumbnails import MAX_HEIGHT, MAX_WIDTH
from tests.kit import hub_settings, start_hub, stop_hub
from tests.web.helpers import make_jpeg
from tests.wsclient import JSON, Client, station

STATION = "35.09.01"
THUMBNAIL_S = 10.0  # at most one thumbnail per 5 s per station


def with_comment(jpeg: bytes, text: bytes) -> bytes:
    """The JPEG with a COM segment right after SOI: metadata a camera or a person could add."""
    return jpeg[:2] + b"\xff\xfe" + (len(text) + 2).to_bytes(2, "big") + text + jpeg[2:]


def dimensions(jpeg: bytes) -> tuple[int, int]:
    decoder = av.CodecContext.create("mjpeg", "r")
    frame = next(iter(decoder.decode(av.Packet(jpeg))))
    return frame.width, frame.height


async def test_thumbnails_are_re_encoded_bounded_checked_and_rate_limited(tmp_path: Path) -> None:
    now = [time.time()]
    # The clock moves only when the test says (heartbeats long enough not to time out meanwhile).
    settings = hub_settings(tmp_path, media={"thumbnail_s": THUMBNAIL_S},
                            presence={"heartbeat_s": 5.0, "timeout_s": 30.0})
    running = await start_hub(settings, clock=lambda: now[0])
    try:
        client, _ = await station(running.ws, STATION, await running.token(STATION))
        watcher = await Client.open(f"{running.ws}/ws/watch", JSON)
        assert (await watcher.recv())["t"] == "snapshot"
        url = f"/api/v1/stations/{STATION}/thumbnail.jpg"

        big = with_comment(make_jpeg(1280, 720, seed=3), b"GPS -8.1689,113.7022 operator=secret")
        await client.send({"t": "thumb", "jpeg": big})
        await watcher.recv_until(lambda m: m["t"] == "thumbs" and STATION in m["at"])
        async with httpx.AsyncClient(base_url=running.http) as http:
            first = (await http.get(url)).content
        assert first.startswith(b"\xff\xd8") and b"secret" not in first and first != big
        width, height = dimensions(first)
        assert width <= MAX_WIDTH and height <= MAX_HEIGHT and abs(width / height - 16 / 9) < 0.05

        # Too soon: dropped with a clear reply, not announced, the last one kept.
        await client.send({"t": "thumb", "jpeg": make_jpeg(seed=4)})
        dropped = await client.recv_until(lambda m: m["t"] == "error")
        assert dropped["code"] == "thumb_dropped", dropped

        # A JPEG's magic bytes over garbage: refused, the last good thumbnail kept.
        now[0] += THUMBNAIL_S / 2
        await client.send({"t": "thumb", "jpeg": b"\xff\xd8\xff\xe0" + b"not really a picture" * 50})
        refused = await client.recv_until(lambda m: m["t"] == "error")
        assert refused["code"] == "bad_field" and "JPEG" in refused["message"], refused
        await client.send({"t": "ping"})
        await client.recv_until(lambda m: m["t"] == "pong")

        async with httpx.AsyncClient(base_url=running.http) as http:
            kept = await http.get(url)
            listing = await http.get("/api/v1/stations")
        assert kept.content == first
        # Every API answer, not only pages: no sniffing a JPEG or JSON into HTML, no scripts.
        for response in (kept, listing):
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "default-src 'none'" in response.headers["content-security-policy"]
        await watcher.send({"t": "ping"})
        assert (await watcher.recv_until(lambda m: m["t"] in ("pong", "thumbs")))["t"] == "pong"
        assert running.hub.metrics.errors.labels("thumb_dropped")._value.get() == 1
        await watcher.close()
        await client.close()
    finally:
        await stop_hub(running)
