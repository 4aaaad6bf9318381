"""What a station keeps of its source's recent RTP packets: enough to answer viewers' NACKs.

Theory of operation. Packets are stored once per station (not per viewer) by the
*publisher's* sequence number, in a ring indexed by its low bits; an entry is only returned
for exactly the sequence number asked for, so a slot overwritten by a newer packet (or a
packet never received) is simply a miss. A viewer's NACK names the viewer's own sequence
numbers; ``ViewerEgress`` maps them back with its offset and resends the cached payload
with its own header (as RTX). The ring also tells the forwarder that a packet was already
forwarded (a late duplicate, or a publisher retransmission racing the original), which
must not be sent to viewers twice.

The cache is emptied when the station's source changes: another publisher's sequence
numbers mean other packets.
"""

from __future__ import annotations

# Video at ~54 packets/s (500 kbps) keeps ~4.7 s; at 2 Mbps ~1.2 s. A NACK is only useful
# within a round trip or two, and 256 × ~1.1 KB is ~280 KB per station.
CACHE_PACKETS = 256

CachedPacket = tuple[int, int, int, bytes]  # (sequence number, timestamp, marker, payload)


class PacketCache:
    __slots__ = ("_mask", "_slots")

    def __init__(self, size: int = CACHE_PACKETS) -> None:
        if size & (size - 1):
            raise ValueError("cache size must be a power of two")
        self._mask = size - 1
        self._slots: list[CachedPacket | None] = [None] * size

    def put(self, seq: int, ts: int, marker: int, payload: bytes) -> bool:
        """Store a packet; False (and nothing stored) if it is already there (a duplicate)."""
        index = seq & self._mask
        held = self._slots[index]
        if held is not None and held[0] == seq:
            return False
        self._slots[index] = (seq, ts, marker, payload)
        return True

    @property
    def size(self) -> int:
        return self._mask + 1

    def get(self, seq: int) -> CachedPacket | None:
        held = self._slots[seq & self._mask]
        return held if held is not None and held[0] == seq else None

    def clear(self) -> None:
        self._slots = [None] * len(self._slots)
