"""aiortc's receive-side bandwidth estimate, rewritten to cost less per packet.

aiortc's ``RemoteBitrateEstimator`` (the REMB a publisher's encoder adapts to) runs for
every video packet. :class:`RembEstimate` does its per-packet path inline (the incoming
rate in :class:`WindowRate`, one entry per millisecond instead of aiortc's bucket walk;
``InterArrival``'s packet groups) and hands each completed group (about one per frame) to
:class:`OveruseFilter`, aiortc's Kalman filter on plain floats, then to the estimator's own
overuse detector and rate control. They give the same answers for the same inputs
(``tests/media/test_bitrate.py`` checks them against aiortc's own on random packet
sequences, the filter to the bit); ``seams_ingest.ReceiverBookkeeping`` installs them. One
rule is libwebrtc's, not aiortc's: while overusing, the rate control is asked again only
when libwebrtc's would cut again (``RembEstimate._time_to_reduce_further``; the tests'
reference is aiortc's estimator with that rule). Costs: docs/benchmarks.md section 4.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

MIN_FRAME_PERIOD_HISTORY = 60  # aiortc.rate.MIN_FRAME_PERIOD_HISTORY_LENGTH
DELTA_COUNTER_MAX = 1000  # aiortc.rate.DELTA_COUNTER_MAX
# aiortc.rate.BandwidthUsage's values (an Enum there; pinned by tests/media/test_seams_ingest.py)
NORMAL, UNDERUSING, OVERUSING = 0, 1, 2
PROCESS_NOISE_SLOPE, PROCESS_NOISE_OFFSET = 1e-13, 1e-3  # OveruseEstimator.process_noise
# aiortc.rate's abs-send-time constants (pinned by tests/media/test_seams_ingest.py)
BURST_DELTA_THRESHOLD_MS = 5
INTER_ARRIVAL_SHIFT = 26
TIMESTAMP_GROUP_LENGTH = (5 << INTER_ARRIVAL_SHIFT) // 1000  # TIMESTAMP_GROUP_LENGTH_MS = 5
TIMESTAMP_TO_MS = 1000.0 / (1 << INTER_ARRIVAL_SHIFT)
UINT32 = 0xFFFFFFFF
HALF_UINT32 = 0x80000000
# libwebrtc's AimdRateControl: cut again while overusing after the RTT, clamped to these
MIN_REDUCE_INTERVAL_MS = 10
MAX_REDUCE_INTERVAL_MS = 200


class WindowRate:
    """The rate of what was added in the last ``window_ms`` milliseconds (times ``scale``).

    Same interface and results as ``aiortc.rate.RateCounter`` for arrival times that do not
    go backwards: one entry per millisecond that had values (a packet burst shares one),
    instead of one bucket per millisecond walked on every call. ``count`` is how aiortc's
    estimator adds a packet, in one call.
    """

    __slots__ = ("_entries", "_live", "_origin_ms", "_scale", "_total", "_window_ms")

    def __init__(self, window_ms: int, scale: int = 8000) -> None:
        self._window_ms = window_ms
        self._scale = scale
        self._live = True  # RemoteBitrateEstimator.incoming_bitrate_initialized
        self.reset()

    def reset(self) -> None:
        self._entries: deque[list[int]] = deque()  # [millisecond, sum of its values]
        self._origin_ms: int | None = None
        self._total = 0

    def add(self, value: int, now_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        self._append(value, now_ms)

    def count(self, value: int, now_ms: int) -> None:
        """``RemoteBitrateEstimator.add``'s steps on its counter: if there is no rate at
        ``now_ms`` (nothing left in the window) the first time since there was one, start
        again (``reset``); then ``add``."""
        origin = self._origin_ms
        if origin is not None:
            new_origin = now_ms - self._window_ms + 1
            if origin < new_origin:
                self._erase_old(now_ms)
                origin = new_origin
            if self._entries and now_ms > origin:  # a rate now (RateCounter.rate is not None)
                self._live = True
                self._append(value, now_ms)
                return
        if self._live:
            self.reset()
            self._live = False
        if self._origin_ms is None:
            self._origin_ms = now_ms
        self._append(value, now_ms)

    def rate(self, now_ms: int) -> int | None:
        if self._origin_ms is None:
            return None
        self._erase_old(now_ms)
        active_window_ms = now_ms - self._origin_ms + 1
        if self._entries and active_window_ms > 1:
            return round(self._scale * self._total / active_window_ms)
        return None

    def _append(self, value: int, now_ms: int) -> None:
        entries = self._entries
        if entries and entries[-1][0] == now_ms:
            entries[-1][1] += value
        else:
            entries.append([now_ms, value])
        self._total += value

    def _erase_old(self, now_ms: int) -> None:
        new_origin_ms = now_ms - self._window_ms + 1
        if self._origin_ms is not None and self._origin_ms < new_origin_ms:
            entries = self._entries
            while entries and entries[0][0] < new_origin_ms:
                self._total -= entries.popleft()[1]
            self._origin_ms = new_origin_ms


class OveruseFilter:
    """aiortc's ``OveruseEstimator`` (webrtc.org's Kalman filter of the delay between packet
    groups: its ``slope`` over size and its ``offset``, the queueing delay trend the detector
    judges), on plain float attributes.

    The same operations in the same order, so the same results to the bit
    (tests/media/test_bitrate.py), without the four lists and three method calls aiortc's
    ``update`` makes per packet group: at 303 publishers that update was 6 % of the hub's
    samples, the largest piece of the REMB estimate.
    """

    __slots__ = ("_smallest", "avg_noise", "e00", "e01", "e10", "e11", "history", "num_of_deltas", "offset",
                 "previous_offset", "slope", "var_noise")

    def __init__(self) -> None:
        self.e00, self.e01, self.e10, self.e11 = 100.0, 0.0, 0.0, 0.1  # OveruseEstimator.E
        self.num_of_deltas = 0
        self.offset = 0.0
        self.previous_offset = 0.0
        self.slope = 1 / 64
        self.history: list[float] = []  # OveruseEstimator.ts_delta_hist
        self._smallest = math.inf  # min(self.history)
        self.avg_noise = 0.0
        self.var_noise = 50.0

    def update(self, time_delta_ms: int, timestamp_delta_ms: float, size_delta: int, usage: int) -> None:
        """``OveruseEstimator.update``; ``usage`` is the detector's hypothesis (``NORMAL``,
        ``UNDERUSING`` or ``OVERUSING``)."""
        frame_period = self.min_frame_period(timestamp_delta_ms)
        t_ts_delta = time_delta_ms - timestamp_delta_ms
        self.num_of_deltas = num_of_deltas = min(self.num_of_deltas + 1, DELTA_COUNTER_MAX)
        e00 = self.e00 + PROCESS_NOISE_SLOPE
        e01, e10 = self.e01, self.e10
        e11 = self.e11 + PROCESS_NOISE_OFFSET
        offset = self.offset
        if (usage == OVERUSING and offset < self.previous_offset) or (
                usage == UNDERUSING and offset > self.previous_offset):
            e11 += 10 * PROCESS_NOISE_OFFSET
        # h = [size_delta, 1.0]: the products with 1.0 are left out (exact either way)
        eh0 = e00 * size_delta + e01
        eh1 = e10 * size_delta + e11
        residual = t_ts_delta - self.slope * size_delta - offset
        if usage == NORMAL:
            max_residual = 3.0 * math.sqrt(self.var_noise)
            if abs(residual) < max_residual:
                self._update_noise(residual, frame_period, num_of_deltas)
            else:
                self._update_noise(-max_residual if residual < 0 else max_residual, frame_period, num_of_deltas)
        denom = self.var_noise + size_delta * eh0 + eh1
        k0, k1 = eh0 / denom, eh1 / denom
        ikh00, ikh01 = 1.0 - k0 * size_delta, -k0
        ikh10, ikh11 = -k1 * size_delta, 1.0 - k1
        self.e00 = e00 * ikh00 + e10 * ikh01
        self.e01 = e01 * ikh00 + e11 * ikh01
        self.e10 = e00 * ikh10 + e10 * ikh11
        self.e11 = e01 * ikh10 + e11 * ikh11
        self.previous_offset = offset
        self.slope += k0 * residual
        self.offset = offset + k1 * residual

    def min_frame_period(self, ts_delta: float) -> float:
        """``OveruseEstimator.update_min_frame_period``: the smallest of ``ts_delta`` and the
        last 60 deltas, then ``ts_delta`` joins them. aiortc walks the 60 every time; the
        smallest is kept here and looked for again only when it leaves the window."""
        history = self.history
        if len(history) >= MIN_FRAME_PERIOD_HISTORY and history.pop(0) <= self._smallest:
            self._smallest = min(history, default=math.inf)
        smallest = self._smallest
        history.append(ts_delta)
        if ts_delta < smallest:
            self._smallest = ts_delta
            return ts_delta
        return smallest

    def _update_noise(self, residual: float, ts_delta: float, num_of_deltas: int) -> None:
        alpha = 0.002 if num_of_deltas > 10 * 30 else 0.01
        beta = pow(1 - alpha, ts_delta * 30.0 / 1000.0)
        self.avg_noise = avg_noise = beta * self.avg_noise + (1 - beta) * residual
        var_noise = beta * self.var_noise + (1 - beta) * (avg_noise - residual) ** 2
        self.var_noise = 1.0 if var_noise < 1 else var_noise


class RembEstimate:
    """``RemoteBitrateEstimator.add`` for one estimator, with the same results but for
    libwebrtc's rule while overusing (``_time_to_reduce_further``).

    Per packet: the SSRC noted, the incoming rate counted, and the packet added to the
    current group of packets sent together (``InterArrival.compute_deltas``'s rules: a burst,
    or within 5 ms of send time of the group's first). When a packet opens a new group, the
    two groups before it give one delta to :class:`OveruseFilter` (in place of the estimator's
    own ``OveruseEstimator``) and the estimator's ``OveruseDetector``; at most every
    ``feedback_interval`` (or while overusing, when libwebrtc would cut again) its
    ``AimdRateControl`` gives the target bitrate.
    ``estimator`` is the aiortc object whose parts this drives (its ``add``,
    ``inter_arrival`` and ``estimator`` are no longer used); ``overusing`` is aiortc's
    ``BandwidthUsage.OVERUSING``.
    """

    __slots__ = ("_detector", "_feedback_ms", "_group", "_incoming", "_last_update_ms",
                 "overuse", "_overusing", "_previous", "_rate_control", "_ssrcs")

    def __init__(self, estimator: Any, overusing: object) -> None:
        self.overuse = OveruseFilter()  # in place of the estimator's own (estimator.estimator)
        self._detector = estimator.detector
        self._rate_control = estimator.rate_control
        self._ssrcs: dict[int, int] = estimator.ssrcs
        self._overusing = overusing
        self._feedback_ms: int = estimator.rate_control.feedback_interval()
        self._incoming = WindowRate(1000, 8000)
        self._last_update_ms: int | None = None
        # [first timestamp, last timestamp, size, arrival ms] of the current and previous group
        self._group: list[Any] | None = None
        self._previous: list[Any] | None = None

    def add(self, arrival_time_ms: int, abs_send_time: int, payload_size: int,
            ssrc: int) -> tuple[int, list[int]] | None:
        timestamp = abs_send_time << 8
        self._ssrcs[ssrc] = arrival_time_ms
        self._incoming.count(payload_size, arrival_time_ms)

        group = self._group
        if group is None:
            group = self._group = [timestamp, timestamp, 0, None]
        elif (timestamp - group[0]) & UINT32 >= HALF_UINT32:
            return self._maybe_update(arrival_time_ms)  # out of order: not counted in any group
        else:
            since_last = (timestamp - group[1]) & UINT32
            since_last_ms = round(TIMESTAMP_TO_MS * since_last)
            arrival_delta_ms = arrival_time_ms - group[3]
            in_burst = since_last_ms == 0 or (arrival_delta_ms - since_last_ms < 0
                                              and arrival_delta_ms <= BURST_DELTA_THRESHOLD_MS)
            if not in_burst and (timestamp - group[0]) & UINT32 > TIMESTAMP_GROUP_LENGTH:
                previous = self._previous
                if previous is not None:
                    self._on_group_delta((group[1] - previous[1]) & UINT32, group[3] - previous[3],
                                         group[2] - previous[2], arrival_time_ms)
                self._previous = group
                group = self._group = [timestamp, timestamp, 0, None]
            elif 0 < since_last < HALF_UINT32:  # uint32_gt(timestamp, last)
                group[1] = timestamp
        group[2] += payload_size
        group[3] = arrival_time_ms
        return self._maybe_update(arrival_time_ms)

    def incoming_rate(self, now_ms: int) -> int | None:
        """The received bits per second the rate control is given."""
        return self._incoming.rate(now_ms)

    def _on_group_delta(self, timestamp_delta: int, arrival_delta_ms: int, size_delta: int, now_ms: int) -> None:
        timestamp_delta_ms = timestamp_delta * TIMESTAMP_TO_MS
        overuse, detector = self.overuse, self._detector
        overuse.update(arrival_delta_ms, timestamp_delta_ms, size_delta, detector.hypothesis.value)
        detector.detect(overuse.offset, timestamp_delta_ms, overuse.num_of_deltas, now_ms)

    def _maybe_update(self, now_ms: int) -> tuple[int, list[int]] | None:
        last = self._last_update_ms
        periodic = last is None or now_ms - last > self._feedback_ms
        if not periodic and self._detector.hypothesis is not self._overusing:
            return None
        incoming = self._incoming.rate(now_ms)  # once: the rule below and the rate control read it
        if not periodic and not self._time_to_reduce_further(now_ms, incoming):
            return None
        target: int | None = self._rate_control.update(self._detector.hypothesis, incoming, now_ms)
        if target is None:
            return None
        self._last_update_ms = now_ms
        return target, list(self._ssrcs)

    def _time_to_reduce_further(self, now_ms: int, incoming: int | None) -> bool:
        """libwebrtc's ``AimdRateControl::TimeToReduceFurther``, which aiortc leaves out: while
        overusing, the rate control cuts again once an RTT (10-200 ms) has passed since its
        last change, or at once if what arrives fell below half the estimate. aiortc ran it
        on *every* packet while overusing: at 303 publishers on a busy hub that was 9 % of the
        hub's py-spy samples (the rate control 4.6 %, the REMBs it let through 4.2 %), for the
        same 0.85 of the incoming rate each time. ``incoming``: the rate now (libwebrtc asks
        for one)."""
        if incoming is None:
            return False
        control = self._rate_control
        changed = control.last_change_ms
        if changed is None or now_ms - changed >= min(max(control.rtt, MIN_REDUCE_INTERVAL_MS), MAX_REDUCE_INTERVAL_MS):
            return True
        return bool(control.current_bitrate_initialized) and incoming < control.current_bitrate / 2


class RembThrottle:
    """When a publisher gets its next REMB: at once when the estimate falls below
    ``sooner_below`` of the last one sent, otherwise at most every ``interval_s``.

    libwebrtc's ``RembThrottler`` waits 200 ms; at a Jember day's 303 publishers those five
    a second took 6-7 % of the hub's event loop (each a packet object, SRTCP and a send,
    ≈ 30 µs). A rise can wait a second (the estimate itself climbs ≈ 8 % a second); a fall,
    which is what keeps a village uplink from queueing, goes at once.
    """

    __slots__ = ("_due", "_interval_s", "_sent", "_sooner_below")

    def __init__(self, interval_s: float = 1.0, sooner_below: float = 0.97) -> None:
        self._interval_s = interval_s
        self._sooner_below = sooner_below
        self._due = float("-inf")
        self._sent = 0

    def should_send(self, now: float, bitrate: int) -> bool:
        """Whether the estimate ``bitrate`` goes out at ``now`` (monotonic seconds); if so it
        counts as sent."""
        if now < self._due and bitrate >= self._sent * self._sooner_below:
            return False
        self._due, self._sent = now + self._interval_s, bitrate
        return True
