"""The quality loop's edge (clients/adapt.py): aiortc stats → Signals, a Change → encoder and picture."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace
from typing import Any

import pytest

from clients import rtc
from clients.adapt import LinkMeter, QualityAdapter
from clients.quality import Change, QualityController, QualityPolicy, Signals, ladder
from clients.quality_track import LevelledVideo
from tests.clients.test_quality_track import Frames

LEVELS = ladder(640, 360, 15, 500_000)
L0, L1, L2, L3 = LEVELS
T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)


class FakePeerConnection:
    """``getStats()`` answers what the test put in ``stats``, as aiortc's report does."""

    def __init__(self) -> None:
        self.stats: dict[str, Any] = {}

    def sent(self, kind: str, bytes_sent: int, packets: int) -> None:
        self.stats[f"out-{kind}"] = SimpleNamespace(type="outbound-rtp", kind=kind, bytesSent=bytes_sent,
                                                    packetsSent=packets)

    def report(self, kind: str, at_s: float, fraction_lost: int, rtt: float | None = None) -> None:
        self.stats[f"rr-{kind}"] = SimpleNamespace(type="remote-inbound-rtp", kind=kind, fractionLost=fraction_lost,
                                                   roundTripTime=rtt, timestamp=T0 + dt.timedelta(seconds=at_s))

    async def getStats(self) -> dict[str, Any]:  # noqa: N802 (aiortc's name)
        return dict(self.stats)


async def test_the_meter_turns_stats_into_signals() -> None:
    pc = FakePeerConnection()
    rate = rtc.RateControl(500_000)
    meter = LinkMeter(pc, rate)  # type: ignore[arg-type]
    pc.sent("video", 0, 0)
    pc.sent("audio", 0, 0)
    assert await meter.read(0.0) == Signals()

    pc.sent("video", 60_000, 60)  # 480 kbps
    pc.sent("audio", 4_000, 50)  # 32 kbps
    pc.report("video", 1, fraction_lost=26, rtt=0.21)  # 26/256 ≈ 10 %
    pc.report("audio", 1, fraction_lost=0, rtt=0.25)
    rate.estimate_bps, rate.estimates = 450_000, 1
    signals = await meter.read(1.0)
    assert signals.video_bps == 480_000 and signals.audio_bps == 32_000
    assert signals.loss == pytest.approx((26 / 256 * 60 + 0 * 50) / 110)  # weighted by packets sent
    assert signals.rtt_s == 0.25 and signals.estimate_bps == 450_000  # audio's: it never pauses

    # Nothing new: no reports, no estimate; only the rates.
    pc.sent("video", 120_000, 120)
    pc.sent("audio", 8_000, 100)
    signals = await meter.read(2.0)
    assert (signals.loss, signals.rtt_s, signals.estimate_bps) == (None, None, None)
    assert signals.video_bps == 480_000

    # Video paused: its fresh report (nothing expected, nothing lost) weighs nothing.
    pc.sent("audio", 12_000, 150)
    pc.report("video", 3, fraction_lost=0, rtt=0.2)
    pc.report("audio", 3, fraction_lost=64, rtt=-0.1)  # aiortc's, on a stale LSR: not an RTT
    signals = await meter.read(3.0)
    assert signals.video_bps == 0 and signals.loss == 0.25 and signals.rtt_s == 0.2


async def test_the_adapter_applies_changes_and_forces_a_keyframe_after_audio_only() -> None:
    rate = rtc.RateControl(500_000)
    track = LevelledVideo(Frames(0), L0)
    changes: list[Change] = []
    now = [0.0]
    controller = QualityController(LEVELS, 32_000, QualityPolicy(down_ticks=1, up_hold_s=2), now=0.0)
    forced = {"loss": 0.9}
    adapter = QualityAdapter(controller, track, rate, clock=lambda: now[0], on_change=changes.append,
                             signal_filter=lambda s: Signals(loss=forced["loss"], video_bps=s.video_bps,
                                                             audio_bps=s.audio_bps))
    assert (rate.target_bps, rate.fps, track.level) == (500_000, 15, L0)  # the first level, before the encoder
    now[0] = 1.0
    change = adapter.tick(Signals(video_bps=480_000, audio_bps=32_000))
    assert change is not None and change.level == L3 and track.level == L3
    assert not rate.take_keyframe()
    forced["loss"] = 0.0
    for second in (2.0, 3.0):
        now[0] = second
        adapter.tick(Signals())
    assert adapter.level == L2 and track.level == L2 and (rate.target_bps, rate.fps) == (120_000, 10)
    assert rate.take_keyframe()  # the first picture after audio only is a keyframe
    assert [c.level for c in changes] == [L3, L2]
