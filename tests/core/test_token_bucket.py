"""``hub.core.token_bucket``: a socket's message allowance, on an injected clock."""

from __future__ import annotations

from hub.core.token_bucket import TokenBucket


def test_a_full_bucket_allows_its_burst_then_refuses() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, tokens=3.0, stamp=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_tokens_come_back_at_the_rate_and_never_past_the_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=3.0, tokens=0.0, stamp=0.0)
    assert not bucket.take(0.25)  # half a token
    assert bucket.take(0.5)  # one token after 0.5 s at 2/s
    assert not bucket.take(0.5)
    assert [bucket.take(60.0) for _ in range(4)] == [True, True, True, False]  # a minute idle: burst only


def test_a_refused_message_costs_nothing() -> None:
    bucket = TokenBucket(rate=1.0, burst=1.0, tokens=0.0, stamp=0.0)
    for at in (0.1, 0.2, 0.3, 0.9):
        assert not bucket.take(at)
    assert bucket.take(1.0)  # still one token a second, however often it was refused
