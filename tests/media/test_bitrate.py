"""The faster bandwidth-estimate steps give exactly what aiortc's own give."""

from __future__ import annotations

from aiortc.rate import OveruseEstimator, RateCounter
from hypothesis import given
from hypothesis import strategies as st

from hub.media.bitrate import WindowRate, min_frame_period

# (milliseconds since the previous call, payload size, whether to read the rate before adding)
CALLS = st.lists(st.tuples(st.integers(0, 1500), st.integers(0, 1500), st.booleans()), max_size=300)


@given(CALLS, st.sampled_from([10, 1000]))
def test_window_rate_matches_aiortcs_rate_counter(calls: list[tuple[int, int, bool]], window_ms: int) -> None:
    theirs, ours = RateCounter(window_ms, 8000), WindowRate(window_ms, 8000)
    now = 1_000_000
    for step, size, read_first in calls:
        now += step
        if read_first:
            assert ours.rate(now) == theirs.rate(now)
        ours.add(size, now)
        theirs.add(size, now)
        assert ours.rate(now) == theirs.rate(now)
        if size == 7:  # what the estimator does when the rate lapses
            ours.reset()
            theirs.reset()


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False), max_size=200))
def test_min_frame_period_matches_aiortcs(deltas: list[float]) -> None:
    theirs = OveruseEstimator()
    history: list[float] = []
    for delta in deltas:
        assert min_frame_period(history, delta) == theirs.update_min_frame_period(delta)
    assert history == theirs.ts_delta_hist
