"""Rate limits for citizens' questions, with the clock passed in.

Theory of operation
-------------------
:class:`SlidingLimiter` allows ``limit`` events per key in any ``window_s`` seconds: it keeps
the times of the last ``limit`` allowed events of each key, and a new one is allowed when the
oldest of them is at least ``window_s`` old. A refused event is not counted (a client that
keeps trying is not locked out longer), and the answer says when the next one would be
allowed, for ``Retry-After``. The service keeps one limiter per address, one per device and
one for votes; slow mode is a limiter of one event per ``seconds`` whose window the caller
passes per call, because operators change it while it runs.

:class:`UsedTokens` remembers proof-of-work tokens until they expire, so each is accepted once.

Both are bounded: past ``max_keys`` the entry touched longest ago is forgotten. For a limiter
that entry is the one most likely expired anyway; forgetting one early lets that key start
afresh, which is the cheaper failure than growing without bound under a flood of new keys.
These limits are per node; in a cluster a client spread over n nodes gets up to n times as
much, which the per-station ``max_pending`` and moderation bound.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class SlidingLimiter:
    def __init__(self, limit: int, window_s: float, max_keys: int = 100_000) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.window_s = window_s
        self.max_keys = max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, key: str, now: float, window_s: float | None = None, limit: int | None = None) -> float:
        """Seconds until ``key`` may act again; 0 when it may now (nothing is counted)."""
        window = self.window_s if window_s is None else window_s
        allowed = self.limit if limit is None else limit
        events = self._events.get(key)
        if not events or len(events) < allowed:
            return 0.0
        wait = events[-allowed] + window - now
        return wait if wait > 0 else 0.0

    def hit(self, key: str, now: float, window_s: float | None = None) -> float:
        """Count an event of ``key`` at ``now`` if allowed and return 0; else return the
        seconds until it would be (and count nothing)."""
        wait = self.retry_after(key, now, window_s)
        if wait > 0:
            return wait
        events = self._events.get(key)
        if events is None:
            events = self._events[key] = deque(maxlen=self.limit)
            while len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        events.append(now)
        return 0.0

    def __len__(self) -> int:
        return len(self._events)


class UsedTokens:
    """Proof tokens already accepted, each until its expiry."""

    def __init__(self, max_tokens: int = 200_000) -> None:
        self.max_tokens = max_tokens
        self._expiry: OrderedDict[str, float] = OrderedDict()

    def use(self, token: str, expires: float, now: float) -> bool:
        """Mark ``token`` used; False if it already was (and has not expired since)."""
        self._sweep(now)
        if token in self._expiry:
            return False
        self._expiry[token] = expires
        while len(self._expiry) > self.max_tokens:
            self._expiry.popitem(last=False)
        return True

    def _sweep(self, now: float) -> None:
        # Tokens are added in about expiry order (one ttl after issue), so the expired ones
        # are at the front; one that is not (a shorter ttl after a config change) waits a bit.
        while self._expiry:
            token, expires = next(iter(self._expiry.items()))
            if expires > now:
                break
            del self._expiry[token]

    def __len__(self) -> int:
        return len(self._expiry)
