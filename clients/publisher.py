"""One WHIP publishing session (RFC 9725) with aiortc, and one WHEP viewing session.

``publish`` builds a send-only peer connection (video in the configured codec first, Opus
audio), gathers every candidate on the configured host addresses, POSTs the offer, applies
the answer under the session's :class:`~clients.rtc.RateControl` (the encoders it creates
take their rate from it) and waits until the connection is up. The returned
:class:`MediaSession` says when it ends (``ended`` event: ICE/DTLS failed or closed) and
``close`` ends it on our side (DELETE, then close the peer connection). Callers own retry.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiortc import RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from clients import rtc, whip
from clients.config import StationConfig

log = logging.getLogger("jaga.station.media")


class MediaSession:
    def __init__(self, pc: RTCPeerConnection, location: str, token: str | None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.pc = pc
        self.location = location
        self.token = token
        self.tls = tls  # how the hub's https is verified (the station's ca_file), for the DELETE
        self.ended = asyncio.Event()
        self.connected = asyncio.Event()
        self.started_at = time.monotonic()
        self._bytes = 0
        self._bytes_at = time.monotonic()
        self.bitrate_bps = 0.0

        @pc.on("connectionstatechange")
        def on_state() -> None:
            state = pc.connectionState
            if state == "connected":
                self.connected.set()
            elif state in ("failed", "closed"):
                self.ended.set()

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    async def measure(self) -> float:
        """Outgoing bits per second since the last call (RTP payload + headers)."""
        try:
            report = await self.pc.getStats()
        except Exception:
            return self.bitrate_bps
        sent = sum(getattr(s, "bytesSent", 0) or 0 for s in report.values() if s.type == "outbound-rtp")
        now = time.monotonic()
        if now > self._bytes_at and sent >= self._bytes:
            self.bitrate_bps = 8 * (sent - self._bytes) / (now - self._bytes_at)
        self._bytes, self._bytes_at = sent, now
        return self.bitrate_bps

    async def close(self, delete: bool = True) -> None:
        if delete and self.location:
            try:
                await whip.delete_session(self.location, self.token, context=self.tls)
            except whip.MediaHttpError as exc:
                log.debug("DELETE %s failed: %s", self.location, exc)
        await self.pc.close()
        self.ended.set()


def rate_control(config: StationConfig) -> rtc.RateControl:
    """A session's encoder rate: video up to ``video.bitrate_kbps`` at ``video.fps``, Opus at
    ``audio.bitrate_kbps`` in packets of ``audio.packet_ms``."""
    return rtc.RateControl(config.video.bitrate_kbps * 1000, config.audio.bitrate_kbps * 1000, config.video.fps,
                           config.audio.packet_ms)


async def _negotiate(pc: RTCPeerConnection, config: StationConfig, url: str, token: str | None,
                     rate: rtc.RateControl | None = None) -> whip.Answer:
    offer = await pc.createOffer()
    with rtc.host_addresses(config.network.host_addresses):
        await pc.setLocalDescription(offer)
    rtc.patient_consent(pc)  # before setRemoteDescription, where ICE starts aioice's own checks
    answer = await whip.post_offer(url, pc.localDescription.sdp, token, timeout=config.network.connect_timeout_s,
                                   context=config.tls_context())
    with rtc.rate_control(rate or rate_control(config)):
        await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    return answer


async def _wait_connected(session: MediaSession, timeout_s: float) -> None:
    waiters = [asyncio.ensure_future(session.connected.wait()), asyncio.ensure_future(session.ended.wait())]
    try:
        done, _ = await asyncio.wait(waiters, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    if not session.connected.is_set():
        raise ConnectionError(f"media connection not up within {timeout_s:.0f} s (state {session.state}); "
                              "UDP to the hub may be blocked")


async def _open_session(pc: RTCPeerConnection, config: StationConfig, url: str, token: str | None,
                        add_transceivers: Callable[[], None], rate: rtc.RateControl | None = None) -> MediaSession:
    """Add the transceivers, negotiate over WHIP/WHEP at ``url`` and wait for the media to
    connect. On any failure the session (or, before there is one, ``pc``) is closed and the
    error raised."""
    session: MediaSession | None = None
    try:
        add_transceivers()
        answer = await _negotiate(pc, config, url, token, rate)
        session = MediaSession(pc, answer.location, token, config.tls_context())
        if pc.connectionState == "connected":
            session.connected.set()
        await _wait_connected(session, config.network.media_connect_timeout_s)
        return session
    except BaseException:
        if session is not None:
            await session.close()
        else:
            await pc.close()
        raise


async def publish(config: StationConfig, token: str, video: MediaStreamTrack,
                  audio: MediaStreamTrack | None, rate: rtc.RateControl | None = None,
                  ice_servers: Sequence[str | RTCIceServer] | None = None) -> MediaSession:
    """Publish ``video`` (+ ``audio``) to ``POST {hub}/whip/{station}``; raises on failure.
    ``rate``: the encoders' control for this session (default: :func:`rate_control`);
    ``ice_servers``: the session's (clients/ice.py; default: ``network.ice_servers``)."""
    pc = rtc.new_peer_connection(config.network.ice_servers if ice_servers is None else ice_servers)

    def add_transceivers() -> None:
        transceiver = pc.addTransceiver(video, direction="sendonly")
        rtc.prefer_codec(transceiver, "video", f"video/{config.video.codec.upper()}")
        if audio is not None:
            pc.addTransceiver(audio, direction="sendonly")

    return await _open_session(pc, config, config.http_url(f"/whip/{config.station}"), token, add_transceivers,
                               rate)


async def view(config: StationConfig, station: str, token: str | None, kinds: tuple[str, ...] = ("audio",),
               ice_servers: Sequence[str | RTCIceServer] | None = None) -> tuple[MediaSession, dict[str, Any]]:
    """WHEP: receive ``station``'s media; returns the session and its tracks by kind."""
    pc = rtc.new_peer_connection(config.network.ice_servers if ice_servers is None else ice_servers)
    tracks: dict[str, Any] = {}
    got_track = asyncio.Event()

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        tracks[track.kind] = track
        got_track.set()

    def add_transceivers() -> None:
        for kind in kinds:
            pc.addTransceiver(kind, direction="recvonly")

    session = await _open_session(pc, config, config.http_url(f"/whep/{station}"), token, add_transceivers)
    return session, tracks
