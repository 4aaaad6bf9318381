"""WebRTC load for the relay benchmarks, run as worker processes (see ``bench.common.Worker``).

``publisher``: one WHIP publisher replaying the pre-encoded clip, or the same clip as plain
RTP to a UDP port (Janus's Streaming plugin). ``viewers [--kind full|counting|light]``: many
viewers in one process, over WHEP (our hub, the MediaRelay baseline) or Janus's HTTP API:
``full`` (the default) browser-like aiortc receivers whose track is consumed (``FullViewer``),
``counting`` the same receivers counting frames at the jitter buffer (``CountingViewer``),
``light`` packets counted in the socket callback, never decrypted: no RTCP receiver reports,
no NACK, no PLI (``bench.loadgen.LightViewer``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from aiortc import RTCPeerConnection

from bench.common import raise_fd_limit, serve_worker
from bench.media_peers import (
    ClipTrack,
    CountingViewer,
    FullViewer,
    LivePatternTrack,
    load_clip,
    rtp_packets,
    send_rtp,
    whip_publish,
)
from hub.media.seams_peers import close_peer_connection


async def wait_connected(pc: RTCPeerConnection, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected" and time.monotonic() < deadline:
        if pc.connectionState in ("failed", "closed"):
            return False
        await asyncio.sleep(0.05)
    return pc.connectionState == "connected"


class Publisher:
    def __init__(self) -> None:
        self.clip = load_clip()
        self.pc: Any = None
        self.track: ClipTrack | LivePatternTrack | None = None
        self.rtp_stop = asyncio.Event()
        self.rtp_task: asyncio.Task[int] | None = None

    async def publish(self, base: str, station: str, token: str | None = None, live: bool = False) -> dict[str, Any]:
        self.track = LivePatternTrack() if live else ClipTrack(self.clip)
        self.pc, location = await whip_publish(base, station, token, self.track)
        return {"connected": await wait_connected(self.pc), "location": location}

    async def rtp(self, port: int) -> dict[str, Any]:
        self.rtp_task = asyncio.ensure_future(send_rtp(rtp_packets(self.clip), port, self.rtp_stop))
        return {}

    async def stats(self) -> dict[str, Any]:
        return {"frames": self.track.count if self.track else 0}

    async def close(self) -> dict[str, Any]:
        self.rtp_stop.set()
        if self.pc is not None:
            await close_peer_connection(self.pc)
        if self.rtp_task is not None:
            await self.rtp_task
        return {}


class Janus:
    """Just enough of Janus's HTTP API to watch a Streaming mountpoint."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.http = httpx.AsyncClient(timeout=30)
        self.n = 0

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        body = {**body, "transaction": f"t{self.n}"}
        reply: dict[str, Any] = (await self.http.post(self.url + path, json=body)).json()
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus: {reply}")
        return reply

    async def watch(self, mountpoint: int, viewer: Any) -> tuple[int, int]:
        session = (await self.post("", {"janus": "create"}))["data"]["id"]
        handle = (await self.post(f"/{session}", {"janus": "attach", "plugin": "janus.plugin.streaming"}))["data"]["id"]
        await self.post(f"/{session}/{handle}", {"janus": "message", "body": {"request": "watch", "id": mountpoint}})
        offer = None
        deadline = time.monotonic() + 20
        while offer is None and time.monotonic() < deadline:
            event = (await self.http.get(f"{self.url}/{session}?maxev=1")).json()
            if isinstance(event, list):
                event = event[0] if event else {}
            if event.get("jsep", {}).get("type") == "offer":
                offer = event["jsep"]["sdp"]
        if offer is None:
            raise RuntimeError("janus sent no offer")
        answer = await viewer.answer(offer)
        await self.post(f"/{session}/{handle}", {"janus": "message", "body": {"request": "start"},
                                                 "jsep": {"type": "answer", "sdp": answer}})
        return session, handle


class JanusLightViewer:
    """``bench.loadgen.LightViewer`` answering Janus's offer instead of making a WHEP one."""

    def __init__(self) -> None:
        from bench.loadgen import LightViewer

        self.light = LightViewer()
        self.pc = self.light.pc

    @property
    def frames(self) -> int:
        return self.light.frames

    async def answer(self, offer_sdp: str, addresses: tuple[str, ...] = ()) -> str:
        from aiortc import RTCSessionDescription

        from jaga.ice_hosts import announced_host_addresses

        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        answer = await self.pc.createAnswer()
        with announced_host_addresses(addresses):
            await self.pc.setLocalDescription(answer)
        video = next(t for t in self.pc.getTransceivers() if t.kind == "video")
        self.light._count_rtp(video.receiver.transport.transport)
        return str(self.pc.localDescription.sdp)


def new_viewer(kind: str, janus: bool = False) -> Any:
    if kind == "full":
        return FullViewer()
    if kind == "counting":
        return CountingViewer()
    if kind == "light":
        if janus:
            return JanusLightViewer()
        from bench.loadgen import LightViewer

        return LightViewer()
    raise ValueError(f"unknown viewer kind {kind!r}")


async def viewer_lost(viewer: Any) -> int:
    return await viewer.lost() if hasattr(viewer, "lost") else 0  # light viewers decrypt nothing


async def close_viewer(viewer: Any) -> None:
    if hasattr(viewer, "close"):
        await viewer.close()
    else:
        await close_peer_connection(viewer.pc)


class Viewers:
    def __init__(self, kind: str = "full") -> None:
        self.kind = kind
        self.viewers: list[Any] = []
        self.janus: Janus | None = None

    async def whep(self, base: str, station: str, count: int) -> dict[str, Any]:
        async def one() -> bool:
            viewer = new_viewer(self.kind)
            self.viewers.append(viewer)
            await viewer.whep(base, station)
            return await wait_connected(viewer.pc)

        results = await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)
        return {"connected": sum(r is True for r in results),
                "errors": [repr(r)[:200] for r in results if isinstance(r, BaseException)][:3]}

    async def janus_watch(self, url: str, mountpoint: int, count: int) -> dict[str, Any]:
        if self.janus is None:
            self.janus = Janus(url)

        async def one() -> bool:
            viewer = new_viewer(self.kind, janus=True)
            self.viewers.append(viewer)
            assert self.janus is not None
            await self.janus.watch(mountpoint, viewer)
            return await wait_connected(viewer.pc)

        results: list[bool | Exception] = []
        for _ in range(count):  # one at a time: Janus answers each on its own long poll
            try:
                results.append(await one())
            except Exception as exc:
                results.append(exc)
        return {"connected": sum(r is True for r in results),
                "errors": [repr(r)[:200] for r in results if isinstance(r, BaseException)][:3]}

    async def stats(self) -> dict[str, Any]:
        lost = [await viewer_lost(v) for v in self.viewers]
        return {"frames": [v.frames for v in self.viewers], "lost": lost,
                "states": [v.pc.connectionState for v in self.viewers]}

    async def close_all(self) -> dict[str, Any]:
        await asyncio.gather(*(close_viewer(v) for v in self.viewers), return_exceptions=True)
        self.viewers.clear()
        return {}


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    raise_fd_limit()
    if sys.argv[1] == "publisher":
        p = Publisher()
        await serve_worker({"publish": p.publish, "rtp": p.rtp, "stats": p.stats, "close": p.close})
        await p.close()
    else:
        v = Viewers(sys.argv[sys.argv.index("--kind") + 1] if "--kind" in sys.argv else "full")
        await serve_worker({"whep": v.whep, "janus": v.janus_watch, "stats": v.stats, "close_all": v.close_all})
        await v.close_all()


if __name__ == "__main__":
    asyncio.run(main())
