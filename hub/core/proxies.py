"""Who the client is behind reverse proxies: the address rate limits, caps and the audit key on.

Theory of operation
-------------------
A request's direct peer is whoever opened the TCP connection. Behind a reverse proxy that is
the proxy, for every client, so per-address limits would cap the whole site at once and one
attacker's wrong passwords would lock every operator out. The proxy says who its client was
by appending that address to ``X-Forwarded-For``; each proxy in a chain appends the address
of the one before it. Only the entries that *our* proxies appended can be believed: anything
to their left was written by the client, who may write anything.

So, with ``T`` the set of trusted proxies (``hub.trusted_proxies``):

* the direct peer is not in ``T`` → the client is the direct peer; the header is ignored;
* otherwise walk ``X-Forwarded-For`` from the right, skipping addresses in ``T``; the first
  one that is not in ``T`` is the client (the address our outermost proxy saw);
* every entry in ``T`` (or no header) → the left-most trusted hop we reached (a request made by
  a proxy itself, e.g. its health check);
* an entry that is not an IP address (only a trusted proxy can have written it, since we stop
  at the first untrusted entry) → the hop that wrote it: stricter limits, never a name an
  attacker chose.

The same rule, with ``X-Forwarded-Proto``, gives the scheme the client used (the right-most
value, when the direct peer is trusted). Pure: no I/O, no ASGI; :mod:`hub.routes.proxies`
applies it to each request once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address as proxies write it (``1.2.3.4``, ``1.2.3.4:5678``, ``[2001:db8::1]:443``,
    ``2001:db8::1``), or None when it is not one."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # IPv4 with a port; a bare IPv6 address has several colons
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1 (dual-stack sockets)
    return address


def forwarded_for(values: Iterable[str]) -> list[str]:
    """Every ``X-Forwarded-For`` entry, left to right, from all of the header's lines."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


class TrustedProxies:
    """The addresses and networks whose ``X-Forwarded-*`` headers are believed."""

    def __init__(self, entries: Iterable[str]) -> None:
        """``entries``: addresses or CIDR networks; raises ValueError naming a bad one."""
        networks: list[Network] = []
        for entry in entries:
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: str) -> bool:
        parsed = parse_address(address)
        return parsed is not None and any(parsed in network for network in self.networks)

    def client_address(self, peer: str, forwarded: Sequence[str]) -> str:
        """The client's address, given the direct ``peer`` and the ``X-Forwarded-For``
        entries (left to right, see :func:`forwarded_for`)."""
        if not self.trusts(peer):
            return peer
        hop = peer
        for entry in reversed(forwarded):
            parsed = parse_address(entry)
            if parsed is None:
                return hop  # garbage from a trusted hop: charge the hop, not a chosen name
            if not any(parsed in network for network in self.networks):
                return str(parsed)
            hop = str(parsed)
        return hop

    def scheme(self, peer: str, forwarded_proto: Sequence[str], scheme: str) -> str:
        """The scheme (``http``/``https``) the client used: ``X-Forwarded-Proto``'s right-most
        value from a trusted peer, else the connection's own ``scheme``."""
        if not forwarded_proto or not self.trusts(peer):
            return scheme
        claimed = forwarded_proto[-1].strip().lower()
        return claimed if claimed in ("http", "https") else scheme
