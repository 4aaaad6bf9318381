"""The benchmark viewers wait after a refusal as the portal's player does (``watch.js``, a VP8
station: no HLS to fall back to), so a Jember day's crowd returns when real pages would."""

from __future__ import annotations

from bench.loadgen import BUSY_JITTER_S, FULL_RETRY_S, WhepRefused

BUSY = '{"error":{"code":"busy","message":"too many viewers are joining at once: try again shortly"}}'
FULL = '{"error":{"code":"station_full","message":"station 35.09.01 has its maximum of viewers"}}'


def test_a_busy_refusal_is_tried_again_after_retry_after_and_a_random_part() -> None:
    waits = [WhepRefused(503, BUSY, 7.0).wait_s for _ in range(200)]
    assert all(7.0 <= wait <= 7.0 + BUSY_JITTER_S for wait in waits)
    assert max(waits) - min(waits) > BUSY_JITTER_S / 2  # spread, not one instant for the crowd


def test_other_refusals_wait_the_full_retry_or_retry_after_if_longer() -> None:
    assert WhepRefused(503, FULL, 30.0).wait_s == FULL_RETRY_S
    assert WhepRefused(503, FULL, 45.0).wait_s == 45.0
    assert WhepRefused(429, '{"error":{"code":"rate_limited","message":"…"}}', 5.0).wait_s == FULL_RETRY_S
