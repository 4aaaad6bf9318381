"""Which host addresses ICE gathers on: the one reach into aioice that hub and agent share.

Seam 4 (the numbering of docs/media.md), pinned by ``tests/jaga/test_ice_hosts.py``:

4. ``announced_host_addresses``: aioice picks host candidates in the module function
   ``aioice.ice.get_host_addresses``, which ``Connection.gather_candidates`` calls by name
   (keywords ``use_ipv4``, ``use_ipv6``), and always leaves 127.0.0.1 out. A hub must
   choose the addresses it binds and announces (``media.host_addresses``), and so may a
   station (``network.host_addresses``: a PC with several interfaces, a test on loopback).

Scope: the patch is process-wide, the addresses are context-local. The first
``announced_host_addresses`` block wraps the module function, once per process; the
wrapper answers with the configured addresses only inside a block (a ``ContextVar``), and
in tasks created inside one, and everywhere else defers to the function it wrapped. So
two peer connections gathering at the same moment each get their own addresses, and a hub
and a station agent in one process (as in the tests) never see each other's. Outside every
block nothing in the process changes behaviour. Blocks nest: the innermost wins, and an
empty one hands the choice back to aioice.

Imports nothing but aioice and the standard library: the hub and the agent both use it.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence

import aioice.ice

__all__ = ["announced_host_addresses"]

HostAddresses = Callable[[bool, bool], list[str]]

_announced: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "jaga_announced_host_addresses", default=()
)


class _AnnouncedOrAioice:
    """Stands in for ``aioice.ice.get_host_addresses``: the announced addresses of the
    calling context (of the family asked for), or else what the wrapped function says."""

    def __init__(self, wrapped: HostAddresses) -> None:
        self.wrapped = wrapped

    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]:
        configured = _announced.get()
        if configured:
            return [a for a in configured if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]
        return self.wrapped(use_ipv4, use_ipv6)


def _install() -> None:
    current = aioice.ice.get_host_addresses
    if not isinstance(current, _AnnouncedOrAioice):
        aioice.ice.get_host_addresses = _AnnouncedOrAioice(current)


@contextlib.contextmanager
def announced_host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Inside this block, ICE gathering binds and announces exactly ``addresses``.

    Wrap ``setLocalDescription`` in it: aiortc gathers there, awaited in the caller's
    context. Empty ``addresses`` leaves aioice's own discovery in charge.
    """
    _install()
    token = _announced.set(tuple(addresses))
    try:
        yield
    finally:
        _announced.reset(token)
