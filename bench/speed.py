"""How fast this machine is right now: three fixed probes, recorded with every result.

The same CPU model has measured 1.6× apart on different days here (``bench.ingest`` at 303
publishers: 52 % of a core one evening, 84 % the next morning, the load generators slower by
the same factor), so a figure from one run is only comparable with another's once both say
how fast their machine was. Each probe is the median of five short repeats:

- ``python_ns``: one iteration of a fixed pure-Python loop shaped like the hub's per-packet
  work (a struct pack, a dict lookup, attribute and integer arithmetic): the interpreter's
  speed, which most of the hub's CPU figures scale with;
- ``udp_ns``: one 1,200-byte datagram sent to and read back from a loopback socket in this
  process (no other process woken): the kernel's path for a packet;
- ``wakeup_us``: the CPU one sleep-and-wake of this process costs (``select`` with a 1 ms
  timeout, CPU time not wall time): what one publisher's figures are made of, ≈ 17 wake-ups a
  second (docs/benchmarks.md section 4).

    python -m bench.speed          # print them (≈ 2 s)
"""

from __future__ import annotations

import select
import socket
import statistics
import struct
import time

REPEATS = 5
PYTHON_LOOPS = 100_000
DATAGRAMS = 1_000
WAKEUPS = 200
_HEADER = struct.Struct("!BBHII")


class _Packet:
    __slots__ = ("seq", "ts")

    def __init__(self) -> None:
        self.seq = 0
        self.ts = 0


def python_ns(loops: int = PYTHON_LOOPS) -> float:
    """ns per iteration of the fixed Python loop."""
    ssrcs = {i: i * 7919 for i in range(64)}
    packet = _Packet()
    pack = _HEADER.pack
    size = 0
    started = time.perf_counter_ns()
    for i in range(loops):
        packet.seq = (packet.seq + 1) & 0xFFFF
        packet.ts = (packet.ts + 6000) & 0xFFFFFFFF
        size += len(pack(0x80, 96, packet.seq, packet.ts, ssrcs[i & 63]))
    elapsed = time.perf_counter_ns() - started
    assert size == 12 * loops
    return elapsed / loops


def udp_ns(datagrams: int = DATAGRAMS) -> float:
    """ns per datagram sent to and received from a loopback socket of this process."""
    payload = bytes(1200)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        address = sock.getsockname()
        started = time.perf_counter_ns()
        for _ in range(datagrams):
            sock.sendto(payload, address)
            sock.recvfrom(2048)
        return (time.perf_counter_ns() - started) / datagrams


def wakeup_us(wakeups: int = WAKEUPS) -> float:
    """CPU µs per sleep-and-wake of this process (1 ms ``select`` timeouts)."""
    started = time.process_time_ns()
    for _ in range(wakeups):
        select.select([], [], [], 0.001)
    return (time.process_time_ns() - started) / wakeups / 1000


def probe(repeats: int = REPEATS) -> dict[str, float]:
    """The three probes, each the median of ``repeats`` runs (≈ 2 s in all)."""
    return {name: round(statistics.median(measure() for _ in range(repeats)), 1)
            for name, measure in (("python_ns", python_ns), ("udp_ns", udp_ns), ("wakeup_us", wakeup_us))}


if __name__ == "__main__":
    print(", ".join(f"{name}: {value}" for name, value in probe().items()))
