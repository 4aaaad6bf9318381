"""Fixtures for the media tests: a relay bound to 127.0.0.1 and a recorder of its events."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from hub.media import MediaRelay
from hub.media.seams_udp import UdpMux
from hub.settings import MediaSettings
from tests.kit import free_udp_port, wait_until
from tests.media.peers import WAIT_S


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

    async def wait_until(self, condition: Callable[[], bool], message: str = "") -> None:
        """Wait until ``condition()`` holds, checking it again at each event the relay reports."""
        await wait_until(condition, WAIT_S, message or "the relay's events", changed=self.changed)


def overflow(mux: UdpMux) -> None:
    """Send junk datagrams to ``mux``'s port until the kernel drops some at its full receive
    buffer: call without yielding, so the loop reads nothing meanwhile."""
    before = mux.kernel_drops()
    assert before is not None
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        while mux.kernel_drops() == before:
            for _ in range(1000):
                sender.sendto(b"\x80" + bytes(1199), ("127.0.0.1", mux.port))
            sent += 1000
            assert sent < 1_000_000, "a 16 MB buffer should have overflowed long before"


def media_settings(**overrides: Any) -> MediaSettings:
    return MediaSettings(**{"host_addresses": ("127.0.0.1",), "thumbnail_s": 0.0, "udp_port": free_udp_port(),
                            **overrides})


@pytest.fixture
def events() -> RecordedEvents:
    return RecordedEvents()


@pytest.fixture
async def relay(events: RecordedEvents) -> AsyncIterator[MediaRelay]:
    relay = MediaRelay(media_settings(), events)
    yield relay
    await relay.close()
