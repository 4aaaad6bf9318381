"""New public viewers turned away while the hub drops its own media (load shedding).

When the one media socket's receive buffer overflows, the event loop is not keeping up with
what it already carries: every datagram the kernel drops there is lost for a publisher —
whose presence is the public record — and for all of that publisher's viewers. A new
viewer adds a DTLS handshake at once and about 0.1 % of a core for as long as it watches
(docs/benchmarks.md section 3). In the Jember-day benchmark, viewers that joined again as
soon as a saturated hub had closed their session (as the portal's player does) kept it
saturated: ≈ 200 joins a minute, half the publishers' frames lost at the socket (the
benchmark page's tenth step).

So for ``hold_s`` after the last drop the relay refuses new *public* viewers with 503
``overloaded`` and ``Retry-After``; the portal then plays the station over HLS through the
cache where the station sends H.264, or tries again later. Operators (the Pendopo's wall)
and stations listening to the talk-back are always let in, and no open session is touched.
``hold_s`` = 0 turns it off. Plain logic: the relay reports the drops once a second and asks
per offer, both with the time.
"""

from __future__ import annotations


class ViewerShedding:
    """Whether new public viewers are refused now, from the media socket's drops."""

    __slots__ = ("hold_s", "_until")

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._until = float("-inf")

    def note(self, dropping: bool, now: float) -> None:
        """Once a second: did the socket drop datagrams since the last look?"""
        if dropping:
            self._until = now + self.hold_s

    def refusing(self, now: float) -> bool:
        return self.hold_s > 0 and now < self._until

    def retry_after_s(self, now: float) -> float:
        """What a refused viewer is told to wait: the rest of the hold, at least a second."""
        return max(1.0, self._until - now)
