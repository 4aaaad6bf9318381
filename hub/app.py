"""The app factory: builds one hub from settings, decides the backend once, wires the edges."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.backends.base import Bus, CredentialStore, PresenceStore
from hub.backends.nodes import ClusterHooks, build_router
from hub.core.registry import Registry, parse_registry
from hub.core.schedule import Schedule
from hub.errors import ClientError, ConfigError, RateLimited, RegistryError, Unavailable
from hub.ledger.base import BufferedLedger, Ledger
from hub.media.relay import MediaRelay
from hub.routes import api, media, pages, uvicorn_seams, ws
from hub.services.auth import SESSION_COOKIE, AuthService
from hub.services.metrics import Metrics
from hub.services.reports import ReportsService
from hub.services.stations import StationsService
from hub.services.watchers import WatchService
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
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def build_backend(settings: Settings) -> tuple[Bus, PresenceStore, CredentialStore, Ledger]:
    if settings.hub.backend == "redis":
        from hub.backends.redis import build_redis_backend

        return build_redis_backend(settings)
    from hub.backends.memory import MemoryBus, MemoryPresenceStore
    from hub.backends.sqlite import SqliteCredentials
    from hub.ledger.sqlite import SqliteLedger

    database = settings.data_path / "jaga.db"
    return MemoryBus(), MemoryPresenceStore(), SqliteCredentials(database), SqliteLedger(database, settings.node_id)


def build_credentials(settings: Settings) -> CredentialStore:
    """Just the credential store, for the CLI."""
    if settings.hub.backend == "redis":
        from hub.backends.redis import RedisCredentials

        return RedisCredentials.from_url(settings.hub.redis_url)
    from hub.backends.sqlite import SqliteCredentials

    return SqliteCredentials(settings.data_path / "jaga.db")


class Hub:
    """Everything one hub node holds; built at start-up, reached through ``app.state.hub``."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.registry = load_registry(settings)
        self.schedule = Schedule(settings.schedule)
        self.schedule.check(self.registry)
        self.metrics = Metrics()
        self.bus, self.presence_store, self.credentials, ledger = build_backend(settings)
        self.ledger = BufferedLedger(ledger)
        # Where stations are and who answers for them (one node: here; a cluster: Redis).
        self.router = build_router(settings, self.bus, self.presence_store, lambda: self.settings.public_url, clock)
        self.auth = AuthService(self.credentials, settings.auth, session_secret(settings), clock)
        self.reports = ReportsService(ledger, self.schedule, settings.schedule.full_coverage, clock)
        self.stations = StationsService(settings, self.registry, self.schedule, self.auth, self.ledger,
                                        self.presence_store, self.bus, self.metrics, clock)
        self.media = self._build_media()
        self.watchers = WatchService(self.registry, self.schedule, self.presence_store, self.bus, self.metrics,
                                     settings.presence.watch_history, settings.presence.watcher_backlog,
                                     viewers=self._viewers, thumb_at=self._thumb_at, clock=clock)
        self._tasks: list[asyncio.Task[None]] = []
        # WHIP session id → (station, hash of the token it was opened with), so that rotating
        # a token also ends a publisher that never opened a WebSocket (OBS, GStreamer).
        self.whip_credentials: dict[str, tuple[str, str]] = {}
        self._register_metrics()

    def _build_media(self) -> MediaRelay:
        return MediaRelay(self.settings.media, MediaEvents(self))

    def _viewers(self, station_id: str) -> int:
        return self.media.viewer_count(station_id)

    def _thumb_at(self, station_id: str) -> float | None:
        found = self.stations.thumbnails.get(station_id)
        return found[1] if found else None

    def _register_metrics(self) -> None:
        def by_state() -> dict[str, float]:
            counts = {state: 0.0 for state in ("online", "live", "reconnecting")}
            for record in self.stations.table.records():
                if record.state in counts:
                    counts[record.state] += 1
            return counts

        self.metrics.add_gauges("jaga_stations", "Stations connected to this node, by state", "state", by_state)
        self.metrics.add_gauges("jaga_ledger_healthy", "1 when the ledger store accepts writes", "",
                                lambda: {"": float(self.ledger.healthy)})
        self.metrics.add_gauges("jaga_ledger_pending_writes", "Ledger writes held while the store is down", "",
                                lambda: {"": float(len(self.ledger.pending))})
        self.metrics.add_gauges("jaga_watchers", "Watch sockets on this node", "",
                                lambda: {"": float(len(self.watchers.watchers))})
        self.metrics.add_gauges("jaga_watch_frames", "Event frames to watchers: written pre-framed (direct) or "
                                "through the ASGI send (asgi, including a slow watcher's backlog)", "path",
                                lambda: {"direct": float(self.watchers.frames_direct),
                                         "asgi": float(self.watchers.frames_asgi)})
        self.metrics.add_gauges("jaga_media", "Media relay counters", "counter",
                                lambda: {k: float(v) for k, v in self.media.metrics().items()})
        self.metrics.add_gauges("jaga_process", "What a soak watches for leaks", "resource", process_resources)

    def readiness(self) -> dict[str, bool]:
        return {"ledger": self.ledger.healthy, "events": self.watchers.ready.is_set(), **self.router.readiness()}

    async def start(self) -> None:
        # One node owns the whole SQLite ledger, whatever its address was last time (a
        # `--port 0` hub gets a new one per start); in a cluster each node recovers its own.
        node = self.settings.node_id if self.settings.hub.backend == "redis" else None
        recovered = await self.ledger.inner.recover(node)
        if recovered:
            log.warning("closed %d intervals left open by a crash at their last checkpoint", recovered)
        await self.router.join(ClusterHooks(self.stations.republish, self.stations.node_lost,
                                            self.watchers.resync, self.ledger.flush))
        self._tasks = [asyncio.create_task(coro) for coro in (
            self.watchers.run(), self.stations.deliver_commands(), self._timers(), self.router.run())]
        await asyncio.wait_for(self.watchers.ready.wait(), 10)

    async def _timers(self) -> None:
        presence = self.settings.presence
        tick_s = min(presence.heartbeat_s / 2, 1.0)
        next_checkpoint = 0.0
        while True:
            try:
                await self.stations.tick()
                now = self.clock()
                if now >= next_checkpoint:
                    next_checkpoint = now + self.settings.hub.checkpoint_s
                    await self.stations.close_revoked()
                    await self._end_revoked_publishers()
                    if not await self.ledger.checkpoint(now):
                        log.error("ledger unavailable, holding %d writes: %s",
                                  len(self.ledger.pending), self.ledger.last_error)
            except Exception:
                log.exception("timer tick failed")
            await asyncio.sleep(tick_s)

    async def _end_revoked_publishers(self) -> None:
        self.whip_credentials = {sid: c for sid, c in self.whip_credentials.items() if self.media.session(sid)}
        if not self.whip_credentials:
            return
        revoked = set(await self.auth.revoked(dict(self.whip_credentials.values())))
        for session_id, (station_id, _) in list(self.whip_credentials.items()):
            if station_id in revoked:
                log.warning("token of %s was rotated: ending its WHIP session", station_id)
                del self.whip_credentials[session_id]
                await self.media.end(session_id)

    async def stop(self) -> None:
        await self.stations.shutdown()
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
        await self.credentials.close()


def process_resources() -> dict[str, float]:
    """Tasks, open file descriptors and resident memory of this process (Linux /proc)."""
    resources = {"asyncio_tasks": float(len(asyncio.all_tasks()))}
    with contextlib.suppress(OSError):
        resources["open_fds"] = float(len(os.listdir("/proc/self/fd")))
        with open("/proc/self/statm") as statm:
            resources["rss_bytes"] = float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    return resources


class MediaEvents:
    """Media relay callbacks → station presence (the relay imports nothing of ours)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def publishing_started(self, station_id: str) -> None:
        if station_id in self.hub.registry:
            self._spawn(self.hub.stations.set_publishing(station_id, True))

    def publishing_stopped(self, station_id: str) -> None:
        if station_id in self.hub.registry:
            self._spawn(self.hub.stations.set_publishing(station_id, False))

    def wants_thumbnail(self, station_id: str) -> bool:
        """Only for publishers without an agent sending thumbnails (OBS, a browser): decoding
        keyframes costs hub CPU, and asking for them costs a village uplink."""
        fresh_for = 2 * self.hub.settings.media.thumbnail_s
        sent_at = self.hub.stations.agent_thumbnail_at.get(station_id, float("-inf"))
        return self.hub.clock() - sent_at >= fresh_for

    def thumbnail(self, station_id: str, jpeg: bytes) -> None:
        """A keyframe decoded by the relay; the agent's own thumbnail wins while it is fresh."""
        if not self.wants_thumbnail(station_id):
            return
        if station_id in self.hub.registry:
            self._spawn(self.hub.stations.store_thumbnail(station_id, jpeg))


class SessionMiddleware:
    """Resolves the operator session cookie once per request (HTTP and WebSocket)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["jaga.operator"] = None
            scope["jaga.session"] = None
            hub = scope["app"].state.hub if "app" in scope else None
            cookie = _cookie(scope, SESSION_COOKIE)
            if cookie and hub is not None:
                found = await hub.auth.resolve_session(cookie)
                if found:
                    scope["jaga.operator"], scope["jaga.session"] = found
        await self.app(scope, receive, send)


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return v
    return None


async def client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)
    hub = request.app.state.hub
    hub.metrics.errors.labels(exc.code).inc()
    headers = {}
    if isinstance(exc, (RateLimited, Unavailable)):
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if request.url.path.startswith(("/whip/", "/whep/")):
        headers.update(media.CORS)  # WHIP/WHEP clients on other origins must read the error
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.http_status,
                        headers=headers)


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> Starlette:
    hub = Hub(settings, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await hub.start()
        try:
            yield
        finally:
            await hub.stop()

    routes = [*api.routes, *ws.routes, *media.routes, *pages.routes]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={ClientError: client_error})
    app.state.hub = hub
    app.add_middleware(SessionMiddleware)
    # Pages, scripts and station lists shrink 3-10x; JPEGs and SDP gain nothing.
    app.add_middleware(GZipMiddleware, minimum_size=1024,
                       exclude_content_types=("text/event-stream", "image/jpeg", "application/sdp"))
    # Outermost, so it sees the server's own send (the watch fan-out's fast path needs it).
    app.add_middleware(uvicorn_seams.KeepServerSend)
    return app




def asset_dir() -> Path:
    return Path(__file__).parent / "static"
