"""Single-process backend: an in-memory bus and presence store.

Credentials and the ledger live in the SQLite file under ``data_dir`` (see
:mod:`hub.backends.sqlite` and :mod:`hub.ledger.sqlite`), so the CLI can mint tokens while
the hub runs.
"""

from __future__ import annotations

from typing import Any

from hub.backends.base import Bus, PresenceStore, Subscription


class MemoryBus(Bus):
    def __init__(self) -> None:
        self._subscriptions: dict[str, list[Subscription]] = {}

    async def publish(self, channel: str, data: bytes) -> None:
        for subscription in self._subscriptions.get(channel, ()):
            subscription.deliver(data)

    def subscribe(self, channel: str) -> Subscription:
        subscription = Subscription(channel)
        self._subscriptions.setdefault(channel, []).append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        listeners = self._subscriptions.get(subscription.channel, [])
        if subscription in listeners:
            listeners.remove(subscription)
            subscription.end()

    async def close(self) -> None:
        for listeners in self._subscriptions.values():
            for subscription in listeners:
                subscription.end()
        self._subscriptions.clear()


class MemoryPresenceStore(PresenceStore):
    def __init__(self) -> None:
        self._seq = 0
        self._records: dict[str, dict[str, Any]] = {}

    async def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    async def save(self, station: str, record: dict[str, Any]) -> None:
        self._records[station] = record

    async def load_all(self) -> dict[str, dict[str, Any]]:
        return dict(self._records)
