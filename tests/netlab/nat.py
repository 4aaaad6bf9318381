"""1:1 NAT for the lab: rewrite IPv4 addresses and fix the checksums, as pure functions.

A :class:`Nat` holds two one-to-one maps:

- ``inside``: an address in the namespace → the address the host side sees instead (a station
  behind a NAT: the hub sees its packets come from the public address);
- ``outside``: an address on the host → the address the namespace sees instead (a hub behind a
  1:1 NAT, a cloud VM's public address: the namespace sends to the public one).

Up (namespace → host): the source is mapped with ``inside``, the destination with the reverse
of ``outside``. Down (host → namespace): the source with ``outside``, the destination with the
reverse of ``inside``. Addresses in no map pass unchanged.

Checksums are updated incrementally (RFC 1624, eqn. 3): the IPv4 header checksum, and for the
first fragment of TCP and UDP the transport checksum, which covers the pseudo-header with both
addresses. A UDP checksum of 0 (none) stays 0. ICMP's checksum does not cover the addresses;
the IP header quoted inside an ICMP error is *not* rewritten (nothing here needs it). IPv6
passes untouched.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

TCP, UDP = 6, 17


def _packed(address: str) -> bytes:
    return ipaddress.IPv4Address(address).packed


class Nat:
    def __init__(self, inside: Mapping[str, str] | None = None, outside: Mapping[str, str] | None = None) -> None:
        self.inside = dict(inside or {})
        self.outside = dict(outside or {})
        inside_map = {_packed(k): _packed(v) for k, v in self.inside.items()}
        outside_map = {_packed(k): _packed(v) for k, v in self.outside.items()}
        for name, given, table in (("inside", self.inside, inside_map), ("outside", self.outside, outside_map)):
            if len(set(table.values())) != len(table):
                raise ValueError(f"the {name} NAT map is not one-to-one: {given}")
        self._up = (inside_map, {v: k for k, v in outside_map.items()})
        self._down = (outside_map, {v: k for k, v in inside_map.items()})

    def up(self, packet: bytes) -> bytes:
        """A packet from the namespace, as the host side receives it."""
        return rewrite(packet, *self._up)

    def down(self, packet: bytes) -> bytes:
        """A packet from the host side, as the namespace receives it."""
        return rewrite(packet, *self._down)

    def to_json(self) -> dict[str, dict[str, str]]:
        return {"inside": self.inside, "outside": self.outside}


def rewrite(packet: bytes, sources: Mapping[bytes, bytes], destinations: Mapping[bytes, bytes]) -> bytes:
    """``packet`` with its IPv4 source and destination mapped (4-byte packed addresses), every
    checksum that covers them adjusted. Anything else is returned as it came."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return packet
    old_src, old_dst = packet[12:16], packet[16:20]
    new_src, new_dst = sources.get(old_src, old_src), destinations.get(old_dst, old_dst)
    if new_src == old_src and new_dst == old_dst:
        return packet
    old, new = old_src + old_dst, new_src + new_dst
    out = bytearray(packet)
    out[12:20] = new
    out[10:12] = adjust_checksum(int.from_bytes(packet[10:12], "big"), old, new).to_bytes(2, "big")
    ihl = (packet[0] & 0x0F) * 4
    first_fragment = (int.from_bytes(packet[6:8], "big") & 0x1FFF) == 0
    proto = packet[9]
    if first_fragment and proto in (TCP, UDP):
        at = ihl + (16 if proto == TCP else 6)
        if len(packet) >= at + 2:
            checksum = int.from_bytes(packet[at:at + 2], "big")
            if not (proto == UDP and checksum == 0):  # UDP over IPv4 may carry no checksum
                fixed = adjust_checksum(checksum, old, new)
                if proto == UDP and fixed == 0:
                    fixed = 0xFFFF  # 0 would mean "no checksum"; 0xFFFF is the same sum
                out[at:at + 2] = fixed.to_bytes(2, "big")
    return bytes(out)


def adjust_checksum(checksum: int, old: bytes, new: bytes) -> int:
    """An Internet checksum after the bytes ``old`` it covers became ``new`` (same even length):
    ``HC' = ~(~HC + ~m + m')`` (RFC 1624, eqn. 3)."""
    total = ~checksum & 0xFFFF
    for i in range(0, len(old), 2):
        total += (~int.from_bytes(old[i:i + 2], "big") & 0xFFFF) + int.from_bytes(new[i:i + 2], "big")
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def internet_checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of ``data``, computed from scratch."""
    if len(data) % 2:
        data += b"\0"
    total = sum(int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
