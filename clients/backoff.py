"""Retry delays: capped exponential backoff with full jitter, as pure functions.

Theory of operation
-------------------
Attempt ``n`` (0 for the first try after start-up or after a loss) waits a delay drawn
uniformly from ``[0, min(cap, base * 2**n))`` ("full jitter", AWS architecture blog, 2015).
Jitter applies from the very first attempt: when a hub restarts, or a whole kabupaten's
office PCs boot at 07:55, every agent's first attempt lands somewhere in ``[0, base)``
instead of all at once. The window doubles per failure up to ``cap``.

A connection that stays up for ``stable_s`` resets the attempt counter; one that is
accepted and dropped at once does not, so a hub that accepts and crashes is not hammered.

A rejected token is not a network problem: retrying fast cannot fix it and only fills logs.
``auth_delay`` waits ``auth_retry_s`` (10 min by default), jittered over its upper half.

Nothing here reads a clock or a global random generator: callers pass ``random.Random``
(or anything with ``uniform``), so tests pin the numbers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


class Uniform(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


@dataclass(frozen=True)
class BackoffPolicy:
    base_s: float = 2.0  # the first attempt's window; hundreds of agents spread over it
    cap_s: float = 60.0  # the largest window
    stable_s: float = 30.0  # a connection up this long resets the attempt counter
    auth_retry_s: float = 600.0  # after a rejected token

    def window(self, attempt: int) -> float:
        """The upper bound of attempt ``attempt``'s delay (attempt 0 → ``base_s``)."""
        if attempt < 0:
            raise ValueError("attempt must be >= 0")
        # 2**64 is far past any cap; avoid float overflow on absurd attempt counts.
        return min(self.cap_s, self.base_s * 2.0 ** min(attempt, 64))

    def delay(self, attempt: int, rng: Uniform) -> float:
        return rng.uniform(0.0, self.window(attempt))

    def auth_delay(self, rng: Uniform) -> float:
        return rng.uniform(self.auth_retry_s / 2, self.auth_retry_s)

    def after_connection(self, attempt: int, lasted_s: float) -> int:
        """The attempt number to use after a connection that lasted ``lasted_s`` ended."""
        return 0 if lasted_s >= self.stable_s else attempt + 1


def retry_after_delay(retry_after_s: float, policy: BackoffPolicy, rng: Uniform) -> float:
    """A server's ``Retry-After`` (429/503), jittered upward so a refused crowd stays spread."""
    retry_after_s = max(0.0, retry_after_s)
    return retry_after_s + rng.uniform(0.0, max(policy.base_s, retry_after_s / 2))
