"""WebRTC load for the relay benchmarks, run as worker processes (see ``bench.common.Worker``).

``publisher``: one WHIP publisher replaying the pre-encoded clip (``publish``), the same
WebRTC publisher joined to a Janus VideoRoom over Janus's HTTP API (``janus_publish``), or the
same clip as plain RTP to a UDP port (``rtp``: Janus's Streaming plugin). ``report`` tells, once
a measurement is over, what a WebRTC publisher sent and the RTCP the server sent back (receiver
reports, REMB, NACK, PLI), and with Janus what Janus says it received. ``viewers [--kind full|counting|light]``: many
viewers in one process, over WHEP (our hub, the MediaRelay baseline) or Janus's HTTP API:
``full`` (the default) browser-like aiortc receivers whose track is consumed (``FullViewer``),
``counting`` the same receivers counting frames at the jitter buffer (``CountingViewer``),
``light`` packets counted in the socket callback, never decrypted: no RTCP receiver reports,
no NACK, no PLI (``bench.loadgen.LightViewer``).

Janus runs in a lab (``bench.lab``): its HTTP API and RTP input are on the lab's loopback, so
the workers that feed and watch it (``janus_publish``, ``rtp`` into the Streaming plugin,
``janus``) run in the lab too, and their peers gather and announce the lab's address alone
(``host``, the one Janus gathers on as well).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription

from bench.common import http_client, raise_fd_limit, serve_worker
from bench.media_peers import (
    ClipTrack,
    CountingViewer,
    FullViewer,
    LivePatternTrack,
    load_clip,
    prefer_vp8,
    rtp_packets,
    send_rtp,
    whip_publish,
)
from hub.media.seams_peers import close_peer_connection, new_peer_connection
from jaga.ice_hosts import announced_host_addresses


async def wait_connected(pc: RTCPeerConnection, timeout: float = 20) -> bool:
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected" and time.monotonic() < deadline:
        if pc.connectionState in ("failed", "closed"):
            return False
        await asyncio.sleep(0.05)
    return pc.connectionState == "connected"


def rtcp_kind(packet: Any) -> str:
    from aiortc.rtp import (
        RTCP_PSFB_APP,
        RTCP_RTPFB_NACK,
        RtcpPsfbPacket,
        RtcpRrPacket,
        RtcpRtpfbPacket,
        RtcpSrPacket,
    )

    if isinstance(packet, RtcpRrPacket | RtcpSrPacket):
        return "rr"  # a receiver report, alone or inside a sender report
    if isinstance(packet, RtcpPsfbPacket):
        return "remb" if packet.fmt == RTCP_PSFB_APP else "pli"  # PLI or FIR: a keyframe request
    if isinstance(packet, RtcpRtpfbPacket) and packet.fmt == RTCP_RTPFB_NACK:
        return "nack"
    return "other"


def count_rtcp(sender: RTCRtpSender) -> dict[str, int]:
    """Counts, by kind, the RTCP the server sends back about ``sender``: the proof that the
    server really handles the stream (its receiver reports, REMB, NACK), not just its socket."""
    counts = {"rr": 0, "remb": 0, "nack": 0, "pli": 0, "other": 0}
    handle = sender._handle_rtcp_packet

    async def counting(packet: Any) -> None:
        counts[rtcp_kind(packet)] += 1
        await handle(packet)

    # RTCDtlsTransport awaits recipient._handle_rtcp_packet(packet): an instance lookup
    sender._handle_rtcp_packet = counting  # type: ignore[method-assign]
    return counts


class Publisher:
    def __init__(self) -> None:
        self.clip = load_clip()
        self.pc: Any = None
        self.track: ClipTrack | LivePatternTrack | None = None
        self.rtp_stop = asyncio.Event()
        self.rtp_task: asyncio.Task[int] | None = None
        self.rtcp: dict[str, int] = {}
        self.janus: Janus | None = None
        self.janus_ids: tuple[int, int] | None = None  # (session, handle)
        self.room: int | None = None

    async def publish(self, base: str, station: str, token: str | None = None, live: bool = False) -> dict[str, Any]:
        self.track = LivePatternTrack() if live else ClipTrack(self.clip)
        self.pc, location = await whip_publish(base, station, token, self.track)
        self.rtcp = count_rtcp(self.pc.getSenders()[0])
        return {"connected": await wait_connected(self.pc), "location": location}

    async def janus_publish(self, url: str, room: int, host: str, admin_url: str | None = None) -> dict[str, Any]:
        """The clip, as ``publish`` sends it, into a Janus VideoRoom (its only publisher),
        gathering on ``host`` alone (the lab's address)."""
        self.track = ClipTrack(self.clip)
        self.pc = new_peer_connection(())
        self.pc.addTransceiver(self.track, direction="sendonly")
        prefer_vp8(self.pc)
        self.rtcp = count_rtcp(self.pc.getSenders()[0])
        self.janus, self.room = Janus(url, admin_url), room
        self.janus_ids = await self.janus.publish(room, self.pc, host)
        return {"connected": await wait_connected(self.pc)}

    async def report(self) -> dict[str, Any]:
        """What the WebRTC publisher sent and the RTCP that came back; with Janus, also the
        room's participants and what Janus's core received on the publisher's handle."""
        stats = list((await self.pc.getSenders()[0].getStats()).values())
        sent = next(s for s in stats if s.type == "outbound-rtp")
        remote = next((s for s in stats if s.type == "remote-inbound-rtp"), None)
        reply: dict[str, Any] = {"packets_sent": sent.packetsSent, "rtcp": dict(self.rtcp),
                                 "lost_reported": remote.packetsLost if remote else None,
                                 "rtt_s": remote.roundTripTime if remote else None}
        if self.janus is not None and self.janus_ids is not None and self.room is not None:
            reply["participants"] = await self.janus.participants(*self.janus_ids, self.room)
            reply["janus_received"] = await self.janus.received(*self.janus_ids)
        return reply

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
    """Just enough of Janus's HTTP API to watch a Streaming mountpoint or publish into a
    VideoRoom (and of its Admin API to read what it received)."""

    def __init__(self, url: str, admin_url: str | None = None) -> None:
        self.url = url
        self.admin_url = admin_url
        self.http = http_client(timeout=30)
        self.n = 0

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self.n += 1
        body = {**body, "transaction": f"t{self.n}"}
        reply: dict[str, Any] = (await self.http.post(self.url + path, json=body)).json()
        if reply.get("janus") == "error":
            raise RuntimeError(f"janus: {reply}")
        return reply

    async def attach(self, plugin: str) -> tuple[int, int]:
        """A new session and a handle on ``plugin`` in it."""
        session = (await self.post("", {"janus": "create"}))["data"]["id"]
        handle = (await self.post(f"/{session}", {"janus": "attach", "plugin": plugin}))["data"]["id"]
        return session, handle

    async def next_jsep(self, session: int, kind: str, timeout: float = 20) -> str:
        """The SDP of the next event on ``session`` carrying a JSEP of ``kind`` ("offer" or
        "answer"): a plugin answers a message later, on the session's long poll."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = (await self.http.get(f"{self.url}/{session}?maxev=1")).json()
            if isinstance(event, list):
                event = event[0] if event else {}
            if error := event.get("plugindata", {}).get("data", {}).get("error"):
                raise RuntimeError(f"janus: {error}")
            if event.get("jsep", {}).get("type") == kind:
                return str(event["jsep"]["sdp"])
        raise RuntimeError(f"janus sent no {kind}")

    async def watch(self, mountpoint: int, viewer: Any, host: str) -> tuple[int, int]:
        """Watch ``mountpoint`` with ``viewer``, gathering on ``host`` alone (the lab's address)."""
        session, handle = await self.attach("janus.plugin.streaming")
        await self.post(f"/{session}/{handle}", {"janus": "message", "body": {"request": "watch", "id": mountpoint}})
        answer = await viewer.answer(await self.next_jsep(session, "offer"), (host,))
        await self.post(f"/{session}/{handle}", {"janus": "message", "body": {"request": "start"},
                                                 "jsep": {"type": "answer", "sdp": answer}})
        return session, handle

    async def publish(self, room: int, pc: RTCPeerConnection, host: str) -> tuple[int, int]:
        """Join ``room`` as a publisher with ``pc``'s offer and apply Janus's answer."""
        session, handle = await self.attach("janus.plugin.videoroom")
        # Gathered on the lab's address alone: libnice (Janus) has no loopback candidate to
        # pair with 127.0.0.1, and the host's own addresses are off limits.
        offer = await pc.createOffer()
        with announced_host_addresses((host,)):
            await pc.setLocalDescription(offer)
        body = {"request": "joinandconfigure", "ptype": "publisher", "room": room, "display": "bench"}
        await self.post(f"/{session}/{handle}", {"janus": "message", "body": body,
                                                 "jsep": {"type": "offer", "sdp": pc.localDescription.sdp}})
        answer = await self.next_jsep(session, "answer")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        return session, handle

    async def participants(self, session: int, handle: int, room: int) -> list[dict[str, Any]]:
        reply = await self.post(f"/{session}/{handle}", {"janus": "message",
                                                         "body": {"request": "listparticipants", "room": room}})
        return list(reply["plugindata"]["data"]["participants"])

    async def received(self, session: int, handle: int) -> dict[str, Any]:
        """Per mid, the packets Janus's core received on the handle's PeerConnection, the NACKs
        it sent and its RTCP view (loss, jitter): the Admin API's ``handle_info``."""
        assert self.admin_url is not None
        body = {"janus": "handle_info", "transaction": "info"}
        info = (await self.http.post(f"{self.admin_url}/{session}/{handle}", json=body)).json()
        media = info.get("info", {}).get("webrtc", {}).get("media", {})
        return {mid: {"in": m.get("stats", {}).get("in"), "rtcp": m.get("rtcp", {}).get("main")}
                for mid, m in media.items()}


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

    async def janus_watch(self, url: str, mountpoint: int, count: int, host: str) -> dict[str, Any]:
        if self.janus is None:
            self.janus = Janus(url)

        async def one() -> bool:
            viewer = new_viewer(self.kind, janus=True)
            self.viewers.append(viewer)
            assert self.janus is not None
            await self.janus.watch(mountpoint, viewer, host)
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
        await serve_worker({"publish": p.publish, "janus_publish": p.janus_publish, "rtp": p.rtp,
                            "report": p.report, "stats": p.stats, "close": p.close})
        await p.close()
    else:
        v = Viewers(sys.argv[sys.argv.index("--kind") + 1] if "--kind" in sys.argv else "full")
        await serve_worker({"whep": v.whep, "janus": v.janus_watch, "stats": v.stats, "close_all": v.close_all})
        await v.close_all()


if __name__ == "__main__":
    asyncio.run(main())
