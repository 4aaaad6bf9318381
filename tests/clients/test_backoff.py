"""Backoff and jitter as pure functions (clients/backoff.py, clients/presence.next_delay)."""

from __future__ import annotations

import random

import pytest

from clients.backoff import BackoffPolicy, retry_after_delay
from clients.presence import Outcome, classify, next_delay


class Fixed:
    """A fake RNG: always the same fraction of the interval."""

    def __init__(self, fraction: float) -> None:
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


POLICY = BackoffPolicy(base_s=2.0, cap_s=60.0, stable_s=30.0, auth_retry_s=600.0)


def test_windows_double_from_base_and_stop_at_cap() -> None:
    assert [POLICY.window(n) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert POLICY.window(10_000) == 60  # no overflow on absurd counts
    with pytest.raises(ValueError):
        POLICY.window(-1)


def test_full_jitter_covers_zero_to_window_even_on_first_attempt() -> None:
    assert POLICY.delay(0, Fixed(0.0)) == 0.0
    assert POLICY.delay(0, Fixed(1.0)) == 2.0
    assert POLICY.delay(3, Fixed(0.5)) == 8.0
    rng = random.Random(7)
    first = [POLICY.delay(0, rng) for _ in range(1000)]
    assert 0 <= min(first) < 0.05 and 1.95 < max(first) <= 2.0  # spread over the whole window


def test_token_rejection_waits_long() -> None:
    assert POLICY.auth_delay(Fixed(0.0)) == 300.0
    assert POLICY.auth_delay(Fixed(1.0)) == 600.0
    delay, attempt = next_delay(classify(4401, "bad token", 0.0), 0, POLICY, Fixed(0.0))
    assert delay >= 300.0 and attempt == 1


def test_attempts_reset_only_after_a_stable_connection() -> None:
    assert POLICY.after_connection(4, lasted_s=31.0) == 0
    assert POLICY.after_connection(4, lasted_s=0.5) == 5  # accepted then dropped: keep backing off
    lost_fast = Outcome("lost", "x", lasted_s=0.5)
    assert next_delay(lost_fast, 4, POLICY, Fixed(1.0)) == (60.0, 5)
    lost_late = Outcome("lost", "x", lasted_s=100.0)
    assert next_delay(lost_late, 4, POLICY, Fixed(1.0)) == (2.0, 0)


def test_hub_restart_reconnects_from_the_first_window_jittered() -> None:
    assert classify(1001, "", 5.0).kind == "restart"  # "going away": an older hub, or a proxy
    outcome = classify(1012, "", 5.0)  # "service restart": what `jaga-hub serve` sends when it stops
    assert outcome.kind == "restart"
    assert next_delay(outcome, 6, POLICY, Fixed(1.0)) == (2.0, 1)
    assert next_delay(outcome, 6, POLICY, Fixed(0.25)) == (0.5, 1)


def test_close_codes_are_classified() -> None:
    assert classify(4409, "", 1).kind == "replaced"
    assert classify(4400, "", 1).kind == "protocol"
    assert classify(None, "", 1).kind == "lost"
    assert classify(4408, "heartbeat timeout", 1).kind == "lost"


def test_retry_after_is_honoured_and_spread() -> None:
    assert retry_after_delay(30, POLICY, Fixed(0.0)) == 30.0
    assert retry_after_delay(30, POLICY, Fixed(1.0)) == 45.0
    assert retry_after_delay(-5, POLICY, Fixed(0.0)) == 0.0
