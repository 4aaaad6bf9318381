"""HLS and low-latency HLS of public stations: packaging on demand, blocking requests, other nodes.

Theory of operation.

- **On demand.** A station is packaged (:class:`hub.media.hls_packager.HlsPackager`) from
  the first HLS request for it and stops after ``idle_s`` without one (``tick``), so 300
  stations do not all pay for it; at most ``max_stations`` at once on a node (then 503).
  Only public stations, only while they publish H.264 on this node.
- **Blocking.** ``_HLS_msn`` / ``_HLS_part`` (and a request for the part the preload hint
  names) wait for that part to exist, up to ``BLOCK_TARGETS`` target durations, woken by
  the packager after each new part; a request too far ahead is a 400.
- **Other nodes.** A station published on another node (the router knows the owner) is
  fetched from the owner by :class:`~hub.services.hls_remote.OwnerFetcher`, one request per
  URL however many viewers here ask at once, its immutable parts kept for the others. So a
  popular station is served by every node (and every cache in front of them), not capped by
  the one holding the publisher.
- **Caching.** Parts, segments and init segments never change under a name (names carry the
  packager's run id): immutable, a year. A blocking playlist answers for one state: cacheable
  for a few seconds. The plain and the first LL playlist: one second. ETags everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from hub.core.hls_playlist import BlockingState
from hub.core.registry import Registry
from hub.errors import Conflict, NotFound, ProtocolViolation, Unavailable
from hub.media.hls_packager import AudioTranscoder, HlsPackager, PackagerOptions, PackagingError
from hub.settings import HlsSettings

logger = logging.getLogger(__name__)

BLOCK_TARGETS = 3  # a blocked request waits at most this many target durations (RFC 8216bis §6.2.5.2)
FIRST_MEDIA_S = 8.0  # the first request waits this long for the first part (a keyframe has to come)
IMMUTABLE = "public, max-age=31536000, immutable"
PLAYLIST = "application/vnd.apple.mpegurl"
_MEDIA_NAME = re.compile(r"^(?:i(\d{1,6})\.mp4|s(\d{1,12})\.m4s|p(\d{1,12})\.(\d{1,4})\.m4s)$")


@dataclass(frozen=True)
class HlsAnswer:
    body: bytes
    content_type: str
    cache_control: str
    etag: str
    status: int = 200


class RemoteFetcher(Protocol):
    async def get(self, url: str) -> HlsAnswer: ...
    def metrics(self) -> dict[str, int]: ...


@dataclass
class _Packaged:
    packager: HlsPackager
    last_request: float
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    in_flight: int = 0  # requests being answered (some blocked): not idle while any are
    stopped: bool = False

    @contextlib.contextmanager
    def serving(self, clock: Callable[[], float]) -> Iterator[None]:
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self.last_request = clock()

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    async def wait(self, ready: Callable[[], bool], timeout_s: float) -> bool:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not ready():
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0 or self.packager.failed is not None or self.stopped:
                return False
            try:
                await asyncio.wait_for(self.changed.wait(), remaining)
            except TimeoutError:
                return ready()
        return True


class HlsService:
    def __init__(self, settings: HlsSettings, registry: Registry, streams: Callable[[str], Any | None],
                 owner_url: Callable[[str], Awaitable[str | None]], fetcher: RemoteFetcher,
                 transcoder: Callable[[], AudioTranscoder] | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._registry = registry
        self._streams = streams
        self._owner_url = owner_url
        self._fetcher = fetcher
        self._transcoder = transcoder
        self._clock = clock
        self._options = PackagerOptions(settings.part_s, settings.segment_s, settings.keep_segments)
        self.packaged: dict[str, _Packaged] = {}
        self.counts = {"playlist": 0, "blocking": 0, "media": 0, "remote": 0}
        self.started = 0  # packagers started since the hub started
        self.cpu_s = 0.0  # packagers already stopped

    # --- requests ------------------------------------------------------------------------

    async def playlist(self, station_id: str, path: str, *, low_latency: bool, msn: int | None,
                       part: int | None) -> HlsAnswer:
        """``path`` (with its query) is what another node is asked for, if it holds the station."""
        held = self._here(station_id)
        if held is None:
            return await self._remote(station_id, path)
        with held.serving(self._clock):
            return await self._playlist(held, low_latency, msn, part)

    async def _playlist(self, held: _Packaged, low_latency: bool, msn: int | None, part: int | None) -> HlsAnswer:
        window = held.packager.window
        if not window.has_media and not await held.wait(lambda: window.has_media, FIRST_MEDIA_S):
            self._check(held)
            raise Unavailable("HLS is starting: the first part is not ready yet", retry_after=2, code="hls_starting")
        blocking = low_latency and msn is not None
        self.counts["blocking" if blocking else "playlist"] += 1
        if blocking:
            assert msn is not None
            await self._block(held, msn, part)
        text = window.render(low_latency)
        return HlsAnswer(text.encode(), PLAYLIST, "public, max-age=4" if blocking else "public, max-age=1",
                         f'"{held.packager.names.run}-{window.version}-{int(low_latency)}"')

    async def media(self, station_id: str, run: str, name: str, path: str) -> HlsAnswer:
        match = _MEDIA_NAME.match(name)
        if match is None:
            raise NotFound(f"no such HLS file: {name}")
        held = self._here(station_id)
        if held is None:
            return await self._remote(station_id, path)
        with held.serving(self._clock):
            return await self._media(held, run, name, match)

    async def _media(self, held: _Packaged, run: str, name: str, match: re.Match[str]) -> HlsAnswer:
        packager = held.packager
        if run != packager.names.run:
            raise NotFound("that HLS stream has ended: reload the playlist", code="hls_gone")
        self.counts["media"] += 1
        init, segment, part_msn, part_index = match.groups()
        etag = f'"{run}-{name}"'
        if init is not None:
            body = packager.inits.get(int(init))
            if body is None:
                raise NotFound(f"no init segment {init}")
            return HlsAnswer(body, "video/mp4", IMMUTABLE, etag)
        if segment is not None:
            msn = int(segment)
            await self._block(held, msn, None, missing=NotFound(f"segment {msn} is not in the window"))
            found = packager.segment_bytes(msn)
        else:
            key = (int(part_msn), int(part_index))
            await self._block(held, key[0], key[1], missing=NotFound(f"part {key[0]}.{key[1]} is not in the window"))
            found = packager.parts.get(key)
        if found is None:
            raise NotFound(f"{name} is not in the window")
        return HlsAnswer(found, "video/iso.segment", IMMUTABLE, etag)

    async def _block(self, held: _Packaged, msn: int, part: int | None, missing: Exception | None = None) -> None:
        window = held.packager.window
        state = window.blocking_state(msn, part)
        if state is BlockingState.BAD:
            if missing is not None:
                raise missing
            raise ProtocolViolation(f"_HLS_msn={msn} is too far ahead of the live edge", code="hls_too_far")
        if state is BlockingState.WAIT:
            ready = await held.wait(lambda: window.blocking_state(msn, part) is BlockingState.READY,
                                    BLOCK_TARGETS * window.target_duration)
            if not ready:
                self._check(held)
                raise Unavailable("the stream did not reach that part in time", retry_after=1, code="hls_timeout")

    # --- packaging -----------------------------------------------------------------------

    def _here(self, station_id: str) -> _Packaged | None:
        """This node's packager of the station (started if need be); None if another node holds it."""
        station = self._registry.get(station_id)
        if station is None or not station.public:
            raise NotFound(f"unknown station {station_id}")
        if not self.settings.enabled:
            raise NotFound("HLS is switched off on this hub: watch over WebRTC", code="hls_off")
        stream = self._streams(station_id)
        held = self.packaged.get(station_id)
        if held is not None and (held.packager.stream is not stream or held.packager.failed is not None):
            self._stop(station_id)
            held = None
        if stream is None:
            return None
        if held is None:
            held = self._start(station_id, stream)
        held.last_request = self._clock()
        return held

    def _start(self, station_id: str, stream: Any) -> _Packaged:
        if len(self.packaged) >= self.settings.max_stations:
            raise Unavailable("this node packages as many stations as it may", retry_after=10, code="hls_full")
        try:
            packager = HlsPackager(stream, self._options, self._transcoder)
        except PackagingError as exc:
            raise Conflict(f"{exc}: this station can be watched over WebRTC only", code="hls_needs_h264") from None
        held = _Packaged(packager, self._clock())
        packager.on_change = held.notify
        self.packaged[station_id] = held
        packager.start()
        self.started += 1
        logger.info("HLS packaging of %s started (run %s)", station_id, packager.names.run)
        return held

    def _check(self, held: _Packaged) -> None:
        """Why a wait ended early, as an error (nothing if it simply timed out)."""
        if held.stopped and held.packager.failed is None:
            raise NotFound("that HLS stream has ended: reload the playlist", code="hls_gone")
        failed = held.packager.failed
        if isinstance(failed, PackagingError):  # the publisher changed to another codec
            raise Conflict(f"HLS packaging failed: {failed}", code="hls_needs_h264")
        if failed is not None:
            raise Unavailable("HLS packaging failed; it starts again on the next request", retry_after=2,
                              code="hls_failed")

    def _stop(self, station_id: str) -> None:
        held = self.packaged.pop(station_id, None)
        if held is not None:
            held.stopped = True
            held.packager.stop()
            held.notify()  # blocked requests see the end at once
            self.cpu_s += held.packager.cpu_s + held.packager.audio_cpu_s
            logger.info("HLS packaging of %s stopped", station_id)

    async def _remote(self, station_id: str, path: str) -> HlsAnswer:
        owner = await self._owner_url(station_id)
        if owner is None:
            raise NotFound(f"{station_id} is not live", code="not_live")
        self.counts["remote"] += 1
        return await self._fetcher.get(owner + path)

    def tick(self) -> None:
        """Stop packaging idle stations and stations no longer live here."""
        now = self._clock()
        for station_id, held in list(self.packaged.items()):
            gone = self._streams(station_id) is not held.packager.stream
            idle = held.in_flight == 0 and now - held.last_request > self.settings.idle_s
            if gone or held.packager.failed is not None or idle:
                self._stop(station_id)

    def close(self) -> None:
        for station_id in list(self.packaged):
            self._stop(station_id)

    def metrics(self) -> dict[str, float]:
        live_cpu = sum(held.packager.cpu_s + held.packager.audio_cpu_s for held in self.packaged.values())
        return {"packaged": len(self.packaged), "started": self.started, "cpu_seconds": self.cpu_s + live_cpu,
                **{f"requests_{kind}": count for kind, count in self.counts.items()},
                **{f"remote_{key}": value for key, value in self._fetcher.metrics().items()}}
