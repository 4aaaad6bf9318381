"""A WHEP viewer for the field scenarios, as its own process: it decodes and reports every frame.

    python -m bench.field.viewer --base URL --station ID [--address A …] [--rejoin]

It offers to receive video and audio (what a watch page asks for), decodes the video with
aiortc (so "a frame" is a picture a person would see) and writes one JSON line every 0.5 s:

    {"t": now, "frames": [times of the frames decoded since the last line], "audio": n,
     "state": "connected", "joins": 1, "error": ""}

Times are ``time.monotonic()``, the clock the scenario runner reads too (the same in every
network namespace). Until the station is live the WHEP POST answers 404 and the viewer tries
again every second. With ``--rejoin`` a session that failed or was closed by the hub is
joined again (as a watch page would), counted in ``joins``; without, the viewer stays on its
first session and shows whether media resumes there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import httpx

from bench.common import http_client
from hub.media.seams_peers import (
    MediaStreamError,
    RTCSessionDescription,
    close_peer_connection,
    new_peer_connection,
)
from jaga.ice_hosts import announced_host_addresses

REPORT_S = 0.5


class FieldViewer:
    def __init__(self, base: str, station: str, addresses: tuple[str, ...], rejoin: bool) -> None:
        self.base, self.station, self.addresses, self.rejoin = base, station, addresses, rejoin
        self.frames: list[float] = []
        self.audio = 0
        self.joins = 0
        self.state = "new"
        self.error = ""

    async def run(self) -> None:
        reporter = asyncio.create_task(self._report())
        try:
            while True:
                pc = await self._join()
                changed = asyncio.Event()
                pc.on("connectionstatechange", changed.set)
                while pc.connectionState not in ("failed", "closed"):
                    self.state = pc.connectionState
                    changed.clear()
                    await changed.wait()
                self.state = pc.connectionState
                if not self.rejoin:
                    await asyncio.Event().wait()  # stay, reporting, until the runner stops us
                await close_peer_connection(pc)
                await asyncio.sleep(1.0)  # a watch page's pause before joining again
        finally:
            reporter.cancel()

    async def _join(self) -> Any:
        async with http_client(timeout=15) as http:
            while True:
                pc = new_peer_connection(())
                pc.addTransceiver("video", direction="recvonly")
                pc.addTransceiver("audio", direction="recvonly")
                pc.on("track", lambda track: asyncio.ensure_future(self._read(track)))
                try:
                    offer = await pc.createOffer()
                    with announced_host_addresses(self.addresses):
                        await pc.setLocalDescription(offer)
                    response = await http.post(f"{self.base}/whep/{self.station}", content=pc.localDescription.sdp,
                                                headers={"Content-Type": "application/sdp"})
                    if response.status_code == 201:
                        await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
                        self.joins += 1
                        self.error = ""
                        return pc
                    self.error = f"WHEP {response.status_code}"
                except (httpx.HTTPError, OSError) as exc:
                    self.error = f"{type(exc).__name__}: {exc}"
                await close_peer_connection(pc)
                await asyncio.sleep(1.0)  # not live yet, or the hub is unreachable: try again

    async def _read(self, track: Any) -> None:
        try:
            while True:
                await track.recv()
                if track.kind == "video":
                    self.frames.append(time.monotonic())
                else:
                    self.audio += 1
        except MediaStreamError:
            pass  # the track ended; the session's state says whether to join again

    async def _report(self) -> None:
        sent = 0
        while True:
            await asyncio.sleep(REPORT_S)  # the report's own period
            new, sent = self.frames[sent:], len(self.frames)
            line = {"t": time.monotonic(), "frames": [round(t, 4) for t in new], "audio": self.audio,
                    "state": self.state, "joins": self.joins, "error": self.error}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.field.viewer")
    parser.add_argument("--base", required=True, help="the hub's URL")
    parser.add_argument("--station", required=True)
    parser.add_argument("--address", action="append", default=[],
                        help="ICE host address to announce (repeatable; none: aioice's own discovery)")
    parser.add_argument("--rejoin", action="store_true", help="join again when the session fails or ends")
    args = parser.parse_args(argv)
    try:
        asyncio.run(FieldViewer(args.base, args.station, tuple(args.address), args.rejoin).run())
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
