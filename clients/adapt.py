"""The edge between one media session and :mod:`clients.quality`: measure, decide, apply.

Once a tick, :class:`LinkMeter` reads the session's aiortc stats into
:class:`~clients.quality.Signals`:

- payload bits/s sent per kind: ``outbound-rtp`` ``bytesSent`` (aiortc counts payload octets);
- loss: the newest ``remote-inbound-rtp`` report of each kind that is new since the last
  tick (aiortc fills it from the hub's receiver reports). Its ``fractionLost`` is the RR's
  raw 8-bit field (lost / 256), not the W3C fraction. Kinds are weighted by the packets each
  sent in the tick: while video is paused, audio's reports say how the link is;
- RTT: ``roundTripTime`` of those reports, audio's first, which aiortc computes from the RR's
  LSR/DLSR; non-positive values are dropped. Why audio's: aiortc stamps its SRs with the time
  of the last RTP packet and times the round trip from the last SR sent, so a paused video
  sender sends the same LSR again and again and the hub's reply to an older one makes a
  negative RTT (measured: −184 ms), which aiortc's running average keeps for a while after.
  The audio sender never pauses;
- the hub's REMB estimate, as :class:`~clients.rtc.RateControl` recorded it, if a new one
  came this tick.

:class:`QualityAdapter` feeds them to the controller and applies its changes: the encoder's
target (``RateControl.set_target``), the picture (``LevelledVideo.apply``) and, when video
comes back after audio only, a forced keyframe. It logs one line per change (INFO), and with
DEBUG on ``jaga.station.quality`` one line per tick with what it measured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import RTCPeerConnection

from clients.quality import Change, Level, QualityController, Signals
from clients.quality_track import LevelledVideo
from clients.rtc import RateControl

log = logging.getLogger("jaga.station.quality")

SignalFilter = Callable[[Signals], Signals]  # tests force the link's signals through one


@dataclass
class _Sent:
    bytes: int = 0
    packets: int = 0


class LinkMeter:
    """Turns successive stats of one peer connection into per-tick :class:`Signals`."""

    def __init__(self, pc: RTCPeerConnection, rate: RateControl) -> None:
        self.pc = pc
        self.rate = rate
        self._sent: dict[str, _Sent] = {}
        self._reports: dict[str, Any] = {}  # kind -> timestamp of the last report used
        self._estimates = rate.estimates
        self._at: float | None = None

    async def read(self, now: float) -> Signals:
        report = await self.pc.getStats()
        sent: dict[str, _Sent] = {}
        fresh: dict[str, Any] = {}
        for stats in report.values():
            kind = getattr(stats, "kind", None)
            if stats.type == "outbound-rtp" and kind:
                total = sent.setdefault(kind, _Sent())
                total.bytes += getattr(stats, "bytesSent", 0) or 0
                total.packets += getattr(stats, "packetsSent", 0) or 0
            elif stats.type == "remote-inbound-rtp" and kind:
                if stats.timestamp != self._reports.get(kind):
                    fresh[kind] = stats
        signals = self._signals(now, sent, fresh)
        self._sent = sent
        self._reports.update({kind: stats.timestamp for kind, stats in fresh.items()})
        self._at = now
        return signals

    def _signals(self, now: float, sent: dict[str, _Sent], fresh: dict[str, Any]) -> Signals:
        elapsed = now - self._at if self._at is not None else 0.0
        rates: dict[str, float] = {}
        packets: dict[str, int] = {}
        for kind, total in sent.items():
            before = self._sent.get(kind, _Sent())
            packets[kind] = max(0, total.packets - before.packets)
            if elapsed > 0:
                rates[kind] = 8 * max(0, total.bytes - before.bytes) / elapsed
        loss: float | None = None
        weights = {kind: packets.get(kind, 0) for kind in fresh}
        if fresh and sum(weights.values()) > 0:
            loss = sum(_fraction(fresh[k]) * w for k, w in weights.items()) / sum(weights.values())
        rtt = next((r for k in ("audio", "video") if k in fresh
                    for r in [getattr(fresh[k], "roundTripTime", None)] if r is not None and r > 0), None)
        estimate: float | None = None
        if self.rate.estimates != self._estimates and self.rate.estimate_bps is not None:
            estimate = float(self.rate.estimate_bps)
        self._estimates = self.rate.estimates
        if elapsed <= 0:
            return Signals(loss=loss, rtt_s=rtt, estimate_bps=estimate)
        return Signals(loss=loss, rtt_s=rtt, estimate_bps=estimate, video_bps=rates.get("video"),
                       audio_bps=rates.get("audio"))


def _fraction(stats: Any) -> float:
    raw = getattr(stats, "fractionLost", 0) or 0
    return min(1.0, max(0.0, float(raw) / 256.0))


def apply_level(level: Level, previous: Level | None, track: LevelledVideo, rate: RateControl) -> None:
    """Put ``level`` into effect: encoder target first, then the picture."""
    if level.video:
        rate.set_target(level.bitrate_bps, level.fps)
        if previous is not None and not previous.video:
            rate.request_keyframe()  # the encoder kept its state across the pause
    track.apply(level)


class QualityAdapter:
    """Runs one session's quality loop: ``run()`` until cancelled."""

    def __init__(self, controller: QualityController, track: LevelledVideo, rate: RateControl,
                 clock: Callable[[], float] = time.monotonic, signal_filter: SignalFilter | None = None,
                 on_change: Callable[[Change], None] = lambda change: None) -> None:
        self.controller = controller
        self.track = track
        self.rate = rate
        self.clock = clock
        self.signal_filter = signal_filter
        self.on_change = on_change
        self.last_signals = Signals()
        apply_level(controller.level, None, track, rate)

    @property
    def level(self) -> Level:
        return self.controller.level

    async def run(self, pc: RTCPeerConnection) -> None:
        meter = LinkMeter(pc, self.rate)
        await meter.read(self.clock())  # the baseline for the first tick's rates
        while True:
            await asyncio.sleep(self.controller.policy.tick_s)  # the measuring cadence
            try:
                signals = await meter.read(self.clock())
            except Exception:  # aiortc's stats of a closing connection: the session ends anyway
                log.debug("stats failed", exc_info=True)
                continue
            self.tick(signals)

    def tick(self, signals: Signals) -> Change | None:
        if self.signal_filter is not None:
            signals = self.signal_filter(signals)
        self.last_signals = signals
        change = self.controller.update(self.clock(), signals)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("tick %s: %s", self.controller.level.name, describe(signals))
        if change is not None:
            apply_level(change.level, change.previous, self.track, self.rate)
            log.info("quality %s → %s (%s)", change.previous.describe(), change.level.describe(), change.reason)
            self.on_change(change)
        return change


def describe(signals: Signals) -> str:
    """One tick's signals for a debug line: loss, RTT, REMB, video and audio sent."""
    def kbps(value: float | None) -> str:
        return "-" if value is None else f"{value / 1000:.0f}"

    loss = "-" if signals.loss is None else f"{signals.loss:.0%}"
    rtt = "-" if signals.rtt_s is None else f"{signals.rtt_s * 1000:.0f} ms"
    return (f"loss {loss} rtt {rtt} remb {kbps(signals.estimate_bps)} sent {kbps(signals.video_bps)}"
            f"+{kbps(signals.audio_bps)} kbps")
