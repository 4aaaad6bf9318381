"""The per-viewer video fallback's rules (``hub.media.congestion``), one test per rule, on
made-up reports and times: no clock, no sockets."""

from __future__ import annotations

import pytest

from hub.media.congestion import OFF, ON, PROBING, CongestionPolicy, VideoFallback
from hub.media.rtcp import ReceiverReport

POLICY = CongestionPolicy()  # the defaults are the rules under test


class Link:
    """A viewer's side of the story: what it reports about what we sent it."""

    def __init__(self, policy: CongestionPolicy = POLICY, highest: int = 1000) -> None:
        self.fallback = VideoFallback(policy, now=0.0)
        self.highest = highest
        self.lost = 0
        self.sent = 0
        self.nacked = 0
        self.changes: list[tuple[float, str]] = []

    def report(self, now: float, packets: int = 50, loss: float = 0.0, nacks: int = 0, arrived: bool = True,
               lsr: int = 0, dlsr: int = 0, jitter: int = 0) -> str | None:
        """One report at ``now`` after ``packets`` more were sent, ``loss`` of them lost."""
        self.sent += packets
        if arrived:
            self.highest += packets
            self.lost += round(packets * loss)
        self.nacked += nacks
        block = ReceiverReport(fraction_lost=int(loss * 256) & 0xFF, packets_lost=self.lost,
                               highest_sequence=self.highest, jitter=jitter, lsr=lsr, dlsr=dlsr)
        change = self.fallback.receiver_report(block, now, self.sent, self.nacked)
        if change:
            self.changes.append((now, change))
        return change

    def reports(self, start: float, end: float, **kwargs: object) -> None:
        """One report a second from ``start`` to ``end`` (inclusive); while the video is off
        nothing is sent, so nothing is expected either."""
        t = start
        while t <= end + 1e-9:
            video = self.fallback.state != OFF
            self.report(t, **({**kwargs} if video else {"packets": 0}))
            t += 1.0

    def tick(self, now: float) -> str | None:
        change = self.fallback.tick(now)
        if change:
            self.changes.append((now, change))
        return change


def test_a_link_with_three_percent_loss_keeps_its_video() -> None:
    link = Link()
    link.reports(0.0, 120.0, loss=0.03, nacks=2)
    assert link.changes == [] and link.fallback.state == ON
    assert link.fallback.estimate.loss == pytest.approx(0.04)  # round(50 * 0.03) = 2 of 50


def test_loss_above_ten_percent_for_three_seconds_switches_video_off() -> None:
    link = Link()
    link.report(0.0)  # the baseline
    link.report(1.0, loss=0.3)  # the run starts where its first interval did: 0.0
    link.report(2.0, loss=0.3)
    assert link.fallback.state == ON  # 2 s: not yet
    assert link.report(3.0, loss=0.3) == OFF
    assert link.fallback.retry_in(3.0) == POLICY.backoff_s and link.fallback.fallbacks == 1


def test_loss_at_the_threshold_is_not_congestion() -> None:
    link = Link()
    link.reports(0.0, 10.0, loss=0.10)
    assert link.fallback.state == ON


def test_one_clean_interval_ends_a_congested_run() -> None:
    link = Link()
    link.report(0.0)
    link.report(1.0, loss=0.3)
    link.report(2.0, loss=0.3)
    link.report(3.0, loss=0.0)  # clean: the run is over
    link.report(4.0, loss=0.3)
    link.report(5.0, loss=0.3)
    assert link.fallback.state == ON
    assert link.report(6.0, loss=0.3) == OFF  # a new run, 3 s from 3.0


def test_a_lost_report_is_covered_by_the_next_one() -> None:
    link = Link()
    link.report(0.0)
    link.report(1.0, loss=0.3)
    link.sent += 50  # the report at 2.0 never arrived: the cumulative counts carry it
    link.highest += 50
    link.lost += 15
    assert link.report(3.0, loss=0.3) == OFF  # 1 + 2 s of congestion
    assert link.fallback.estimate.loss == pytest.approx(0.3)


def test_an_interval_with_too_few_packets_is_no_evidence() -> None:
    link = Link()
    link.report(0.0)
    link.report(1.0, loss=0.3)
    link.report(2.0, packets=5, loss=0.0)  # 5 < min_packets: neither clean nor congested ...
    assert link.report(3.0, loss=0.3) is None  # ... so 2 s of congestion, not 3
    assert link.report(4.0, loss=0.3) == OFF  # the run went on through it


def test_a_high_nack_rate_is_congestion_even_when_the_reports_show_no_loss() -> None:
    # A receiver that counts packets repaired by RTX as received (aiortc) reports no loss.
    link = Link()
    link.report(0.0)
    link.report(1.0, nacks=15)  # 15 NACKed of 50 sent: 30 %
    link.report(2.0, nacks=15)
    assert link.report(3.0, nacks=15) == OFF
    assert link.fallback.estimate.nack_rate == pytest.approx(0.3)


def test_a_few_nacks_are_not_congestion() -> None:
    link = Link()
    link.reports(0.0, 20.0, nacks=5)  # 10 %: retransmissions repair a lossy link
    assert link.fallback.state == ON


def test_round_trip_from_lsr_and_dlsr() -> None:
    link = Link()
    link.fallback.report_sent(0x2000, now=1.0)
    link.report(1.3, lsr=0x2000, dlsr=65536 // 10)  # held 0.1 s at the viewer: 1.3 - 1.0 - 0.1
    assert link.fallback.estimate.rtt_s == pytest.approx(0.2, abs=1e-4)
    link.fallback.report_sent(0x3000, now=2.0)
    link.report(2.1, lsr=0x3000, dlsr=65536 // 5)  # a DLSR longer than the time since: never < 0
    assert link.fallback.estimate.rtt_s == 0.0


def test_a_deep_queue_is_congestion_without_any_loss() -> None:
    link = Link()
    link.report(0.0)
    for t in (1.0, 2.0, 3.0):
        link.fallback.report_sent(int(t * 10), now=t - 1.9)
        link.report(t, lsr=int(t * 10), dlsr=0)  # 1.9 s round trip, nothing lost
    assert link.changes == [(3.0, OFF)]


def test_an_unknown_lsr_gives_no_round_trip() -> None:
    link = Link()
    link.report(0.0, lsr=0x9999, dlsr=100)
    assert link.fallback.estimate.rtt_s is None


def test_only_the_newest_sender_reports_are_remembered() -> None:
    fallback = VideoFallback(POLICY, now=0.0)
    for lsr in range(1, 20):
        fallback.report_sent(lsr, now=float(lsr))
    block = ReceiverReport(0, 0, 0, 0, lsr=1, dlsr=0)
    fallback.receiver_report(block, 30.0, 0, 0)
    assert fallback.estimate.rtt_s is None  # forgotten: no round trip from it


def test_nothing_arriving_although_we_send_is_total_loss() -> None:
    link = Link()
    link.report(0.0)
    link.report(1.0, arrived=False)
    link.report(2.0, arrived=False)
    assert link.report(3.0, arrived=False) == OFF
    assert link.fallback.estimate.loss == 1.0


def test_nothing_sent_and_nothing_arriving_is_no_evidence() -> None:
    link = Link()
    link.report(0.0)
    link.report(1.0, loss=0.5)
    link.reports(2.0, 30.0, packets=0)  # the publisher's video stalled: no verdict either way
    assert link.fallback.state == ON  # the silence did not count as congestion ...
    assert link.report(31.0, loss=0.5) is None
    assert link.report(32.0, loss=0.5) == OFF  # ... nor end the run: 1 + 2 s of congestion


def test_after_the_back_off_a_probe_and_if_it_holds_video_stays_on() -> None:
    link = Link()
    link.report(0.0)
    link.reports(1.0, 3.0, loss=0.3)
    assert link.fallback.state == OFF and link.fallback.next_deadline() == 13.0
    assert link.tick(12.9) is None and link.fallback.retry_in(12.9) == pytest.approx(0.1)
    assert link.tick(13.0) == PROBING
    assert link.fallback.video_on and link.fallback.retry_in(13.0) is None
    assert link.fallback.next_deadline() == 13.0 + POLICY.probe_s
    link.reports(14.0, 18.0, loss=0.0)
    assert link.fallback.state == PROBING
    assert link.report(19.0) == ON  # 6 s of probe without congestion
    assert link.fallback.next_deadline() is None


def test_a_probe_holds_on_a_tick_too_when_no_report_comes() -> None:
    link = Link()
    link.report(0.0)
    link.reports(1.0, 3.0, loss=0.3)
    link.tick(13.0)
    assert link.tick(18.9) is None and link.tick(19.0) == ON


def test_a_failed_probe_goes_off_again_with_a_doubled_back_off_up_to_the_maximum() -> None:
    link = Link()
    link.report(0.0)
    link.reports(1.0, 3.0, loss=0.3)  # off at 3: back-off 10
    waits = []
    now = 3.0
    for _ in range(5):
        retry_at = link.fallback.retry_at
        assert retry_at is not None
        waits.append(retry_at - now)
        assert link.tick(retry_at) == PROBING
        link.reports(retry_at + 1.0, retry_at + 3.0, loss=0.3)  # the probe congests at once
        assert link.fallback.state == OFF
        now = retry_at + 3.0
    assert waits == [10.0, 20.0, 40.0, 60.0, 60.0]
    assert link.fallback.fallbacks == 6


def test_evidence_from_before_a_probe_does_not_count_against_it() -> None:
    link = Link()
    link.report(0.0)
    link.reports(1.0, 3.0, loss=0.3)
    link.tick(13.0)
    # the first report in the probe covers the pause too (its baseline is from 3.0):
    # its run starts at the probe's start, not at the report before the pause
    assert link.report(13.5, loss=0.3) is None
    assert link.report(14.5, loss=0.3) is None
    assert link.report(16.0, loss=0.3) == OFF  # 3 s after 13.0


def test_a_probe_in_a_congested_run_at_its_end_waits_for_the_verdict() -> None:
    link = Link()
    link.report(0.0)
    link.reports(1.0, 3.0, loss=0.3)
    link.tick(13.0)
    link.reports(14.0, 16.0, loss=0.0)
    link.report(17.0, loss=0.3)  # congested since 16.0
    assert link.tick(19.0) is None and link.fallback.state == PROBING
    assert link.report(19.5, loss=0.0) == ON  # clean: the run is over and the probe held


def test_the_back_off_starts_again_after_video_held_for_a_while() -> None:
    link = Link()
    link.report(0.0)
    link.reports(1.0, 3.0, loss=0.3)  # off at 3 (10 s), next back-off 20
    link.tick(13.0)
    link.reports(14.0, 19.0)  # on at 19
    link.reports(20.0, 22.0, loss=0.3)  # congested again within stable_s of the probe
    assert link.fallback.state == OFF and link.fallback.retry_in(22.0) == 20.0
    link.tick(42.0)
    link.reports(43.0, 48.0)  # on at 48; video since 42
    link.reports(49.0, 101.0)  # on for 60 s since 42 ...
    link.reports(102.0, 104.0, loss=0.3)  # ... so this fallback waits the first back-off again
    assert link.fallback.state == OFF and link.fallback.retry_in(104.0) == 10.0


def test_the_low_sixteen_bits_of_the_highest_sequence_number_count() -> None:
    # aiortc reports 16 bits; libwebrtc the extended number (cycles in the high bits).
    for start in (65500, 3 * 65536 + 65500):
        link = Link(highest=start)
        link.report(0.0)
        link.reports(1.0, 3.0, loss=0.3)  # wraps past 65535 on the way
        assert link.changes == [(3.0, OFF)], start


def test_sequence_numbers_going_back_are_a_new_baseline_not_evidence() -> None:
    link = Link()
    link.report(0.0)
    link.report(1.0, loss=0.3)
    link.highest -= 2000  # the viewer restarted its count
    assert link.report(2.0, packets=0) is None  # no evidence, a new baseline
    assert link.report(3.0, loss=0.3) is None
    assert link.report(4.0, loss=0.3) == OFF  # 0–1, 2–3, 3–4: the run went on (no clean interval)


def test_fewer_lost_than_before_duplicates_is_no_loss() -> None:
    link = Link()
    link.report(0.0)
    link.lost = -5  # duplicates counted as received push the cumulative figure down
    link.report(1.0)
    assert link.fallback.estimate.loss == 0.0


def test_jitter_is_reported_in_seconds_and_decides_nothing() -> None:
    link = Link()
    link.reports(0.0, 10.0, jitter=90000)  # a whole second of jitter
    assert link.fallback.estimate.jitter_s == 1.0 and link.fallback.state == ON


def test_a_new_policy_applies_from_the_next_report() -> None:
    link = Link()
    link.report(0.0)
    link.report(1.0, loss=0.05)
    link.fallback.policy = CongestionPolicy(loss_off=0.01, congested_s=1.0)
    assert link.report(2.0, loss=0.05) == OFF


@pytest.mark.parametrize("bad", [{"congested_s": 0}, {"probe_s": 0}, {"backoff_s": 0}, {"backoff_s": 90},
                                 {"min_packets": 0}, {"stable_s": -1}])
def test_a_nonsensical_policy_is_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CongestionPolicy(**bad)  # type: ignore[arg-type]


def test_the_publishers_own_loss_forwarded_as_gaps_is_not_the_viewers_congestion() -> None:
    # The relay forwards a publisher's loss as the same gap: the viewer reports it lost. With
    # 30 % of the sequence numbers skipped upstream and nothing lost on the viewer's link, the
    # viewer's video stays on.
    fallback = VideoFallback(POLICY, now=0.0)
    highest = lost = sent = skipped = 0
    for second in range(1, 20):
        highest += 100
        lost += 30
        skipped += 30
        sent += 70
        block = ReceiverReport(fraction_lost=77, packets_lost=lost, highest_sequence=highest, jitter=0, lsr=0, dlsr=0)
        assert fallback.receiver_report(block, float(second), sent, 0, skipped) is None
    assert fallback.state == ON and fallback.estimate.loss == 0.0
