"""Prometheus metrics for one hub; each app owns its registry (no process globals)."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

if TYPE_CHECKING:  # types only: the stations and watch services import this module
    from hub.ledger.base import BufferedLedger
    from hub.media.relay import MediaRelay
    from hub.services.stations import StationsService
    from hub.services.watchers import WatchService


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.messages_in = Counter("jaga_messages_in", "WebSocket messages received", ["endpoint"],
                                   registry=self.registry)
        self.messages_out = Counter("jaga_messages_out", "WebSocket frames sent to watchers", registry=self.registry)
        self.errors = Counter("jaga_errors", "Client errors answered, by code", ["code"], registry=self.registry)
        self.transitions = Counter("jaga_presence_transitions", "Presence transitions, by new state", ["state"],
                                   registry=self.registry)
        self.watcher_resyncs = Counter("jaga_watcher_resyncs", "Slow watchers sent a fresh snapshot",
                                       registry=self.registry)

    def add_gauges(self, name: str, help_text: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        """Export a family read at scrape time (stations by state, media counters, ...)."""
        self.registry.register(_Collected(name, help_text, label, read))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _Collected:
    def __init__(self, name: str, help_text: str, label: str, read: Callable[[], dict[str, float]]) -> None:
        self.name, self.help_text, self.label, self.read = name, help_text, label, read

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(self.name, self.help_text, labels=[self.label] if self.label else [])
        for key, value in self.read().items():
            family.add_metric([key] if self.label else [], value)
        yield family

    def describe(self) -> list[Metric]:
        # Without it, registering would call collect() (auto_describe) before the hub is up.
        return []


def add_node_gauges(metrics: Metrics, stations: StationsService, ledger: BufferedLedger, watchers: WatchService,
                    media: MediaRelay) -> None:
    """The gauges of one node, read at scrape time from the services that hold the numbers."""

    def by_state() -> dict[str, float]:
        counts = {state: 0.0 for state in ("online", "live", "reconnecting")}
        for record in stations.table.records():
            if record.state in counts:
                counts[record.state] += 1
        return counts

    def by_media() -> dict[str, float]:
        counts = {"video": 0.0, "audio": 0.0, "stalled": 0.0}
        for record in stations.table.records():
            if record.publishing:
                counts[record.media or "stalled"] += 1
        return counts

    metrics.add_gauges("jaga_stations", "Stations connected to this node, by state", "state", by_state)
    metrics.add_gauges("jaga_stations_media", "Stations publishing on this node, by what flows: video, "
                       "audio only (stepped down), or stalled (media_stalled: not live)", "media", by_media)
    metrics.add_gauges("jaga_ledger_healthy", "1 when the ledger store accepts writes", "",
                       lambda: {"": float(ledger.healthy)})
    metrics.add_gauges("jaga_ledger_pending_writes", "Ledger writes held while the store is down", "",
                       lambda: {"": float(len(ledger.pending))})
    metrics.add_gauges("jaga_watchers", "Watch sockets on this node", "",
                       lambda: {"": float(len(watchers.watchers))})
    metrics.add_gauges("jaga_watch_frames", "Event frames to watchers: written pre-framed (direct) or "
                       "through the ASGI send (asgi, including a slow watcher's backlog)", "path",
                       lambda: {"direct": float(watchers.frames_direct), "asgi": float(watchers.frames_asgi)})
    metrics.add_gauges("jaga_media", "Media relay counters", "counter",
                       lambda: {k: float(v) for k, v in media.metrics().items()})
    metrics.add_gauges("jaga_process", "What a soak watches for leaks", "resource", process_resources)


def add_recording_gauges(metrics: Metrics, read: Callable[[], dict[str, float]]) -> None:
    """docs/recordings.md "Metrics"; ``read`` is ``RecordingsService.metrics`` (active, bytes,
    errors, disk_free, cpu_s), read at scrape time."""
    families = (("jaga_recordings_active", "Recordings writing a part on this node", "active"),
                ("jaga_recording_bytes_total", "Bytes of recording parts written by this process", "bytes"),
                ("jaga_recording_errors_total", "Recording write, finish and index errors", "errors"),
                ("jaga_recording_disk_free_bytes", "Free bytes on the recordings' disk (last check)", "disk_free"),
                ("jaga_recording_cpu_seconds_total", "CPU the recorders' batches took (assembling and writing frames)",
                 "cpu_s"))
    for name, help_text, key in families:
        metrics.add_gauges(name, help_text, "", _one(read, key))


def add_hls_gauges(metrics: Metrics, read: Callable[[], dict[str, float]]) -> None:
    """docs/operations.md "HLS"; ``read`` is ``HlsService.metrics``, read at scrape time."""
    metrics.add_gauges("jaga_hls_packaged", "Stations whose HLS this node packages now", "", _one(read, "packaged"))
    metrics.add_gauges("jaga_hls_started_total", "HLS packagers started (first request after idle)", "",
                       _one(read, "started"))
    metrics.add_gauges("jaga_hls_cpu_seconds_total", "CPU the HLS packagers' batches took (remux and AAC)", "",
                       _one(read, "cpu_seconds"))
    metrics.add_gauges("jaga_hls_requests_total", "HLS requests answered, by kind", "kind",
                       lambda: {key.removeprefix("requests_"): value for key, value in read().items()
                                if key.startswith("requests_")})
    metrics.add_gauges("jaga_hls_remote_total", "HLS fetched from the node holding the station", "counter",
                       lambda: {key.removeprefix("remote_"): value for key, value in read().items()
                                if key.startswith("remote_")})


def _one(read: Callable[[], dict[str, float]], key: str) -> Callable[[], dict[str, float]]:
    return lambda: {"": read()[key]}


def process_resources() -> dict[str, float]:
    """Tasks, open file descriptors and resident memory of this process (Linux /proc)."""
    resources = {"asyncio_tasks": float(len(asyncio.all_tasks()))}
    with contextlib.suppress(OSError):
        resources["open_fds"] = float(len(os.listdir("/proc/self/fd")))
        with open("/proc/self/statm") as statm:
            resources["rss_bytes"] = float(int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE"))
    return resources
