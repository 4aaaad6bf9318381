"""Client worker processes for the ingest and scale benchmarks (see ``bench.common.Worker``).

``publishers``: many WHIP publishers in one process, each replaying the same pre-encoded clip
(:class:`bench.media_peers.ClipTrack`) for its own station with its own token. ``stats`` gives
the frames each track handed to aiortc, and from ``getStats()`` the RTP packets sent and the
packets the hub reported lost in its RTCP receiver reports (``remote-inbound-rtp``).

``viewers``: many *light* WHEP viewers in one process. ICE and DTLS run as usual (aiortc), but
SRTP packets are counted from their clear-text RTP header (the marker bit ends a video frame)
and dropped before decryption, so a viewer costs the client a few µs per packet and thousands
of them fit on the machine next to the hubs. The hub still protects and sends every packet as
for a real viewer; what is not checked here is that the payload decrypts.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiortc import RTCSessionDescription
from aiortc.rtp import is_rtcp

from bench.common import raise_fd_limit, serve_worker
from bench.media_peers import (
    ClipTrack,
    load_clip,
    local_offer,
    prefer_vp8,
    whip_publish,
)
from bench.rtcload import wait_connected
from hub.media.aiortc_seams import close_peer_connection, new_peer_connection


async def _bounded(coros: list[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


class Publishers:
    def __init__(self) -> None:
        self.clip = load_clip()
        self.peers: list[tuple[Any, ClipTrack]] = []

    async def publish(self, base: str, stations: dict[str, str], concurrency: int = 4) -> dict[str, Any]:
        async def one(station: str, token: str) -> bool:
            track = ClipTrack(self.clip)
            pc, _ = await whip_publish(base, station, token, track)
            self.peers.append((pc, track))
            return await wait_connected(pc)

        results = await _bounded([one(s, t) for s, t in stations.items()], concurrency)
        return {"connected": sum(r is True for r in results),
                "errors": [repr(r)[:200] for r in results if isinstance(r, BaseException)][:3]}

    async def stats(self, rtcp: bool = True) -> dict[str, Any]:
        frames = sum(track.count for _, track in self.peers)
        sent = lost = 0
        if rtcp:
            for pc, _ in self.peers:
                try:
                    report = await pc.getStats()
                except Exception:
                    continue
                for s in report.values():
                    if s.type == "outbound-rtp":
                        sent += s.packetsSent or 0
                    elif s.type == "remote-inbound-rtp":
                        lost += s.packetsLost or 0
        states = [pc.connectionState for pc, _ in self.peers]
        return {"frames": frames, "packets_sent": sent, "packets_lost": lost, "at": time.monotonic(),
                "publishers": len(self.peers), "connected": states.count("connected")}

    async def close_all(self) -> dict[str, Any]:
        await asyncio.gather(*(close_peer_connection(pc) for pc, _ in self.peers), return_exceptions=True)
        self.peers.clear()
        return {}


class LightViewer:
    """A WHEP viewer that counts RTP packets and frames (marker bits) without decrypting them."""

    def __init__(self) -> None:
        self.pc = new_peer_connection(())
        self.frames = 0
        self.packets = 0

    def _count_rtp(self, ice: Any) -> None:
        recv = ice._connection.recv

        async def filtered() -> bytes:
            while True:
                data = await recv()
                if 127 < data[0] < 192 and len(data) > 12 and not is_rtcp(data):
                    self.packets += 1
                    if data[1] & 0x80:
                        self.frames += 1
                    continue
                return data  # STUN is handled below us; DTLS and SRTCP go on to aiortc

        ice._recv = filtered

    async def whep(self, base: str, station: str) -> None:
        import httpx

        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        prefer_vp8(self.pc)
        offer = await local_offer(self.pc)
        self._count_rtp(transceiver.receiver.transport.transport)
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(f"{base}/whep/{station}", content=offer,
                                       headers={"Content-Type": "application/sdp"}, follow_redirects=True)
        if response.status_code != 201:
            raise RuntimeError(f"WHEP {response.status_code}: {response.text[:200]}")
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))


class Viewers:
    def __init__(self) -> None:
        self.viewers: list[LightViewer] = []

    async def whep(self, base: str, station: str, count: int, concurrency: int = 8) -> dict[str, Any]:
        async def one() -> bool:
            viewer = LightViewer()
            self.viewers.append(viewer)
            await viewer.whep(base, station)
            return await wait_connected(viewer.pc)

        results = await _bounded([one() for _ in range(count)], concurrency)
        return {"connected": sum(r is True for r in results),
                "errors": [repr(r)[:200] for r in results if isinstance(r, BaseException)][:3]}

    async def stats(self) -> dict[str, Any]:
        return {"frames": [v.frames for v in self.viewers], "packets": [v.packets for v in self.viewers],
                "at": time.monotonic()}

    async def close_all(self) -> dict[str, Any]:
        await asyncio.gather(*(close_peer_connection(v.pc) for v in self.viewers), return_exceptions=True)
        self.viewers.clear()
        return {}


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    raise_fd_limit()
    if sys.argv[1] == "publishers":
        p = Publishers()
        await serve_worker({"publish": p.publish, "stats": p.stats, "close_all": p.close_all})
        await p.close_all()
    else:
        v = Viewers()
        await serve_worker({"whep": v.whep, "stats": v.stats, "close_all": v.close_all})
        await v.close_all()


if __name__ == "__main__":
    asyncio.run(main())
