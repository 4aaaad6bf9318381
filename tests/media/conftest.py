"""Fixtures for the media tests: a relay bound to 127.0.0.1 and a recorder of its events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from hub.media import MediaRelay
from hub.settings import MediaSettings


@dataclass
class RecordedEvents:
    started: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    thumbnails: list[tuple[str, bytes]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def publishing_started(self, station_id: str) -> None:
        self.started.append(station_id)
        self.changed.set()

    def publishing_stopped(self, station_id: str) -> None:
        self.stopped.append(station_id)
        self.changed.set()

    def thumbnail(self, station_id: str, jpeg: bytes) -> None:
        self.thumbnails.append((station_id, jpeg))
        self.changed.set()

    def wants_thumbnail(self, station_id: str) -> bool:
        return station_id not in self.agent_thumbnails

    agent_thumbnails: set[str] = field(default_factory=set)

    async def wait_until(self, condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
        async with asyncio.timeout(timeout):
            while not condition():
                self.changed.clear()
                await self.changed.wait()


def media_settings(**overrides: object) -> MediaSettings:
    base: dict[str, object] = {"host_addresses": ("127.0.0.1",), "thumbnail_s": 0.0}
    base.update(overrides)
    return MediaSettings(**base)  # type: ignore[arg-type]


@pytest.fixture
def events() -> RecordedEvents:
    return RecordedEvents()


@pytest.fixture
async def relay(events: RecordedEvents) -> AsyncIterator[MediaRelay]:
    relay = MediaRelay(media_settings(), events)
    yield relay
    await relay.close()
