"""How many ``/ws/watch`` sockets one node holds, in all and per client address.

Theory of operation
-------------------
A watch socket costs the node a snapshot (tens of KB for a kabupaten) and a share of every
event's fan-out, and asks nothing of its client. Without a cap, one address opening sockets
in a loop would grow the node's memory and the fan-out until the wall lags. So the node keeps
``open[address]`` and their sum, and a new socket is admitted only while

    sum(open) < max_total   and   open[address] < per_address

A refused socket changes nothing; an admitted one must be released exactly once when it
ends. The per-address cap is per node, on the address :mod:`hub.core.proxies` chose (behind
a trusted proxy, the real client). Mobile carriers put many phones behind one address (CGNAT),
so the per-address cap is set well above one household's tabs, far below a node's total.
Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import Counter
from enum import Enum


class Refusal(Enum):
    NODE_FULL = "node_full"
    ADDRESS_FULL = "address_full"


class WatchAdmission:
    def __init__(self, max_total: int, per_address: int) -> None:
        self.max_total = max_total
        self.per_address = per_address
        self.open: Counter[str] = Counter()
        self.total = 0

    def admit(self, address: str) -> Refusal | None:
        """Count a new socket from ``address``; None when admitted (then :meth:`release` it
        when it ends), else why it is refused (nothing counted)."""
        if self.total >= self.max_total:
            return Refusal.NODE_FULL
        if self.open[address] >= self.per_address:
            return Refusal.ADDRESS_FULL
        self.open[address] += 1
        self.total += 1
        return None

    def release(self, address: str) -> None:
        """Forget one admitted socket from ``address``."""
        if self.open[address] <= 1:
            self.open.pop(address, None)
        else:
            self.open[address] -= 1
        self.total -= 1
