"""The Jember-day benchmark's reading of the hub's socket drops (``bench.jember_day.drop_runs``):
the seconds that dropped in a window and the longest run of them, as the hub's shedding
counts them (``hub.media.overload.SUSTAINED_LOOKS``)."""

from __future__ import annotations

from bench.jember_day import drop_runs

# once a second: (time, drops so far); drops in the seconds ending at 2, 3, 6, 7, 8
SAMPLES = [(1.0, 0), (2.0, 5), (3.0, 9), (4.0, 9), (5.0, 9), (6.0, 12), (7.0, 20), (8.0, 21), (9.0, 21)]


def test_seconds_with_drops_and_the_longest_run_of_them() -> None:
    assert drop_runs(SAMPLES, 0.0, 10.0) == {"seconds": 5, "longest_run": 3}


def test_only_the_window_counts() -> None:
    assert drop_runs(SAMPLES, 1.0, 5.0) == {"seconds": 2, "longest_run": 2}
    assert drop_runs(SAMPLES, 3.0, 5.0) == {"seconds": 0, "longest_run": 0}
    assert drop_runs([], 0.0, 10.0) == {"seconds": 0, "longest_run": 0}
