"""Prometheus metrics for one hub; each app owns its registry (no process globals)."""

from __future__ import annotations

from typing import Callable

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily


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

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily(self.name, self.help_text, labels=[self.label] if self.label else [])
        for key, value in self.read().items():
            family.add_metric([key] if self.label else [], value)
        yield family

    def describe(self):  # type: ignore[no-untyped-def]
        return []
