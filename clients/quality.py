"""Quality levels for weak uplinks: what the station sends, chosen once a tick from link signals.

Theory of operation
-------------------
Office uplinks are ~1 Mbps with loss and 100–300 ms RTT, some days 150 kbps. aiortc's
encoders never go below 250 kbps (VP8) / 500 kbps (H.264) whatever the hub's REMB says, so
on 150 kbps the agent used to push three times what the link carries and viewers saw nothing.
Now the agent sets the encoder's rate itself and sends one rung of a *ladder*:

    L0  as configured in [video] (default 640×360@15, 500 kbps)
    L1  480×270@12, 250 kbps
    L2  320×180@10, 120 kbps
    L3  audio only (the thumbnails go on over the presence WebSocket at every level)

No rung exceeds the one above it (size, frame rate, bitrate; the configured aspect is
kept); a rung whose bitrate is not below the one above is left out. A level *needs* its
video bitrate plus the audio bitrate (payload bits, as the stats count them).

Once a tick (1 s) the caller measures the link and passes :class:`Signals`: the loss fraction
and RTT from the hub's receiver reports, the hub's REMB estimate when a new one came, and
the payload bits per second actually sent. Time is the caller's ``now``; nothing here reads a
clock or does I/O. Per tick:

    usual    = the median RTT of the last minute (60 samples). Not a minimum: aiortc's RTT has
               stray low values — 2–50 ms on a 100–200 ms path, 10–25 % of the samples in
               the lab — and, being aiortc's running average, rises only when a queue stays
    queueing = RTT > usual + queue_rtt_s
    bad      = loss > down_loss
               or (REMB < estimate_ratio × video sent, and loss > good_loss or queueing,
                   and the last change older than estimate_grace_s)
    good     = not bad and (loss unknown or loss ≤ good_loss)

    down   after down_ticks bad ticks among the last down_window (3 of 4: at a level just
           too big, loss came as 13 %, 14 %, 0 %, 12 %), to the highest lower level whose need
           fits the room, at least one step:
               room = min(fit_margin × what was sent × (1 − loss), REMB + audio sent)
           (REMB keeps its own margin: 0.85 × what arrived). 150 kbps under L0: L3 in one step.
    up     after hold seconds of good ticks in a row: one level up, as a *probe* for probe_s.
               hold = min(up_hold_s × 2^failures, cap)   (10 s, 20 s, 40 s, 60 s …)
               cap  = max_hold_audio_s (20 s) out of audio only, else max_hold_s (60 s)
           failures are counted per level climbed from.
    probe  fails — back down, failures + 1 — on probe_bad_ticks ticks in a row that are bad,
           or lossy (> good_loss), or with RTT > usual + probe_rtt_rise_s; or on one tick with
           loss > severe_loss. It holds after probe_s; the failures go back to 0 when the
           level then lasts settle_s or a whole hold (it climbs on): a step down sooner counts
           as a failed probe too (on a link just too narrow for a level, loss built up for
           ~15 s after the climb in the lab).

A link that recovers gets its video back within one hold plus a tick or two: ≤ 22 s even
after failed probes out of audio only. Between two video levels the cap is longer: a link
that carries L1 but not L0 tries L0 once a minute, not every 20 s. A probe that fails costs
the audio a few seconds of loss; on a link that carries only audio that is every ~23 s.

Why REMB counts only beside loss or queueing, and against what was *sent*: REMB is aiortc's
delay-based estimate, at most 1.5 × the incoming rate + 10 kbps. A still picture makes the
encoder undershoot (the test pattern at a 500 kbps target sends ~150 kbps), so REMB sits far
below the level's bitrate on a perfect link. It drops below what is sent when the hub saw
delay grow (GCC's decrease: 0.85 × what arrived), but also, measured in the lab on a clean
1 Mbps link, for 10 s and more after the sent rate jumps (a busy scene after a still one, a
probe: 169 kbps for 455 sent; 230 for 543), and the hub's estimate was seen to stay put for
30 s. Nor can it say that a higher level fits (it stays under 1.5 × what arrives): climbing is
by probing.

Loss above down_loss steps down even when it is random rather than congestion (nothing here
tells them apart); 5 % random loss never does.
"""

from __future__ import annotations

import collections
import dataclasses
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Level:
    """One rung: the picture sent (``bitrate_bps`` 0: audio only)."""

    name: str
    width: int
    height: int
    fps: int
    bitrate_bps: int

    @property
    def video(self) -> bool:
        return self.bitrate_bps > 0

    def picture(self) -> str:
        return f"{self.width}x{self.height}@{self.fps}" if self.video else "audio only"

    def describe(self) -> str:
        if not self.video:
            return f"{self.name} audio only"
        return f"{self.name} {self.picture()} {self.bitrate_bps // 1000} kbps"


# Below the configured picture (L0): (name, height, fps, bitrate); width follows the aspect.
LOWER_RUNGS = (("L1", 270, 12, 250_000), ("L2", 180, 10, 120_000))
AUDIO_ONLY = Level("L3", 0, 0, 0, 0)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def ladder(width: int, height: int, fps: int, bitrate_bps: int) -> tuple[Level, ...]:
    """The levels for a configured picture, best first, audio only last."""
    levels = [Level("L0", width, height, fps, bitrate_bps)]
    for name, rung_height, rung_fps, rung_bps in LOWER_RUNGS:
        above = levels[-1]
        if rung_bps >= above.bitrate_bps:
            continue
        h = min(rung_height, above.height)
        w = min(_even(width * h / height), above.width)
        levels.append(Level(name, w, _even(h), min(rung_fps, above.fps), rung_bps))
    levels.append(AUDIO_ONLY)
    return tuple(levels)


@dataclass(frozen=True)
class Signals:
    """What one tick measured; None: not known this tick (no new report, nothing sent)."""

    loss: float | None = None  # fraction lost since the last receiver report, 0..1
    rtt_s: float | None = None  # from the hub's receiver reports
    estimate_bps: float | None = None  # the hub's REMB, only if a new one came this tick
    video_bps: float | None = None  # video payload actually sent over the tick
    audio_bps: float | None = None  # audio payload actually sent over the tick


@dataclass(frozen=True)
class QualityPolicy:
    """The controller's thresholds and times (seconds); the defaults are the agent's."""

    tick_s: float = 1.0  # how often the caller measures and calls update()
    down_loss: float = 0.10
    down_ticks: int = 3  # bad ticks among the last down_window
    down_window: int = 4
    severe_loss: float = 0.25
    good_loss: float = 0.08
    estimate_ratio: float = 0.6
    estimate_grace_s: float = 5.0
    queue_rtt_s: float = 0.1  # RTT this far above the usual: a queue is building
    rtt_samples: int = 60  # the usual RTT is the median of this many samples (a minute)
    fit_margin: float = 0.8
    up_hold_s: float = 10.0
    max_hold_s: float = 60.0
    max_hold_audio_s: float = 20.0  # out of audio only: video is back within ~this after a recovery
    probe_s: float = 6.0
    probe_bad_ticks: int = 2
    probe_rtt_rise_s: float = 0.2
    settle_s: float = 30.0  # a level lost sooner after the climb to it: a failed probe


@dataclass(frozen=True)
class Change:
    """A level change, with why (for one log line)."""

    previous: Level
    level: Level
    reason: str


@dataclass
class _Probe:
    back_to: int  # the level index to fall back to
    until: float
    strained_ticks: int = 0


class QualityController:
    """Picks a level from ``levels`` (best first, as :func:`ladder` makes them).

    Call :meth:`update` once a tick with the time and that tick's :class:`Signals`; apply
    the :class:`Change` it returns, if any. ``start`` is the level to begin at (a new media
    session starts where the previous one was: the link did not change with it).
    """

    def __init__(self, levels: tuple[Level, ...], audio_bps: int, policy: QualityPolicy | None = None,
                 start: int = 0, now: float = 0.0) -> None:
        if not levels:
            raise ValueError("no levels")
        self.levels = levels
        self.audio_bps = audio_bps
        self.policy = policy or QualityPolicy()
        self.index = min(max(start, 0), len(levels) - 1)
        self.changed_at = now
        self._failures: dict[int, int] = {}  # by level index: climbs from it in a row that did not last
        self._rtts: collections.deque[float] = collections.deque(maxlen=self.policy.rtt_samples)
        self._recent: collections.deque[bool] = collections.deque(maxlen=self.policy.down_window)  # bad?
        self._good_since: float | None = None
        self._climbed_at: float | None = None  # when the climb to this level started (until it settles)
        self._probe: _Probe | None = None

    @property
    def level(self) -> Level:
        return self.levels[self.index]

    @property
    def probing(self) -> bool:
        return self._probe is not None

    @property
    def settled_index(self) -> int:
        """The level to start a next session at: this one, or the one a probe left."""
        return self._probe.back_to if self._probe is not None else self.index

    @property
    def failures(self) -> int:
        """Climbs from this level in a row that did not last."""
        return self._failures.get(self.index, 0)

    @property
    def usual_rtt(self) -> float | None:
        """The median of the recent RTT samples, or None before any."""
        return statistics.median(self._rtts) if self._rtts else None

    def need_bps(self, level: Level) -> int:
        return level.bitrate_bps + self.audio_bps

    def hold_s(self) -> float:
        """Good seconds needed before the next climb."""
        p = self.policy
        cap = p.max_hold_s if self.level.video else p.max_hold_audio_s
        return min(p.up_hold_s * float(2 ** min(self.failures, 16)), cap)

    def update(self, now: float, signals: Signals) -> Change | None:
        if signals.rtt_s is not None and signals.rtt_s <= 0:
            signals = dataclasses.replace(signals, rtt_s=None)  # not a round trip
        if signals.rtt_s is not None:
            self._rtts.append(signals.rtt_s)
        bad, why = self._bad(now, signals)
        if self._probe is not None:
            return self._during_probe(now, signals, bad, why)
        if self._climbed_at is not None and now - self._climbed_at >= self.policy.settle_s:
            self._climbed_at = None
            self._failures.pop(self.index + 1, None)  # the climb to here lasted
        if bad:
            self._good_since = None
            self._recent.append(True)
            bad_ticks = sum(self._recent)
            if bad_ticks >= self.policy.down_ticks and self.index < len(self.levels) - 1:
                if self._climbed_at is not None:  # the probe passed but the level did not last
                    self._failed_from(self.index + 1)
                return self._move(now, self._fitting(signals), f"{why}; {bad_ticks} of {len(self._recent)} ticks bad")
            return None
        self._recent.append(False)
        if not self._good(signals):
            self._good_since = None  # between good and bad: hold here
            return None
        if self._good_since is None:
            self._good_since = now - self.policy.tick_s  # this tick measured the second before it
        if self.index > 0 and now - self._good_since >= self.hold_s():
            back_to = self.index
            self._failures.pop(self.index + 1, None)  # this level lasted a whole hold: it settled
            change = self._move(now, self.index - 1, f"probing up after {now - self._good_since:.0f} s of good link")
            self._probe = _Probe(back_to, now + self.policy.probe_s)
            self._climbed_at = now
            return change
        return None

    # --- rules ------------------------------------------------------------------------------

    def _queueing(self, s: Signals, rise_s: float) -> bool:
        usual = self.usual_rtt
        return s.rtt_s is not None and usual is not None and s.rtt_s > usual + rise_s

    def _bad(self, now: float, s: Signals) -> tuple[bool, str]:
        p = self.policy
        if s.loss is not None and s.loss > p.down_loss:
            return True, f"loss {s.loss:.0%}"
        if (s.estimate_bps is not None and s.video_bps and now - self.changed_at >= p.estimate_grace_s
                and s.estimate_bps < p.estimate_ratio * s.video_bps):
            estimate = f"hub estimate {s.estimate_bps / 1000:.0f} kbps < sent {s.video_bps / 1000:.0f} kbps"
            if s.loss is not None and s.loss > p.good_loss:
                return True, f"{estimate}, loss {s.loss:.0%}"
            if self._queueing(s, p.queue_rtt_s):
                return True, f"{estimate}, {self._rtt_rise(s)}"
        return False, ""

    def _rtt_rise(self, s: Signals) -> str:
        assert s.rtt_s is not None and self.usual_rtt is not None
        return f"RTT {self.usual_rtt * 1000:.0f} → {s.rtt_s * 1000:.0f} ms"

    def _good(self, s: Signals) -> bool:
        return s.loss is None or s.loss <= self.policy.good_loss

    def _during_probe(self, now: float, s: Signals, bad: bool, why: str) -> Change | None:
        probe = self._probe
        assert probe is not None
        p = self.policy
        strain = why
        if not bad and s.loss is not None and s.loss > p.good_loss:
            strain = f"loss {s.loss:.0%}"
        elif not bad and self._queueing(s, p.probe_rtt_rise_s):
            strain = self._rtt_rise(s)
        probe.strained_ticks = probe.strained_ticks + 1 if strain else 0
        failed = ""
        if s.loss is not None and s.loss > p.severe_loss:
            failed = f"loss {s.loss:.0%}"
        elif probe.strained_ticks >= p.probe_bad_ticks:
            failed = f"{strain} for {probe.strained_ticks} ticks"
        if failed:
            self._probe = None
            self._failed_from(probe.back_to)
            return self._move(now, probe.back_to, f"probe failed: {failed}")
        if now >= probe.until and not strain:
            self._probe = None
            self._good_since = now  # the next climb needs a whole hold at this level
        return None
    def _failed_from(self, index: int) -> None:
        self._climbed_at = None
        self._failures[index] = self._failures.get(index, 0) + 1

    def _fitting(self, s: Signals) -> int:
        """The level to step down to: the best lower one that fits what gets through."""
        rooms: list[float] = []
        if s.loss is not None and (s.video_bps is not None or s.audio_bps is not None):
            delivered = ((s.video_bps or 0.0) + (s.audio_bps or 0.0)) * (1.0 - s.loss)
            rooms.append(delivered * self.policy.fit_margin)
        if s.estimate_bps is not None:  # REMB has its own margin: 0.85 × what arrived
            rooms.append(s.estimate_bps + (s.audio_bps if s.audio_bps is not None else self.audio_bps))
        last = len(self.levels) - 1
        if not rooms:
            return min(self.index + 1, last)
        room = min(rooms)
        for index in range(self.index + 1, last + 1):
            if self.need_bps(self.levels[index]) <= room:
                return index
        return last

    def _move(self, now: float, index: int, reason: str) -> Change:
        previous = self.level
        self.index = index
        self.changed_at = now
        self._recent.clear()
        self._good_since = None
        return Change(previous, self.level, reason)
