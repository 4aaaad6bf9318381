"""The media relay's callbacks turned into station presence and thumbnails.

The relay (:mod:`hub.media`) imports nothing of ours: it calls a
:class:`hub.media.sessions.MediaEvents` it is given. This is the hub's one, and the only code
that knows both sides.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any

from hub.backends.nodes import LocalRouter, Router
from hub.core.presence import flowing_media
from hub.core.registry import Registry
from hub.services.stations import StationsService


class MediaPresence:
    """Media relay callbacks → station presence. Called on the event loop, so each change
    runs as its own task (the relay must not wait on the presence lock)."""

    def __init__(self, registry: Registry, stations: StationsService, thumbnail_s: float,
                 clock: Callable[[], float] = time.time, router: Router | None = None,
                 stall_s: float = 3.0) -> None:
        self.registry = registry
        self.stall_s = stall_s
        self.router: Router = router or LocalRouter()
        self.stations = stations
        self.thumbnail_s = thumbnail_s
        self.clock = clock
        self._tasks: set[asyncio.Task[None]] = set()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)  # the loop keeps only a weak reference to a task
        task.add_done_callback(self._tasks.discard)

    def publishing_started(self, station_id: str) -> None:
        if station_id in self.registry:
            self._spawn(self.stations.set_publishing(station_id, True))
        else:  # the Pendopo's talk-back: no presence, but other nodes must find it for WHEP
            self._spawn(self.router.stream_here(station_id, True))

    def publishing_stopped(self, station_id: str) -> None:
        if station_id in self.registry:
            self._spawn(self.stations.set_publishing(station_id, False))
        else:
            self._spawn(self.router.stream_here(station_id, False))

    async def check_media(self, ages: dict[str, tuple[float, float]]) -> None:
        """The watchdog, once per timer tick: ``ages`` is the relay's seconds since each live
        station's last audio and video RTP (:meth:`hub.media.relay.MediaRelay.media_ages`)."""
        for station_id, (audio_age, video_age) in ages.items():
            if station_id in self.registry:
                await self.stations.set_media(station_id, flowing_media(audio_age, video_age, self.stall_s))

    def wants_thumbnail(self, station_id: str) -> bool:
        """Only for publishers without an agent sending thumbnails (OBS, a browser): decoding
        keyframes costs hub CPU, and asking for them costs a village uplink."""
        fresh_for = 2 * self.thumbnail_s
        sent_at = self.stations.agent_thumbnail_at.get(station_id, float("-inf"))
        return self.clock() - sent_at >= fresh_for

    def thumbnail(self, station_id: str, jpeg: bytes) -> None:
        """A keyframe decoded by the relay; the agent's own thumbnail wins while it is fresh."""
        if not self.wants_thumbnail(station_id):
            return
        if station_id in self.registry:
            self._spawn(self.stations.store_thumbnail(station_id, jpeg))
