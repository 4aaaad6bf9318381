"""A token bucket with the clock passed in: how many messages a socket may send.

A bucket holds up to ``burst`` tokens and gains ``rate`` a second; each message takes one, and
a message that finds less than one is refused (the caller closes the socket). A station's
``/ws/station`` and a watcher's ``/ws/watch`` each get one (``presence.max_messages_per_s`` /
``burst``, ``presence.watch_messages_per_s`` / ``watch_burst``), starting full.
"""

from __future__ import annotations

__all__ = ["TokenBucket"]


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, tokens: float = 0.0, stamp: float = 0.0) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = tokens
        self.stamp = stamp

    def take(self, now: float) -> bool:
        """One message at ``now`` (seconds, the same clock as ``stamp``): True if allowed."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
