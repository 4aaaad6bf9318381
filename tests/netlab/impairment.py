"""One direction of an impaired link, as pure logic: packets in with a time, packets out when due.

Theory of operation. A :class:`Link` is one direction (up = namespace → host, down = host →
namespace). :meth:`Link.push` takes an IP packet and the current time and either schedules it
or drops it, counting why; :meth:`Link.due` hands back, in order, every scheduled packet whose
time has come; :meth:`Link.next_deadline` says when to call ``due`` next. No I/O, no clock of
its own, one seeded RNG: the forwarder process shuttles bytes between the TUN devices and this
object, and unit tests drive it with made-up times.

What happens to a packet pushed at ``now``, in this order:

1. **filter** — :class:`Filter` (UDP blocked, or only TCP to one address:port allowed) → drop
   ``filter``;
2. **outage** — while the link is out → drop ``outage``;
3. **queue** — with a rate limit, the link transmits one packet after another: the packet starts
   when the link is free (``free_at``) and takes ``bytes × 8 / rate`` seconds. If the backlog
   ahead of it plus its own transmission would exceed ``queue_ms`` → drop ``queue`` (tail drop
   of a bounded buffer, as a modem's). Otherwise it occupies the link until
   ``free_at = max(now, free_at) + transmission``;
4. **loss** — random loss on the wire, after the queue (a lost packet used its airtime) → drop
   ``loss``;
5. **delay** — it arrives ``delay_ms`` (plus up to ``jitter_ms``, never before the packet ahead
   of it: jitter without reordering) after it left the queue.

Outage on drops what is still in flight too (the link is cut, not paused). Counters hold
``received == forwarded + dropped + pending`` at every moment.
"""

from __future__ import annotations

import heapq
import ipaddress
import random
from dataclasses import asdict, dataclass, field
from typing import Any

DROP_REASONS = ("filter", "outage", "queue", "loss")
UDP, TCP = 17, 6


@dataclass(frozen=True)
class LinkSpec:
    """The impairment of one direction. ``rate_kbps`` ``None``: no rate limit (and no queue)."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0  # fraction of packets lost at random, 0..1
    rate_kbps: float | None = None
    queue_ms: float = 300.0  # the buffer ahead of a rate limit, in transmission time

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss is a fraction 0..1, not {self.loss}")
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.queue_ms < 0:
            raise ValueError("delay_ms, jitter_ms and queue_ms must be >= 0")
        if self.rate_kbps is not None and self.rate_kbps <= 0:
            raise ValueError(f"rate_kbps must be > 0 (or None for no limit), not {self.rate_kbps}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> LinkSpec:
        return cls(**raw)


@dataclass(frozen=True)
class Filter:
    """What may cross at all (both directions). ``allow_tcp``: only TCP to (address, port) —
    its packets up, and the replies from it down — passes; everything else is dropped."""

    block_udp: bool = False
    allow_tcp: tuple[str, int] | None = None
    _allow_packed: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        packed = ipaddress.ip_address(self.allow_tcp[0]).packed if self.allow_tcp else b""
        object.__setattr__(self, "_allow_packed", packed)  # compared with the packet's bytes

    def passes(self, packet: bytes, direction: str) -> bool:
        if not (self.block_udp or self.allow_tcp):
            return True
        header = parse_header(packet)
        if header is None:
            return self.allow_tcp is None  # not IP we understand: only an allow-list stops it
        proto, src, dst, ports = header
        if self.block_udp and proto == UDP:
            return False
        if self.allow_tcp is not None:
            if proto != TCP or ports is None:
                return False
            far, far_port = (dst, ports[1]) if direction == "up" else (src, ports[0])
            return far == self._allow_packed and far_port == self.allow_tcp[1]
        return True

    def to_json(self) -> dict[str, Any]:
        return {"block_udp": self.block_udp, "allow_tcp": list(self.allow_tcp) if self.allow_tcp else None}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Filter:
        allow = raw.get("allow_tcp")
        return cls(bool(raw.get("block_udp", False)), (str(allow[0]), int(allow[1])) if allow else None)


def parse_header(packet: bytes) -> tuple[int, bytes, bytes, tuple[int, int] | None] | None:
    """(protocol, source, destination, (source port, destination port) or None) of an IPv4 or
    IPv6 packet, addresses as packed bytes; None if it is neither. Ports only for TCP/UDP and
    only in a packet's first fragment."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        proto = packet[9]
        src, dst = packet[12:16], packet[16:20]
        first_fragment = (int.from_bytes(packet[6:8], "big") & 0x1FFF) == 0
        offset = (packet[0] & 0x0F) * 4 if first_fragment else -1
    elif version == 6 and len(packet) >= 40:
        proto = packet[6]  # extension headers are not followed: enough for a lab
        src, dst = packet[8:24], packet[24:40]
        offset = 40
    else:
        return None
    ports = None
    if proto in (TCP, UDP) and offset >= 0 and len(packet) >= offset + 4:
        ports = (int.from_bytes(packet[offset:offset + 2], "big"), int.from_bytes(packet[offset + 2:offset + 4], "big"))
    return proto, src, dst, ports


@dataclass
class Counters:
    received_packets: int = 0
    received_bytes: int = 0
    forwarded_packets: int = 0
    forwarded_bytes: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    dropped_bytes: int = 0

    def to_json(self, pending: int) -> dict[str, Any]:
        return {"received": {"packets": self.received_packets, "bytes": self.received_bytes},
                "forwarded": {"packets": self.forwarded_packets, "bytes": self.forwarded_bytes},
                "dropped": dict(self.dropped), "dropped_total": sum(self.dropped.values()),
                "dropped_bytes": self.dropped_bytes, "pending": pending}


class Link:
    """One direction of the lab's link. Call :meth:`push` for every packet read, :meth:`due`
    whenever :meth:`next_deadline` has passed (or after a push), and write what it returns."""

    def __init__(self, direction: str, spec: LinkSpec | None = None, seed: int = 1) -> None:
        assert direction in ("up", "down")
        self.direction = direction
        self.spec = spec or LinkSpec()
        self.filter = Filter()
        self.outage = False
        self.counters = Counters()
        self._rng = random.Random(f"{seed}:{direction}")
        self._free_at = 0.0  # when the rate-limited link has sent everything queued
        self._last_arrival = 0.0  # jitter never reorders: nothing arrives before this
        self._heap: list[tuple[float, int, bytes]] = []
        self._seq = 0

    # -- configuration, at any time

    def configure(self, spec: LinkSpec) -> None:
        """New impairment for packets pushed from now on (those in flight keep their times)."""
        self.spec = spec

    def set_outage(self, on: bool) -> None:
        """Cut (or restore) the link; cutting drops everything in flight."""
        self.outage = on
        if on:
            for _, _, packet in self._heap:
                self._drop("outage", packet)
            self._heap.clear()
            self._free_at = 0.0

    # -- packets

    def push(self, packet: bytes, now: float) -> float | str:
        """Take one packet at ``now``: the time it will be due, or the reason it was dropped."""
        counters = self.counters
        counters.received_packets += 1
        counters.received_bytes += len(packet)
        if not self.filter.passes(packet, self.direction):
            return self._drop("filter", packet)
        if self.outage:
            return self._drop("outage", packet)
        spec = self.spec
        leaves = now
        if spec.rate_kbps is not None:
            start = max(now, self._free_at)
            transmission = len(packet) * 8 / (spec.rate_kbps * 1000)
            if (start - now) + transmission > spec.queue_ms / 1000 + 1e-9:  # a full queue, not float noise
                return self._drop("queue", packet)
            self._free_at = leaves = start + transmission
        if spec.loss and self._rng.random() < spec.loss:
            return self._drop("loss", packet)
        arrives = leaves + spec.delay_ms / 1000
        if spec.jitter_ms:
            arrives += self._rng.uniform(0, spec.jitter_ms / 1000)
        arrives = max(arrives, self._last_arrival)
        self._last_arrival = arrives
        self._seq += 1
        heapq.heappush(self._heap, (arrives, self._seq, packet))
        return arrives

    def due(self, now: float) -> list[bytes]:
        """Every packet due at ``now``, in order; they count as forwarded."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            packet = heapq.heappop(heap)[2]
            out.append(packet)
        if out:
            self.counters.forwarded_packets += len(out)
            self.counters.forwarded_bytes += sum(len(p) for p in out)
        return out

    def next_deadline(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    @property
    def pending(self) -> int:
        return len(self._heap)

    def stats(self) -> dict[str, Any]:
        return {**self.counters.to_json(self.pending), "spec": self.spec.to_json(), "outage": self.outage}

    def _drop(self, reason: str, packet: bytes) -> str:
        self.counters.dropped[reason] += 1
        self.counters.dropped_bytes += len(packet)
        return reason
