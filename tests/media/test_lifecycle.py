"""Viewers joining and leaving over and over leave nothing behind."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import time
from collections.abc import Iterator

import psutil
from aiortc import RTCPeerConnection

from hub.media import MediaRelay
from tests.kit import wait_until
from tests.media.peers import Publisher, Viewer, wait_for_state

STATION = "35.09.01"
CYCLES = int(os.environ.get("JAGA_MEDIA_CYCLES", "200"))
WARM_UP = 20


def open_peer_connections() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection) and o.connectionState != "closed")


def live_peer_connections() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, RTCPeerConnection))


async def quiet_tasks(baseline: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks beyond the baseline, once those that are finishing have finished (or 10 s)."""
    me = asyncio.current_task()

    def extra() -> set[asyncio.Task[object]]:
        return {t for t in asyncio.all_tasks() if t not in baseline and t is not me}

    with contextlib.suppress(TimeoutError):  # what is left is returned, for the test to name
        await wait_until(lambda: not extra(), 10, "the relay's tasks to finish", every=0.05)
    return extra()


class CountingHandler(logging.Handler):
    """Counts asyncio's log records without keeping them (pytest's capture keeps each
    record's exc_info, whose traceback frames would keep closed peer connections alive)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def asyncio_log_counted() -> Iterator[CountingHandler]:
    handler = CountingHandler()
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.addHandler(handler)
    asyncio_logger.propagate = False
    try:
        yield handler
    finally:
        asyncio_logger.removeHandler(handler)
        asyncio_logger.propagate = True


async def cycle(relay: MediaRelay, picture: bool) -> None:
    viewer = await Viewer.start(relay, STATION)
    await wait_for_state(viewer.pc, "connected")
    if picture:
        await viewer.wait_for(pictures=1)
    await relay.end(viewer.session_id)  # what DELETE does
    await viewer.close()


async def test_join_leave_cycles_leave_no_peer_connections_tasks_or_memory(relay: MediaRelay) -> None:
    with asyncio_log_counted() as asyncio_log:
        await join_and_leave(relay)
    # aiortc's own connect task raises "RTCIceTransport is closed" when a connection is
    # closed while it is still connecting; aiortc never awaits that task. Noise, not a leak.
    unexpected = [m for m in asyncio_log.messages if "Task exception was never retrieved" not in m]
    assert not unexpected, unexpected


async def join_and_leave(relay: MediaRelay) -> None:
    process = psutil.Process()
    publisher = await Publisher.start(relay, STATION)
    for i in range(WARM_UP):
        await cycle(relay, picture=i % 5 == 0)
    baseline_tasks = set(asyncio.all_tasks())
    gc.collect()
    baseline_rss, baseline_fds = process.memory_info().rss, process.num_fds()
    baseline_cpu = sum(process.cpu_times()[:2])

    started = time.monotonic()
    for i in range(CYCLES):
        await cycle(relay, picture=i % 10 == 0)  # every 10th waits for a decoded picture too
    elapsed = time.monotonic() - started
    cpu = sum(process.cpu_times()[:2]) - baseline_cpu

    tasks = await quiet_tasks(baseline_tasks)
    assert relay.viewer_count(STATION) == 0 and relay.metrics()["viewers"] == 0
    assert open_peer_connections() == 2, "only the publisher's two ends may remain open"
    assert live_peer_connections() == 2, "closed peer connections are still referenced"
    assert not tasks, f"leftover tasks: {sorted(getattr(t.get_coro(), '__qualname__', t.get_name()) for t in tasks)}"
    fds = process.num_fds()
    rss_growth = (process.memory_info().rss - baseline_rss) / 2**20
    print(
        f"\n{CYCLES} join/leave cycles in {elapsed:.1f} s ({elapsed / CYCLES * 1000:.0f} ms each, "
        f"test process CPU {cpu:.1f} s for both ends); fds {baseline_fds}->{fds}; RSS {rss_growth:+.1f} MiB"
    )
    assert fds <= baseline_fds + 2
    assert rss_growth < 40, f"RSS grew {rss_growth:.1f} MiB over {CYCLES} cycles"
    await publisher.close()
    await wait_for_state(publisher.pc, "closed")
