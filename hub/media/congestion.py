"""Does one viewer's link carry the station's video? A pure state machine per viewer.

Theory of operation. A viewer on a weak link (a phone at 700 kbps with loss) cannot take a
station's video, but can take its audio (Opus, 32–96 kbps). The hub learns that from the viewer's
own RTCP — receiver reports (RFC 3550 §6.4.2) for its video SSRC and the NACKs it sends —
and switches *that viewer* to audio only (its page shows the station's thumbnail instead),
then tries video again after a back-off. Other viewers of the station never notice: every
number here is per viewer. No I/O and no clock: the caller passes ``now`` (monotonic
seconds) to every method and acts on the state changes they return
(:mod:`hub.media.viewer_fallback` wires one to a viewer's video egress).

Evidence comes per *interval* between two receiver reports for the viewer's video SSRC::

    upstream = Δ sequence numbers we skipped: the publisher's own loss, which the relay
               forwards as the same gap, so the viewer counts it lost as well
    expected = Δ highest sequence number received (mod 2^16: aiortc reports 16 bits) − upstream
    loss     = max(0, Δ cumulative packets lost − upstream) / expected  (if expected ≥ min_packets)
             = 1                     (if nothing new arrived although we sent ≥ min_packets)
    nack     = Δ distinct sequence numbers NACKed that we had sent / Δ media packets sent
                                                                   (if sent ≥ min_packets)
    rtt      = now − when we sent the SR the report's LSR names − DLSR     (if it names one)

The cumulative counts, not the 8-bit ``fraction lost``, because they survive a lost report
(the next one covers both intervals). NACKs count because some receivers (aiortc) count a
packet repaired by RTX as received, so their reports understate the loss on the wire. An
interval is **congested** when ``loss > loss_off``, ``nack > nack_off`` or
``rtt > rtt_off_s``; **clean** when it has a loss or NACK figure and none of those; else it
is no evidence (video off, a quiet publisher) and changes nothing. Jitter is reported but
decides nothing: a video frame's packets leave back to back with one timestamp, so a
keyframe inflates interarrival jitter on any link; a growing queue shows as RTT instead.

State, as a formula::

    video sent to the viewer  ⇔  state ∈ {on, probing}
    congested run             =  the total length of the congested intervals since the
                                 last clean one (one without evidence neither ends nor
                                 lengthens it), counted from when video last started

Transitions (``policy`` fields in brackets)::

    state    event            condition                               → state    then
    on       congested report congested run ≥ [congested_s]            off       retry at now + back-off
    probing  congested report congested run ≥ [congested_s]            off       retry at now + back-off
    off      tick             now ≥ retry at                           probing   video again, from a keyframe
    probing  report or tick   [probe_s] since the probe began, no run  on        —

Back-off (hysteresis): the first fallback waits [backoff_s]; each further one doubles it, up
to [max_backoff_s]; a failed probe therefore waits longer each time (10, 20, 40, 60, 60 s
by default). Once video has stayed on for [stable_s], the back-off starts at [backoff_s]
again. A congested run never reaches back across a state change: evidence from before
video stopped (or before a probe began) does not count against the probe.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.media.rtcp import ReceiverReport

ON, OFF, PROBING = "on", "off", "probing"
SENT_REPORTS_KEPT = 8  # our SRs remembered for RTT: a viewer echoes the newest it has


@dataclass(frozen=True)
class CongestionPolicy:
    """The thresholds. Defaults: a link with 3 % random loss (repaired by NACK/RTX) keeps its
    video; one whose queue overflows (measured: a 700 kbps link under ~640 kbps of media and
    keyframe bursts, 19–37 % loss per report) falls back to audio after 3 s of it."""

    loss_off: float = 0.10  # loss per interval above this is congestion
    nack_off: float = 0.20  # NACKed sequence numbers per media packet sent above this is congestion
    rtt_off_s: float = 1.5  # a round trip above this (a deep queue) is congestion
    congested_s: float = 3.0  # congested this long without a clean interval: video off
    min_packets: int = 10  # fewer expected (and sent) in an interval: no evidence
    backoff_s: float = 10.0  # the first wait before video is tried again
    max_backoff_s: float = 60.0
    probe_s: float = 6.0  # a probe this long without a congested run: video stays on
    stable_s: float = 60.0  # video on this long: the next back-off starts at backoff_s again

    def __post_init__(self) -> None:
        if self.congested_s <= 0 or self.probe_s <= 0 or self.stable_s < 0:
            raise ValueError("congested_s and probe_s must be > 0, stable_s >= 0")
        if not 0 < self.backoff_s <= self.max_backoff_s:
            raise ValueError("0 < backoff_s <= max_backoff_s")
        if self.min_packets < 1:
            raise ValueError("min_packets must be >= 1")


@dataclass(frozen=True)
class Estimate:
    """The latest figures (None: not known yet), for the session resource and the tests."""

    loss: float | None = None
    nack_rate: float | None = None
    rtt_s: float | None = None
    jitter_s: float | None = None


@dataclass(frozen=True)
class _Mark:
    """What the previous report left: the baseline of the next interval."""

    at: float
    highest: int
    lost: int
    sent: int
    nacked: int
    skipped: int


class VideoFallback:
    """One viewer's video decision. Call :meth:`receiver_report` with each report block
    about its video SSRC (and our counters at that moment), :meth:`report_sent` after each
    SR we send it, and :meth:`tick` at :meth:`next_deadline`; each returns the new state
    when it changed (``"off"``: stop its video; ``"probing"``: send video again from a
    keyframe; ``"on"``: the probe held), else None. ``policy`` may be replaced between calls."""

    def __init__(self, policy: CongestionPolicy, now: float, clock_rate: int = 90000) -> None:
        self.policy = policy
        self._clock_rate = clock_rate
        self.state = ON
        self.since = now  # when the current state began
        self.retry_at: float | None = None  # while off: when the probe starts
        self.fallbacks = 0  # times video went off (for the viewer's status)
        self.estimate = Estimate()
        self._backoff = policy.backoff_s  # the next back-off
        self._video_since = now  # when video last started (on or probing) or stopped
        self._congested_for = 0.0  # seconds of congested intervals since the last clean one
        self._mark: _Mark | None = None
        self._sent_reports: dict[int, float] = {}  # LSR → when our SR left

    # --- inputs ---------------------------------------------------------------------

    def report_sent(self, lsr: int, now: float) -> None:
        """We sent the viewer an SR whose NTP timestamp's middle 32 bits are ``lsr``."""
        reports = self._sent_reports
        reports[lsr] = now
        if len(reports) > SENT_REPORTS_KEPT:
            del reports[next(iter(reports))]

    def receiver_report(self, report: ReceiverReport, now: float, sent: int, nacked: int,
                        skipped: int = 0) -> str | None:
        """A report block about the video SSRC. ``sent``: media packets sent to the viewer so
        far; ``nacked``: sequence numbers it has NACKed so far (of packets we had sent it);
        ``skipped``: sequence numbers we never sent it because we never had them (the
        publisher's own loss, forwarded as the same gap) — all cumulative. The viewer counts
        those as lost too; they say nothing about *its* link, so they are taken out."""
        rtt = self._rtt(report, now)
        mark, self._mark = self._mark, _Mark(now, report.highest_sequence & 0xFFFF, report.packets_lost, sent,
                                             nacked, skipped)
        self.estimate = Estimate(self.estimate.loss, self.estimate.nack_rate,
                                 rtt if rtt is not None else self.estimate.rtt_s, report.jitter / self._clock_rate)
        verdict = None
        if mark is not None:
            expected = (self._mark.highest - mark.highest) & 0xFFFF
            if expected < 0x8000:  # else the viewer's numbers went back: a new baseline only
                upstream = max(0, skipped - mark.skipped)
                verdict = self._judge(max(0, expected - upstream), report.packets_lost - mark.lost - upstream,
                                      sent - mark.sent, nacked - mark.nacked, rtt)
                if verdict is True:  # what it covers since video last started or stopped
                    self._congested_for += now - max(mark.at, self._video_since)
                elif verdict is False:
                    self._congested_for = 0.0
        if verdict is True and self.state != OFF and self._congested_for >= self.policy.congested_s:
            return self._switch_off(now)
        return self.tick(now)

    def tick(self, now: float) -> str | None:
        """Time passed: a back-off may be over, a probe may have held."""
        if self.state == OFF and self.retry_at is not None and now >= self.retry_at:
            return self._enter(PROBING, now)
        if (self.state == PROBING and now - self.since >= self.policy.probe_s
                and not self._congested_for):
            return self._enter(ON, now)
        return None

    # --- outputs --------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """When :meth:`tick` may change something (monotonic), or None."""
        if self.state == OFF:
            return self.retry_at
        if self.state == PROBING:
            return self.since + self.policy.probe_s
        return None

    def retry_in(self, now: float) -> float | None:
        """While off: seconds until video is tried again."""
        if self.state != OFF or self.retry_at is None:
            return None
        return max(0.0, self.retry_at - now)

    @property
    def video_on(self) -> bool:
        return self.state != OFF

    # --- internals ------------------------------------------------------------------

    def _rtt(self, report: ReceiverReport, now: float) -> float | None:
        if not report.lsr:
            return None
        sent_at = self._sent_reports.get(report.lsr)
        if sent_at is None:
            return None
        return max(0.0, now - sent_at - report.dlsr / 65536)

    def _judge(self, expected: int, lost: int, sent: int, nacked: int, rtt: float | None) -> bool | None:
        """True: a congested interval; False: a clean one; None: no evidence."""
        policy = self.policy
        loss: float | None = None
        if expected >= policy.min_packets:
            loss = min(1.0, max(0, lost) / expected)
        elif expected == 0 and sent >= policy.min_packets:
            loss = 1.0  # we sent, nothing new arrived
        nack_rate = nacked / sent if sent >= policy.min_packets else None
        if loss is not None or nack_rate is not None:
            self.estimate = Estimate(loss, nack_rate, self.estimate.rtt_s, self.estimate.jitter_s)
        if ((loss is not None and loss > policy.loss_off) or (nack_rate is not None and nack_rate > policy.nack_off)
                or (rtt is not None and rtt > policy.rtt_off_s)):
            return True
        if loss is not None or nack_rate is not None:
            return False
        return None

    def _switch_off(self, now: float) -> str:
        policy = self.policy
        if self.state == ON and now - self._video_since >= policy.stable_s:
            self._backoff = policy.backoff_s  # video held long enough: forgive the past
        backoff = min(self._backoff, policy.max_backoff_s)
        self._backoff = min(backoff * 2, policy.max_backoff_s)
        self.retry_at = now + backoff
        self.fallbacks += 1
        return self._enter(OFF, now)

    def _enter(self, state: str, now: float) -> str:
        video_changes = (state == OFF) != (self.state == OFF)
        self.state, self.since = state, now
        if video_changes:
            self._video_since = now
            self._congested_for = 0.0
        if state != OFF:
            self.retry_at = None
        return state
