"""Client worker processes for the ingest and scale benchmarks (see ``bench.common.Worker``).

``publishers [--publisher light|aiortc]``: many WHIP publishers in one process, each replaying
the same pre-encoded clip for its own station with its own token. ``light`` (the default,
:mod:`bench.light_publisher`): aiortc negotiates and runs ICE, DTLS and RTCP, one timer per
process sends the RTP; ``aiortc``: a full aiortc sender per publisher
(:class:`bench.media_peers.ClipTrack`), ≈ 0.4 % of a core each. ``stats`` gives the frames
sent, the RTP packets sent and the packets the hub reported lost in its RTCP receiver reports
(``remote-inbound-rtp`` of each aiortc sender, which still receives them in both modes).
``publish(..., audio=True)`` (light publishers only) adds a microphone: Opus packets of
``audio_ms`` beside the video (60 as the station agent sends them, 20 as browsers do; one
length per process); audio packets count as frames, as the hub counts them.

``viewers``: many *light* WHEP viewers in one process. ICE and DTLS run as usual (aiortc), but
SRTP packets are counted from their clear-text RTP header (the marker bit ends a video frame)
in the socket's datagram callback and dropped there, before aioice's queue and decryption, so
a viewer costs the client a few µs per packet and thousands of them fit on the machine next
to the hubs. The hub still protects and sends every packet as
for a real viewer; what is not checked here is that the payload decrypts. With ``audio`` a
viewer asks for the station's sound too (as the portal's player does); its frames are the
video's only (the payload type the hub answered for video). With ``retry_s``
(the Jember day), a viewer whose connection fails or is closed by the hub joins again after
that long, as the portal's player does, and counts it (``reconnects``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.rtp import is_rtcp

from bench.common import http_client, raise_fd_limit, serve_worker
from bench.light_publisher import ClipPackets, OpusClip, Ticker, publish_light
from bench.media_peers import (
    ClipTrack,
    load_clip,
    local_offer,
    prefer_vp8,
    whip_publish,
)
from bench.rtcload import wait_connected
from hub.media.seams_peers import close_peer_connection, negotiated_media, new_peer_connection

FULL_RETRY_S = 30.0  # watch.js FULL_RETRY_MS: refused (caps, load) and no HLS to fall back to
BUSY_JITTER_S = 5.0  # watch.js BUSY_JITTER_MS: refused `busy` (a crowd joining), Retry-After plus up to this


async def _bounded(coros: list[Any], limit: int) -> list[Any]:
    gate = asyncio.Semaphore(limit)

    async def one(coro: Any) -> Any:
        async with gate:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros), return_exceptions=True)


class Publishers:
    """The publishers of one client process: ``light`` (bench.light_publisher) or ``aiortc``."""

    def __init__(self, mode: str = "light") -> None:
        if mode not in ("light", "aiortc"):
            raise ValueError(f"unknown publisher mode {mode!r}")
        self.mode = mode
        self.clip = load_clip()
        self.ticker = Ticker(ClipPackets(self.clip)) if mode == "light" else None
        self.peers: list[tuple[Any, Any]] = []  # (pc, ClipTrack or LightPublisher)

    async def _one(self, base: str, station: str, token: str, audio: bool) -> bool:
        if self.ticker is not None:
            light = await publish_light(base, station, token, self.ticker, audio=audio)
            self.peers.append((light.pc, light))
            return light.wire is not None
        track = ClipTrack(self.clip)
        pc, _ = await whip_publish(base, station, token, track)
        self.peers.append((pc, track))
        return await wait_connected(pc)

    async def publish(self, base: str, stations: dict[str, str], concurrency: int = 4,
                      audio: bool = False, audio_ms: int = 20) -> dict[str, Any]:
        if audio and self.ticker is None:
            raise ValueError("audio is sent by light publishers only")
        if audio and self.ticker is not None:
            if self.ticker.audio is None:
                self.ticker.audio = OpusClip(packet_ms=audio_ms)
            elif self.ticker.audio.packet_s != audio_ms / 1000:
                raise ValueError("this process's publishers already send Opus packets of another length")
        results = await _bounded([self._one(base, s, t, audio) for s, t in stations.items()], concurrency)
        return {"connected": sum(r is True for r in results),
                "errors": [repr(r)[:200] for r in results if isinstance(r, BaseException)][:3]}

    async def stats(self, rtcp: bool = True) -> dict[str, Any]:
        frames = sum(source.count if isinstance(source, ClipTrack) else source.frames for _, source in self.peers)
        sent = lost = 0
        if rtcp:
            for pc, source in self.peers:
                try:
                    report = await pc.getStats()
                except Exception:
                    continue
                for s in report.values():
                    if s.type == "outbound-rtp" and isinstance(source, ClipTrack):
                        sent += s.packetsSent or 0
                    elif s.type == "remote-inbound-rtp":
                        lost += s.packetsLost or 0
                if not isinstance(source, ClipTrack):
                    sent += source.packets  # aiortc's sender counts none: it sends no RTP here
        states = [pc.connectionState for pc, _ in self.peers]
        failures = sum(getattr(source, "send_failures", 0) for _, source in self.peers)
        rtx = sum(getattr(source, "rtx_sent", 0) for _, source in self.peers)
        return {"frames": frames, "packets_sent": sent, "packets_lost": lost, "at": time.monotonic(),
                "publishers": len(self.peers), "connected": states.count("connected"), "send_failures": failures,
                "rtx_sent": rtx}

    async def close_all(self) -> dict[str, Any]:
        if self.ticker is not None:
            self.ticker.clear()
        await asyncio.gather(*(close_peer_connection(pc) for pc, _ in self.peers), return_exceptions=True)
        self.peers.clear()
        return {}


def _error_code(body: str) -> str:
    """The hub's error code from its ``{"error": {"code", "message"}}`` body ("" if none)."""
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return ""


class WhepRefused(RuntimeError):
    """A WHEP offer answered 429 or 503, with the hub's ``Retry-After``."""

    def __init__(self, status: int, body: str, retry_after_s: float) -> None:
        super().__init__(f"WHEP {status}: {body[:200]}")
        self.retry_after_s = retry_after_s
        self.busy = _error_code(body) == "busy"

    @property
    def wait_s(self) -> float:
        """How long the portal's player waits before it offers again (for a VP8 station, which
        has no HLS): after a ``busy`` refusal the ``Retry-After`` and a random part of
        ``BUSY_JITTER_S``; otherwise ``FULL_RETRY_S`` or the ``Retry-After``, whichever is longer."""
        if self.busy:
            return self.retry_after_s + random.uniform(0.0, BUSY_JITTER_S)
        return max(FULL_RETRY_S, self.retry_after_s)


class LightViewer:
    """A WHEP viewer that counts RTP packets and frames (marker bits) without decrypting them."""

    def __init__(self, audio: bool = False) -> None:
        self.pc = new_peer_connection(())
        self.audio = audio
        self.video_payload_type = -1  # from the answer: only its marker bits end frames
        self.frames = 0  # video frames, over every connection this viewer had: one person watching
        self.packets = 0  # every RTP packet, audio's too
        self.reconnects = 0
        self.refusals = 0  # 429/503 answers to its offers
        self.ended = asyncio.Event()  # this connection failed or was closed
        self.location = ""

    def _count_rtp(self, ice: Any) -> None:
        """Count RTP synchronously where the socket hands the datagram to aioice, instead of
        after aioice's queue and aiortc's DTLS receive task; everything else goes on as
        before. Call after ``setLocalDescription`` (the ICE sockets exist then)."""
        connection = ice._connection
        queue_datagram = connection.data_received

        def data_received(data: bytes, component: int) -> None:
            if 127 < data[0] < 192 and len(data) > 12 and not is_rtcp(data):
                self.packets += 1
                if data[1] & 0x80 and data[1] & 0x7F == self.video_payload_type:
                    self.frames += 1
                return
            queue_datagram(data, component)  # STUN is handled below us; DTLS and SRTCP go on to aiortc

        connection.data_received = data_received
        for protocol in connection._protocols:
            _skip_stun_parsing_for_rtp(protocol)

    async def whep(self, base: str, station: str) -> None:
        if self.pc.connectionState != "new":  # watching again: a new peer connection
            await close_peer_connection(self.pc)
            self.pc = new_peer_connection(())
        self.ended = asyncio.Event()
        pc, ended = self.pc, self.ended

        @pc.on("connectionstatechange")
        def note_end() -> None:
            if pc.connectionState in ("failed", "closed"):
                ended.set()

        transceiver = self.pc.addTransceiver("video", direction="recvonly")
        if self.audio:
            self.pc.addTransceiver("audio", direction="recvonly")
        prefer_vp8(self.pc)
        offer = await local_offer(self.pc)
        self._count_rtp(transceiver.receiver.transport.transport)
        async with http_client(timeout=30) as http:
            response = await http.post(f"{base}/whep/{station}", content=offer,
                                       headers={"Content-Type": "application/sdp"}, follow_redirects=True)
        if response.status_code in (429, 503):  # the hub's caps, or its load: wait as told
            self.refusals += 1
            raise WhepRefused(response.status_code, response.text,
                              float(response.headers.get("retry-after") or 0))
        if response.status_code != 201:
            raise RuntimeError(f"WHEP {response.status_code}: {response.text[:200]}")
        self.location = str(response.url.join(response.headers["location"]))  # the session's resource
        self.video_payload_type = negotiated_media(response.text)["video"].payload_type
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))


def _skip_stun_parsing_for_rtp(protocol: Any) -> None:
    """aioice parses every datagram as STUN first (an exception per RTP packet); bytes
    128-191 start RTP/RTCP, never STUN (RFC 7983), so those skip straight to the connection
    (as the hub's ``divert_srtp`` does)."""
    stun_or_other = protocol.datagram_received
    connection = protocol.receiver

    def datagram_received(data: bytes, addr: Any) -> None:
        if data and 127 < data[0] < 192:
            connection.data_received(data, protocol.local_candidate.component)
        elif data:
            stun_or_other(data, addr)

    protocol.datagram_received = datagram_received


async def _watch_again(viewer: LightViewer, base: str, station: str, retry_s: float,
                       refused_s: float = 0.0) -> None:
    """What the portal's player does (``watch.js``, ``retryLater``) for a station without HLS:
    once the connection has failed or was closed by the hub, wait ``retry_s`` and join again,
    until it holds; after a 429 or 503 (caps, load), as long as ``WhepRefused.wait_s`` says.
    ``refused_s``: the first wait (the first join's refusal)."""
    wait_s = refused_s or retry_s
    while True:
        await viewer.ended.wait()
        while True:
            await asyncio.sleep(wait_s)
            wait_s = retry_s
            try:
                await viewer.whep(base, station)
                if await wait_connected(viewer.pc):
                    viewer.reconnects += 1
                    break
            except WhepRefused as refused:
                wait_s = refused.wait_s
            except Exception:  # failed or timed out, whatever raised it: as the page, try again later
                pass
            await close_peer_connection(viewer.pc)


class Viewers:
    def __init__(self) -> None:
        self.viewers: list[LightViewer] = []
        self._retrying: set[asyncio.Task[None]] = set()

    async def whep(self, base: str, station: str, count: int, concurrency: int = 24,
                   retry_s: float | None = None, audio: bool = False) -> dict[str, Any]:
        """``count`` viewers of ``station`` (with ``audio``: its sound too); with ``retry_s``,
        each joins again that long after its connection fails or is closed, as a browser on
        the portal does."""
        async def one() -> bool:
            viewer = LightViewer(audio)
            self.viewers.append(viewer)
            connected = False
            refused_s = 0.0
            try:
                await viewer.whep(base, station)
                connected = await wait_connected(viewer.pc)
                return connected
            except WhepRefused as refused:
                refused_s = refused.wait_s
                raise
            finally:
                if retry_s is not None:
                    if not connected:  # the first join failed: the page tries again too
                        await close_peer_connection(viewer.pc)
                        viewer.ended.set()
                    self._retrying.add(asyncio.create_task(
                        _watch_again(viewer, base, station, retry_s, refused_s)))

        results = await _bounded([one() for _ in range(count)], concurrency)
        return {"connected": sum(r is True for r in results),
                "errors": [repr(r)[:200] for r in results if isinstance(r, BaseException)][:3]}

    async def stats(self) -> dict[str, Any]:
        return {"frames": [v.frames for v in self.viewers], "packets": [v.packets for v in self.viewers],
                "reconnects": sum(v.reconnects for v in self.viewers),
                "refusals": sum(v.refusals for v in self.viewers), "at": time.monotonic()}

    async def close_all(self) -> dict[str, Any]:
        for task in self._retrying:
            task.cancel()
        await asyncio.gather(*self._retrying, return_exceptions=True)
        self._retrying.clear()
        await asyncio.gather(*(close_peer_connection(v.pc) for v in self.viewers), return_exceptions=True)
        self.viewers.clear()
        return {}


async def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    raise_fd_limit()
    if sys.argv[1] == "publishers":
        mode = sys.argv[sys.argv.index("--publisher") + 1] if "--publisher" in sys.argv else "light"
        p = Publishers(mode)
        await serve_worker({"publish": p.publish, "stats": p.stats, "close_all": p.close_all})
        await p.close_all()
    else:
        v = Viewers()
        await serve_worker({"whep": v.whep, "stats": v.stats, "close_all": v.close_all})
        await v.close_all()


if __name__ == "__main__":
    asyncio.run(main())
