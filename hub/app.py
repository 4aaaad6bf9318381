"""The app factory: builds one hub node from settings and wires its services to the edges.

The backend (single node or cluster) is decided once, by :func:`hub.backends.factory.build_backend`;
:class:`Hub` holds what it returned and never asks which kind it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware

from hub.backends.factory import build_backend
from hub.backends.nodes import ClusterHooks
from hub.beat import sleep_to_beat
from hub.core.audit import ReadAudit
from hub.core.loop_load import BeatLag, thread_cpu_clock
from hub.core.proxies import TrustedProxies
from hub.core.registry import Registry, parse_registry
from hub.core.schedule import Schedule
from hub.core.talk import PENDOPO
from hub.core.watch_admission import WatchAdmission
from hub.errors import ClientError, ConfigError, RegistryError, Unavailable
from hub.ledger.base import BufferedLedger
from hub.media.aac import OpusToAac
from hub.media.relay import MediaRelay
from hub.routes import api, hls, jejak, media, pages, questions, recordings, uvicorn_seams, ws
from hub.routes.middleware import SecurityHeaders, SessionMiddleware, client_error
from hub.routes.proxies import RealClientMiddleware
from hub.services.auth import AuthService
from hub.services.hls import HlsService
from hub.services.hls_remote import OwnerFetcher
from hub.services.jejak import JejakService
from hub.services.media_presence import MediaPresence
from hub.services.metrics import Metrics, add_hls_gauges, add_node_gauges, add_recording_gauges
from hub.services.operator_access import OperatorAccess
from hub.services.questions import QuestionsService
from hub.services.recordings import RecordingsService
from hub.services.reports import ReportsService
from hub.services.stations import StationsService
from hub.services.watchers import WatchService
from hub.services.whip_tokens import WhipTokens
from hub.settings import Settings

log = logging.getLogger("jaga.hub")


def load_registry(settings: Settings) -> Registry:
    path = settings.registry_path
    try:
        return parse_registry(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"stations.registry not found: {path}") from None
    except RegistryError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def session_secret(settings: Settings) -> bytes:
    """The cookie-signing key: from config, else generated once and kept under data_dir."""
    if settings.hub.session_secret:
        return settings.hub.session_secret.encode()
    path = settings.data_path / "session_secret"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # Created 0600 in one step (O_EXCL): written first and chmod'ed after, it was readable
        # by every local user in between. Two nodes starting at once: one creates, one reads.
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


class Hub:
    """Everything one hub node holds; built at start-up, reached through ``app.state.hub``."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = load_registry(settings)
        self.schedule = Schedule(settings.schedule)
        self.schedule.check(self.registry)
        self.metrics = Metrics()
        # The one decision single node vs cluster; below, only the parts and `shared` are asked.
        # The public URL is read late: with `--port 0` the port is known once the server listens.
        self.backend = build_backend(settings, lambda: self.settings.public_url, clock)
        self.bus, self.presence_store = self.backend.bus, self.backend.presence
        self.credentials = self.backend.credentials
        self.ledger = BufferedLedger(self.backend.ledger)
        self.router = self.backend.router  # where stations are and who answers for them
        self.auth = AuthService(self.credentials, settings.auth, session_secret(settings), clock)
        self.read_audit = ReadAudit()  # which operator reads of private stations are audited
        self.reports = ReportsService(self.backend.ledger, self.schedule, settings.schedule.full_coverage, clock)
        self.stations = StationsService(settings, self.registry, self.schedule, self.auth, self.ledger,
                                        self.presence_store, self.bus, self.metrics, clock,
                                        multi_node=self.backend.shared)
        self.media_presence = MediaPresence(self.registry, self.stations, settings.media.thumbnail_s, clock,
                                            router=self.router, stall_s=settings.media.stall_s)
        self.media = MediaRelay(settings.media, self.media_presence)
        self.stations.on_talk_stopped = self._end_talk_back
        self.whip_tokens = WhipTokens(self.auth, self.media)
        self.operator_access = OperatorAccess(self.auth, self.media)
        self.watchers = WatchService(self.registry, self.schedule, self.presence_store, self.bus, self.metrics,
                                     settings.presence.watch_history, settings.presence.watcher_backlog,
                                     viewers=self._viewers, thumb_at=self._thumb_at, clock=clock,
                                     admission=WatchAdmission(settings.presence.max_watchers,
                                                              settings.presence.watchers_per_address),
                                     thumbnail_batch_s=settings.presence.thumbnail_batch_s)
        self.questions = QuestionsService(settings.questions, self.registry, self.backend.questions, self.bus,
                                          self.credentials, self.presence_store, session_secret(settings),
                                          watchers=self.watchers, stations=self.stations, clock=clock)
        # Every kegiatan recorded by remux (docs/recordings.md): told of activities and
        # publishing by the stations service, tapping the relay's streams on this node.
        self.recordings = RecordingsService(settings.recording, settings.recording_path, self.registry,
                                            self.backend.recordings, self.credentials, self.media.stream,
                                            timezone=settings.schedule.timezone, clock=clock,
                                            shared=self.backend.shared)
        # The day's evidence, into the same folder: it stops with the recordings' disk floor.
        self.jejak = JejakService(settings, self.stations.thumbnails, lambda: self.recordings.floor.low, clock)
        self.stations.on_activity = self.recordings.notify_activity
        self.stations.on_publishing = self.recordings.notify_publishing
        # HLS of public H.264 stations, packaged on demand; other nodes' stations fetched from them
        self.hls = HlsService(settings.hls, self.registry, self.media.stream, self.router.owner_url,
                              OwnerFetcher(settings.hls.remote_cache_bytes), self._aac_transcoder)
        self._tasks: list[asyncio.Task[None]] = []
        add_hls_gauges(self.metrics, self.hls.metrics)
        add_node_gauges(self.metrics, self.stations, self.ledger, self.watchers, self.media)
        add_recording_gauges(self.metrics, self.recordings.metrics)
        # How busy the one event loop is (hub/core/loop_load.py): the capacity signal
        self._tick_s = min(settings.presence.heartbeat_s / 2, 1.0)
        self._beat_lag = BeatLag(self._tick_s)
        self._loop_cpu_seconds: Callable[[], float] = lambda: 0.0  # the loop thread's, once started
        self.metrics.add_gauges("jaga_event_loop", "The event loop: its thread's CPU seconds since start "
                                "(rate: share of a core) and the longest its beat woke late in the last "
                                "minute (lag_seconds)", "what",
                                lambda: {"cpu_seconds": self._loop_cpu_seconds(),
                                         "lag_seconds": self._beat_lag.longest_s()})

    def _aac_transcoder(self) -> OpusToAac:
        return OpusToAac(self.settings.hls.audio_bitrate, self.settings.hls.audio_channels)

    def _viewers(self, station_id: str) -> int:
        return self.media.viewer_count(station_id)

    async def _end_talk_back(self, station_id: str) -> None:
        """talk.stop: the station's sessions of the Pendopo's stream end on this node (the
        node that holds the stream is one of those the command reaches)."""
        for session in self.media.sessions_of(f"station:{station_id}"):
            if session.kind == "whep" and session.station_id == PENDOPO:
                await self.media.end(session.id)

    def _thumb_at(self, station_id: str) -> float | None:
        found = self.stations.thumbnails.get(station_id)
        return found[1] if found else None

    def readiness(self) -> dict[str, bool]:
        return {"ledger": self.ledger.healthy, "events": self.watchers.ready.is_set(), **self.router.readiness()}

    async def start(self) -> None:
        self._loop_cpu_seconds = thread_cpu_clock()
        # One node owns the whole SQLite ledger, whatever its address was last time (a
        # `--port 0` hub gets a new one per start); in a cluster each node recovers its own.
        node = self.settings.node_id if self.backend.shared else None
        recovered = await self.ledger.inner.recover(node)
        if recovered:
            log.warning("closed %d intervals left open by a crash at their last checkpoint", recovered)
        try:
            await self.media.open()  # the shared media UDP port: a taken port stops the start here
        except OSError as exc:
            raise ConfigError(f"media.udp_port {self.settings.media.udp_port}: {exc.strerror or exc}") from None
        try:  # recordings a crash left open: continued or finished (an index outage must not stop the hub)
            await self.recordings.start()
        except Exception:
            log.exception("recordings left open were not recovered")
        await self.router.join(ClusterHooks(self.stations.republish, self.stations.node_lost,
                                            self.watchers.resync, self.ledger.flush))
        self._tasks = [asyncio.create_task(coro) for coro in (
            self.watchers.run(), self.stations.deliver_commands(), self.questions.run(), self._timers(),
            self.router.run(), self.recordings.run())]
        await asyncio.wait_for(self.watchers.ready.wait(), 10)

    async def _timers(self) -> None:
        next_checkpoint = 0.0
        while True:
            try:
                await self.stations.tick()
                await self.media_presence.check_media(self.media.media_ages())
                self.media.check_overflow()
                now = self.clock()
                if now >= next_checkpoint:
                    next_checkpoint = now + self.settings.hub.checkpoint_s
                    await self.stations.close_revoked()
                    await self.whip_tokens.end_revoked()
                    await self._end_operator_sessions()
                    if not await self.ledger.checkpoint(now):
                        log.error("ledger unavailable, holding %d writes: %s",
                                  len(self.ledger.pending), self.ledger.last_error)
            except Exception:
                log.exception("timer tick failed")
            # Apart: a disk problem must not hold up presence or the ledger. Recordings first:
            # they measure the disk floor that jejak follows.
            for name, tick in (("recordings", self.recordings.tick), ("jejak", self.jejak.tick)):
                try:
                    await tick()
                except Exception:
                    log.exception("%s tick failed", name)
            self.hls.tick()
            self._beat_lag.note(await sleep_to_beat(self._tick_s))  # on uvicorn's tick: one wake-up for both

    async def _end_operator_sessions(self) -> None:
        """Close what logged-out, expired or revoked operator sessions held open, and delete
        expired sessions. With the store away, nothing: an outage is not a revocation (and
        the ledger's checkpoint after this must still run)."""
        try:
            await self.operator_access.end_revoked()
            await self.auth.sweep()
        except Unavailable as exc:
            log.warning("operator sessions not checked: %s", exc.message)

    async def stop(self) -> None:
        await self.stations.shutdown()
        with contextlib.suppress(Exception):  # parts closed while their streams still exist
            await self.recordings.stop()
        self.hls.close()
        if self.media is not None:
            await self.media.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            if await self.ledger.flush():
                await self.ledger.inner.close_all(self.clock(), "shutdown", self.settings.node_id)
        await self.router.leave()
        await self.bus.close()
        await self.ledger.inner.close()
        await self.backend.questions.close()
        await self.backend.recordings.close()
        await self.credentials.close()
        self.auth.close()


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> Starlette:
    hub = Hub(settings, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    routes = [*api.routes, *hls.routes, *jejak.routes, *recordings.routes, *questions.routes, *ws.routes, *media.routes,
              *pages.routes]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={ClientError: client_error})
    app.state.hub = hub
    app.add_middleware(SessionMiddleware)
    app.add_middleware(SecurityHeaders)  # nosniff and a CSP on API answers too, errors included
    # Pages, scripts and station lists shrink 3-10x; JPEGs, SDP and video gain nothing.
    app.add_middleware(GZipMiddleware, minimum_size=1024,
                       exclude_content_types=("text/event-stream", "image/jpeg", "application/sdp",
                                              "video/webm", "video/mp4", "video/iso.segment"))
    # Before anything reads scope["client"]: the real client behind trusted reverse proxies.
    app.add_middleware(RealClientMiddleware, trusted=TrustedProxies(settings.hub.trusted_proxies))
    # Outermost, so it sees the server's own send (the watch fan-out's fast path needs it).
    app.add_middleware(uvicorn_seams.KeepServerSend)
    return app
