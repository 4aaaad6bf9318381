"""Announced addresses apart from bound ones: a hub behind a 1:1 NAT (a cloud VM, the data
centre's firewall) binds its media sockets to a private address and must announce the public
one that the NAT maps to it (LiveKit's ``node_ip``, Janus's ``nat_1_1_mapping``).

:func:`announce_public` rewrites an SDP answer's host candidates (and the ``c=`` lines that
name the default candidate) from each bound address to its public one; ports stay, since a
1:1 NAT keeps them. Pure: tests call it directly, the relay applies it to every answer when
``media.public_addresses`` is set.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence


def public_mapping(bound: Sequence[str], public: Sequence[str]) -> dict[str, str]:
    """``media.host_addresses`` → ``media.public_addresses``: pairwise, or every bound
    address to the one public address. Raises ValueError for anything else."""
    if not public:
        return {}
    for address in public:
        ipaddress.ip_address(address)  # raises ValueError for a name or garbage
    if not bound:
        raise ValueError("media.public_addresses needs media.host_addresses: the addresses it replaces")
    if len(public) == 1:
        return {address: public[0] for address in bound}
    if len(public) != len(bound):
        raise ValueError("media.public_addresses: one address, or one per media.host_addresses entry")
    return dict(zip(bound, public, strict=True))


def announce_public(sdp: str, mapping: dict[str, str]) -> str:
    """``sdp`` with each mapped address replaced in host candidates and connection lines."""
    if not mapping:
        return sdp
    lines = sdp.split("\r\n")
    for index, line in enumerate(lines):
        if line.startswith("a=candidate:"):
            fields = line.split(" ")
            # foundation component transport priority address port "typ" type ...
            if len(fields) >= 8 and fields[7] == "host" and fields[4] in mapping:
                fields[4] = mapping[fields[4]]
                lines[index] = " ".join(fields)
        elif line.startswith("c=IN IP"):
            fields = line.split(" ")
            if len(fields) == 3 and fields[2] in mapping:
                fields[2] = mapping[fields[2]]
                lines[index] = " ".join(fields)
    return "\r\n".join(lines)
