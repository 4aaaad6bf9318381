"""A viewer's video fallback on its egress, without a network: ``ViewerEgress`` paused and
resumed, ``ViewerVideoFallback`` driven by forged receiver reports, a fake clock and fake
timers. One congested viewer beside a healthy one of the same station."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from hub.media.congestion import OFF, ON, PROBING, CongestionPolicy
from hub.media.counters import MediaCounters
from hub.media.packet_cache import PacketCache
from hub.media.rtcp import ReceiverReport
from hub.media.viewer_egress import FLOWING, INACTIVE, PAUSED, WAITING, ViewerEgress
from hub.media.viewer_fallback import ViewerVideoFallback
from tests.media.test_viewer_egress import AUDIO, VIDEO, FakeWire, Recorder, payloads


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timers:
    """``call_later`` on the fake clock: due callbacks run in :meth:`advance`."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.pending: list[list[object]] = []  # [due, callback, cancelled]

    def schedule(self, delay: float, callback: Callable[[], None]) -> Timers.Handle:
        entry: list[object] = [self.clock.now + delay, callback, False]
        self.pending.append(entry)
        return Timers.Handle(entry)

    class Handle:
        def __init__(self, entry: list[object]) -> None:
            self.entry = entry

        def cancel(self) -> None:
            self.entry[2] = True

    def advance(self, to: float) -> None:
        while True:
            due = [e for e in self.pending if not e[2] and float(e[0]) <= to]  # type: ignore[arg-type]
            if not due:
                break
            entry = min(due, key=lambda e: float(e[0]))  # type: ignore[arg-type]
            self.pending.remove(entry)
            self.clock.now = float(entry[0])  # type: ignore[arg-type]
            entry[1]()  # type: ignore[operator]
        self.clock.now = to

    def live(self) -> int:
        return sum(1 for e in self.pending if not e[2])


FAST = CongestionPolicy(backoff_s=10.0, probe_s=6.0)


class ForgedReports:
    """Receiver reports about one viewer's video, from what its wire carried, with ``loss``
    of it claimed lost (what an RR from a viewer behind a lossy link says)."""

    def __init__(self, wire: FakeWire) -> None:
        self.wire = wire
        self.lost = 0.0
        self.seen = 0

    def next(self, loss: float) -> ReceiverReport:
        video = [h for h in self.wire.headers() if h[1] == VIDEO.payload_type]
        new = len(video) - self.seen
        self.seen = len(video)
        self.lost += new * loss
        highest = video[-1][2] if video else 0
        return ReceiverReport(fraction_lost=int(loss * 255), packets_lost=int(self.lost), highest_sequence=highest,
                              jitter=0, lsr=0, dlsr=0)


class Station:
    """Stands in for ``StationStream.forward_rtp``: every packet to every egress, a keyframe
    every 15 video packets, 50 video and 50 audio packets a second."""

    def __init__(self, egresses: list[ViewerEgress], clock: Clock, timers: Timers) -> None:
        self.egresses = egresses
        self.clock = clock
        self.timers = timers
        self.seq = 1000
        self.cache = PacketCache()

    def run(self, seconds: float, reports: Callable[[], None] | None = None) -> None:
        """``seconds`` of media; ``reports`` called once a second (the viewer's RTCP)."""
        start = self.clock.now
        for step in range(int(seconds * 50)):
            self.timers.advance(start + step * 0.02)
            self.seq += 1
            keyframe = self.seq % 15 == 0
            payload = b"K" if keyframe else b"d"
            self.cache.put(self.seq, self.seq * 1800, 1, payload)
            for egress in self.egresses:
                egress.send(self.seq, self.seq * (1800 if egress.kind == "video" else 960), 1, payload,
                            keyframe or egress.kind == "audio")
            if reports is not None and step % 50 == 49:
                reports()
        self.timers.advance(start + seconds)


def viewer(calls: Recorder, cache: PacketCache | None = None) -> tuple[ViewerEgress, ViewerEgress, FakeWire]:
    """A viewer's video and audio egresses on one wire, connected."""
    wire = FakeWire()
    video = calls.egress(VIDEO, cache=cache)
    audio = calls.egress(AUDIO)
    video.attach(wire)
    audio.attach(wire)
    return video, audio, wire


def kinds(wire: FakeWire) -> tuple[int, int]:
    """(video, audio) packets the wire carried."""
    headers = wire.headers()
    return (sum(h[1] == VIDEO.payload_type for h in headers), sum(h[1] == AUDIO.payload_type for h in headers))


# --- the egress: paused and resumed ---------------------------------------------------------


def test_a_paused_video_egress_sends_nothing_and_resumes_at_a_keyframe_without_a_gap() -> None:
    calls, wire = Recorder(), FakeWire()
    egress = calls.egress()
    egress.attach(wire)
    egress.send(10, 0, 1, b"K", True)
    egress.send(11, 3000, 1, b"d", False)
    egress.pause()
    assert egress.state == PAUSED and not egress.waiting_for_keyframe
    requests = calls.keyframe_requests
    egress.send(12, 6000, 1, b"K", True)  # even a keyframe: paused
    egress.resync()  # a new publisher meanwhile: still paused
    assert egress.state == PAUSED and calls.keyframe_requests == requests
    egress.resume()
    assert egress.state == WAITING and calls.keyframe_requests == requests + 1  # asks for a keyframe
    egress.send(13, 9000, 1, b"d", False)
    egress.send(14, 12000, 1, b"K", True)
    assert payloads(wire) == [b"K", b"d", b"K"]
    seqs = [h[2] for h in wire.headers()]
    assert seqs[2] == seqs[1] + 1  # the viewer sees no gap to NACK for
    assert egress.state == FLOWING and calls.dropped == 0  # held back on purpose: not "dropped"


def test_audio_and_unconnected_egresses_are_never_paused() -> None:
    calls = Recorder()
    audio = calls.egress(AUDIO)
    audio.attach(FakeWire())
    audio.pause()
    assert audio.state == WAITING
    video = calls.egress()
    video.pause()
    assert video.state == INACTIVE
    video.resume()
    assert video.state == INACTIVE


def test_distinct_nacked_sequence_numbers_are_counted_and_a_paused_egress_answers_none() -> None:
    calls, wire, cache = Recorder(), FakeWire(), PacketCache(16)
    egress = calls.egress(cache=cache)
    egress.attach(wire)
    for seq in (40, 41):
        cache.put(seq, 400 + seq, 1, b"p")
        egress.send(seq, 400 + seq, 1, b"p", seq == 40)
    vseq = wire.headers()[0][2]
    assert egress.retransmit([vseq, vseq + 1]) == 2 and egress.nacked == 2
    assert egress.retransmit([vseq + 1, vseq]) == 2 and egress.nacked == 2  # asked again: not new loss
    assert egress.retransmit([vseq + 5]) == 0 and egress.nacked == 2  # never sent: not this viewer's loss
    egress.pause()
    assert egress.retransmit([vseq]) == 0 and egress.nacked == 2


def test_the_publishers_own_loss_is_counted_apart_from_the_viewers() -> None:
    calls, wire, cache = Recorder(), FakeWire(), PacketCache(16)
    egress = calls.egress(cache=cache)
    egress.attach(wire)
    for seq in (40, 41, 44):  # 42 and 43 never reached the hub: the viewer sees the same gap
        cache.put(seq, 400, 1, b"p")
        egress.send(seq, 400, 1, b"p", seq == 40)
    assert egress.skipped == 2
    cache.put(42, 400, 1, b"p")  # the publisher's retransmission of 42, late
    egress.send(42, 400, 1, b"p", False)
    assert egress.skipped == 1
    vseq = wire.headers()[0][2]
    assert egress.retransmit([vseq + 3]) == 0 and egress.nacked == 0  # 43: the hub never had it


# --- the fallback on a station's egresses ----------------------------------------------------


def test_one_congested_viewer_falls_back_to_audio_and_the_other_keeps_its_video() -> None:
    clock, counters = Clock(), MediaCounters()
    timers = Timers(clock)
    calls = Recorder()
    cache = PacketCache()
    slow_video, slow_audio, slow_wire = viewer(calls, cache)
    fast_video, fast_audio, fast_wire = viewer(calls, cache)
    fallback = ViewerVideoFallback(slow_video, FAST, counters, clock, timers.schedule)
    other = ViewerVideoFallback(fast_video, FAST, counters, clock, timers.schedule)
    station = Station([slow_video, slow_audio, fast_video, fast_audio], clock, timers)
    slow_reports, fast_reports = ForgedReports(slow_wire), ForgedReports(fast_wire)
    loss = {"slow": 0.3}

    def rtcp() -> None:
        fallback.receiver_report(slow_reports.next(loss["slow"]))
        other.receiver_report(fast_reports.next(0.0))

    station.run(2.0, rtcp)
    assert fallback.state == ON
    station.run(2.0, rtcp)  # the run reaches 3 s at the fourth report
    assert fallback.state == OFF and slow_video.state == PAUSED
    status = fallback.status()
    assert (status["video"], status["reason"], status["probing"]) == ("off", "congestion", False)
    assert status["retry_in_s"] == 10.0 and status["loss"] == 0.3
    assert counters.video_fallbacks == 1 and timers.live() == 1  # the back-off's timer

    video_before, audio_before = kinds(slow_wire)
    fast_before = kinds(fast_wire)
    station.run(5.0, rtcp)
    video_after, audio_after = kinds(slow_wire)
    assert video_after == video_before  # no video to the congested viewer ...
    assert audio_after - audio_before == 250  # ... its audio untouched, every packet
    assert [n - b for n, b in zip(kinds(fast_wire), fast_before, strict=True)] == [250, 250]  # the other: all
    assert other.state == ON and other.status()["video"] == "on"
    assert fallback.status()["retry_in_s"] == 5.0

    loss["slow"] = 0.0  # the link recovers
    requests = calls.keyframe_requests
    station.run(6.0, rtcp)  # the back-off ends 5 s from now: a probe, from the next keyframe
    assert counters.video_probes == 1 and calls.keyframe_requests == requests + 1
    status = fallback.status()
    assert fallback.state == PROBING
    assert (status["video"], status["probing"], status["retry_in_s"]) == ("on", True, None)
    assert kinds(slow_wire)[0] > video_after
    station.run(6.0, rtcp)
    assert fallback.state == ON and counters.video_recoveries == 1 and timers.live() == 0
    assert fallback.status()["video"] == "on" and not fallback.status()["probing"]

    slow_seqs = [h[2] for h in slow_wire.headers() if h[1] == VIDEO.payload_type]
    assert all((b - a) & 0xFFFF == 1 for a, b in zip(slow_seqs, slow_seqs[1:], strict=False))  # no gap


def test_a_failed_probe_pauses_again_with_a_longer_back_off() -> None:
    clock, counters = Clock(), MediaCounters()
    timers = Timers(clock)
    calls = Recorder()
    video, audio, wire = viewer(calls)
    fallback = ViewerVideoFallback(video, FAST, counters, clock, timers.schedule)
    station = Station([video, audio], clock, timers)
    reports = ForgedReports(wire)
    station.run(4.0, lambda: fallback.receiver_report(reports.next(0.3)))
    assert fallback.state == OFF
    station.run(10.0, lambda: fallback.receiver_report(reports.next(0.3)))  # the probe starts at 10 s ...
    station.run(4.0, lambda: fallback.receiver_report(reports.next(0.3)))  # ... and congests
    assert fallback.state == OFF and video.state == PAUSED
    off_again = 100.0 + 17.0  # off at ~4 s, probe at ~14 s, 3 s of congestion: off again (reports at x.98)
    assert fallback.status()["retry_in_s"] == pytest.approx(20.0 - (clock.now - off_again), abs=0.1)
    assert (counters.video_fallbacks, counters.video_probes, counters.video_recoveries) == (2, 1, 0)


def test_closing_cancels_the_timer_and_ignores_late_reports() -> None:
    clock, counters = Clock(), MediaCounters()
    timers = Timers(clock)
    video, audio, wire = viewer(Recorder())
    fallback = ViewerVideoFallback(video, FAST, counters, clock, timers.schedule)
    reports = ForgedReports(wire)
    Station([video, audio], clock, timers).run(4.0, lambda: fallback.receiver_report(reports.next(0.5)))
    assert timers.live() == 1
    fallback.close()
    assert timers.live() == 0
    fallback.receiver_report(reports.next(0.5))
    assert timers.live() == 0


def test_round_trip_shows_in_the_status() -> None:
    clock, counters = Clock(), MediaCounters()
    video, _, _ = viewer(Recorder())
    fallback = ViewerVideoFallback(video, FAST, counters, clock, Timers(clock).schedule)
    fallback.report_sent(0xABCD)
    clock.now += 0.35
    fallback.receiver_report(ReceiverReport(0, 0, 0, 0, lsr=0xABCD, dlsr=65536 // 20))
    assert fallback.status()["rtt_ms"] == 300

