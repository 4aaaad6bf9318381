"""One viewer's video fallback, wired: its RTCP in, its video egress paused and resumed.

The decision is :class:`hub.media.congestion.VideoFallback` (pure); this adapter feeds it
the viewer's receiver reports and our SR times (``seams_egress`` 14-15), the egress's own
counters (media packets sent, sequence numbers NACKed), and the clock; it acts on what it
returns — ``off``: ``ViewerEgress.pause``; ``probing``: ``ViewerEgress.resume`` (video from
the next keyframe, which the station is asked for) — and keeps one timer for the back-off
and the probe. Audio is never touched. All of it runs per RTCP packet (about one a second
per viewer), never per RTP packet.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Protocol

from hub.media.congestion import OFF, ON, PROBING, CongestionPolicy, VideoFallback
from hub.media.counters import MediaCounters
from hub.media.rtcp import ReceiverReport
from hub.media.viewer_egress import ViewerEgress


class Timer(Protocol):
    def cancel(self) -> None: ...


# (delay in seconds, callback) -> a timer that can be cancelled: the event loop's call_later
Scheduler = Callable[[float, Callable[[], None]], Timer]


def _call_later(delay: float, callback: Callable[[], None]) -> Timer:
    return asyncio.get_running_loop().call_later(delay, callback)


class ViewerVideoFallback:
    """``clock`` (monotonic seconds) and ``schedule`` are injected for the tests."""

    def __init__(self, egress: ViewerEgress, policy: CongestionPolicy, counters: MediaCounters,
                 clock: Callable[[], float] = time.monotonic, schedule: Scheduler = _call_later) -> None:
        self._egress = egress
        self._counters = counters
        self._clock = clock
        self._schedule_later = schedule
        self._core = VideoFallback(policy, clock(), egress.parameters.clock_rate)
        self._timer: Timer | None = None
        self._closed = False

    @property
    def state(self) -> str:
        return self._core.state

    def set_policy(self, policy: CongestionPolicy) -> None:
        self._core.policy = policy

    # --- what the viewer's RTCP tells (seams_egress 14-15) ------------------------------

    def receiver_report(self, report: ReceiverReport) -> None:
        if self._closed:
            return
        now = self._clock()
        egress = self._egress
        self._apply(self._core.receiver_report(report, now, egress.packets, egress.nacked, egress.skipped), now)

    def report_sent(self, lsr: int) -> None:
        self._core.report_sent(lsr, self._clock())

    # --- the session resource ---------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """``video``, ``reason``, ``retry_in_s``, ``probing`` and the latest estimate
        (docs/http-api.md, "A viewer's video")."""
        core, now = self._core, self._clock()
        estimate = core.estimate
        retry_in = core.retry_in(now)
        return {
            "video": "off" if core.state == OFF else "on",
            "reason": "congestion" if core.state == OFF else None,
            "retry_in_s": None if retry_in is None else round(retry_in, 1),
            "probing": core.state == PROBING,
            "fallbacks": core.fallbacks,
            "loss": None if estimate.loss is None else round(estimate.loss, 3),
            "rtt_ms": None if estimate.rtt_s is None else round(estimate.rtt_s * 1000),
        }

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # --- internals ------------------------------------------------------------------

    def _apply(self, change: str | None, now: float) -> None:
        if change == OFF:
            self._egress.pause()
            self._counters.video_fallbacks += 1
        elif change == PROBING:
            self._egress.resume()
            self._counters.video_probes += 1
        elif change == ON:
            self._counters.video_recoveries += 1
        if change is not None or self._timer is None:
            self._schedule(now)

    def _schedule(self, now: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self._core.next_deadline()
        # past already: a probe waits for the report that ends its congested run
        if deadline is not None and deadline > now and not self._closed:
            self._timer = self._schedule_later(deadline - now, self._tick)

    def _tick(self) -> None:
        self._timer = None
        now = self._clock()
        change = self._core.tick(now)
        self._apply(change, now)
