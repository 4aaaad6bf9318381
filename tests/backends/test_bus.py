"""Bus contract: bytes in, the same bytes out, to every listener of the channel, in order."""

from __future__ import annotations

import asyncio

from hub.backends.base import Subscription
from tests.backends.conftest import Backend
from tests.kit import timeout

FRAMES = [b"\x00\xff binary \xc3\x28", b"", bytes(range(256)) * 40, b"\x81\xa1t\xa8presence"]


async def take(subscription: Subscription, count: int) -> list[bytes]:
    async def read() -> list[bytes]:
        got = []
        async for frame in subscription:
            got.append(frame)
            if len(got) == count:
                return got
        return got

    return await asyncio.wait_for(read(), timeout(5))


async def settled(bus: object) -> None:
    settle = getattr(bus, "settle", None)  # Redis acknowledges SUBSCRIBE asynchronously
    if settle is not None:
        await settle()


async def test_bytes_published_are_bytes_delivered_to_every_listener(backend: Backend) -> None:
    bus = backend.bus()
    first, second = bus.subscribe("events"), bus.subscribe("events")
    await settled(bus)
    for frame in FRAMES:
        await bus.publish("events", frame)
    assert await take(first, len(FRAMES)) == FRAMES
    assert await take(second, len(FRAMES)) == FRAMES


async def test_channels_are_separate(backend: Backend) -> None:
    bus = backend.bus()
    events, commands = bus.subscribe("events"), bus.subscribe("commands")
    await settled(bus)
    await bus.publish("commands", b"announce")
    await bus.publish("events", b"presence")
    assert await take(events, 1) == [b"presence"]
    assert await take(commands, 1) == [b"announce"]


async def test_unsubscribe_ends_the_listener_and_others_keep_receiving(backend: Backend) -> None:
    bus = backend.bus()
    gone, kept = bus.subscribe("events"), bus.subscribe("events")
    await settled(bus)
    bus.unsubscribe(gone)
    assert await take(gone, 1) == []  # iteration ended
    await bus.publish("events", b"still here")
    assert await take(kept, 1) == [b"still here"]


async def test_close_ends_every_listener(backend: Backend) -> None:
    bus = backend.bus()
    subscription = bus.subscribe("events")
    await settled(bus)
    await bus.close()
    assert await take(subscription, 1) == []
