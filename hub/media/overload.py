"""New public viewers turned away while the hub drops its own media (load shedding), and
their joins spaced out so a crowd arriving at once does not make it drop (join pacing).

When the one media socket's receive buffer overflows, the event loop is not keeping up with
what it already carries: every datagram the kernel drops there is lost for a publisher —
whose presence is the public record — and for all of that publisher's viewers. A new
viewer adds a DTLS handshake at once and about 0.1 % of a core for as long as it watches
(docs/benchmarks.md section 3). In the Jember-day benchmark, viewers that joined again as
soon as a saturated hub had closed their session (as the portal's player does) kept it
saturated: ≈ 200 joins a minute, half the publishers' frames lost at the socket (the
benchmark page's tenth step).

So once the socket has dropped datagrams in ``SUSTAINED_LOOKS`` (3) one-second looks in a row
(an overload that lasts, not the burst of one stall, which a new viewer did not cause and
for which it would wait 30 s or go to HLS), and then for ``hold_s`` after the last drop, the
relay refuses new *public* viewers with 503 ``overloaded`` and ``Retry-After``; the portal then
plays the station over HLS through the cache where the station sends H.264, or tries again
later. Operators (the Pendopo's wall) and stations listening to the talk-back are always let
in, and no open session is touched. ``hold_s`` = 0 turns it off. Plain logic: the relay
reports the drops once a second and asks per offer, both with the time.

A join costs the hub ≈ 11 ms of CPU one at a time (the offer, ICE, the DTLS handshake, the
first picture; docs/benchmarks.md section 2), less in a crowd. 300 viewers opening stations at
once (a link shared in a group chat, the pages back after a restart) asked for seconds of it
within a few seconds, beside 303 publishers that already took most of a core: the socket's
backlog outgrew its buffer (8 MiB, ≈ 0.4 s of those publishers) and the shedding turned most
of the crowd away for minutes (docs/benchmarks.md, "A Jember day", tenth and eleventh steps).
So public joins get turns, at most ``per_s`` a second: an offer waits for its turn (its
answer comes that much later) as long as that is at most ``max_wait_s``; past that the queue
is full and the viewer is told when to come back. Operators, talk-back listeners and
publishers never wait for a turn.
"""

from __future__ import annotations

# one-second looks in a row with drops before new viewers are refused: a burst (1,000 watchers
# connecting at once, a collection) spans two looks when it straddles one (docs/benchmarks.md,
# "A Jember day", eleventh step)
SUSTAINED_LOOKS = 3


class ViewerShedding:
    """Whether new public viewers are refused now, from the media socket's drops."""

    __slots__ = ("hold_s", "_until", "_looks_dropping")

    def __init__(self, hold_s: float) -> None:
        self.hold_s = hold_s
        self._until = float("-inf")
        self._looks_dropping = 0  # looks in a row that saw drops

    def note(self, dropping: bool, now: float) -> None:
        """Once a second: did the socket drop datagrams since the last look?"""
        self._looks_dropping = self._looks_dropping + 1 if dropping else 0
        if self._looks_dropping >= SUSTAINED_LOOKS or (dropping and self.refusing(now)):
            self._until = now + self.hold_s

    def refusing(self, now: float) -> bool:
        return self.hold_s > 0 and now < self._until

    def retry_after_s(self, now: float) -> float:
        """What a refused viewer is told to wait: the rest of the hold, at least a second."""
        return max(1.0, self._until - now)


class JoinPacer:
    """Turns for new public viewers' joins, ``per_s`` a second at most; ``per_s`` = 0: no pacing."""

    __slots__ = ("per_s", "max_wait_s", "_next_turn")

    def __init__(self, per_s: float, max_wait_s: float) -> None:
        self.per_s = per_s
        self.max_wait_s = max_wait_s
        self._next_turn = float("-inf")  # the earliest a join not yet given a turn may go

    def turn(self, now: float) -> float | None:
        """Give a join the next free turn: how long it waits for it (0: go now), or None when
        that would be over ``max_wait_s`` (no turn given: refuse it)."""
        if self.per_s <= 0:
            return 0.0
        turn = max(now, self._next_turn)
        if turn - now > self.max_wait_s:
            return None
        self._next_turn = turn + 1.0 / self.per_s
        return turn - now

    def retry_after_s(self, now: float) -> float:
        """What a join refused for a full queue is told to wait: until a join would get a turn
        within ``max_wait_s`` again, at least a second."""
        return max(1.0, self._next_turn - self.max_wait_s - now)
