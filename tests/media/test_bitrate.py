"""The faster bandwidth-estimate steps give exactly what aiortc's own give."""

from __future__ import annotations

from aiortc.rate import BandwidthUsage, OveruseEstimator, RateCounter, RemoteBitrateEstimator
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.media.bitrate import OveruseFilter, RembEstimate, RembThrottle, WindowRate

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


@given(st.lists(st.floats(min_value=0, max_value=1000, allow_nan=False) | st.sampled_from([33.0, 66.0]),
                min_size=61, max_size=300))  # longer than the window: its smallest leaves it
def test_min_frame_period_matches_aiortcs(deltas: list[float]) -> None:
    theirs, ours = OveruseEstimator(), OveruseFilter()
    for delta in deltas:
        assert ours.min_frame_period(delta) == theirs.update_min_frame_period(delta)
    assert ours.history == theirs.ts_delta_hist


# One packet group's delta: (arrival ms, send-time ms, size in bytes, the detector's hypothesis)
Delta = tuple[int, float, int, BandwidthUsage]
DELTAS = st.lists(st.tuples(st.integers(-50, 500), st.floats(0, 200, allow_nan=False),
                            st.integers(-30_000, 30_000), st.sampled_from(list(BandwidthUsage))), max_size=400)


@given(DELTAS)
def test_overuse_filter_matches_aiortcs_overuse_estimator_to_the_bit(deltas: list[Delta]) -> None:
    assert_filter_matches_aiortc(deltas)


def test_overuse_filter_floors_the_noise_variance_as_aiortc_does() -> None:
    # A steady stream (frames 66 ms apart, no delay trend): the noise variance decays to 1.
    assert assert_filter_matches_aiortc([(66, 66.0, 0, BandwidthUsage.NORMAL)] * 400).var_noise == 1


def assert_filter_matches_aiortc(deltas: list[Delta]) -> OveruseFilter:
    theirs, ours = OveruseEstimator(), OveruseFilter()
    for arrival_delta_ms, timestamp_delta_ms, size_delta, usage in deltas:
        theirs.update(arrival_delta_ms, timestamp_delta_ms, size_delta, usage, 0)
        ours.update(arrival_delta_ms, timestamp_delta_ms, size_delta, usage.value)
        assert (ours.offset, ours.num_of_deltas) == (theirs.offset(), theirs.num_of_deltas())
    assert (ours.slope, ours.previous_offset, ours.avg_noise, ours.var_noise) == (
        theirs.slope, theirs.previous_offset, theirs.avg_noise, theirs.var_noise)
    assert [[ours.e00, ours.e01], [ours.e10, ours.e11]] == theirs.E
    assert ours.history == theirs.ts_delta_hist
    return ours


# One packet: (µs of send time since the previous packet, possibly negative: reordered; ms of
# arrival since the previous one; payload size; SSRC). Packets of a frame are sent
# microseconds apart, frames 20-70 ms apart; arrival steps grow to make the detector see
# overuse, and the 24-bit abs-send-time wraps every 64 s. Every sequence starts with 8 s of
# a steady 15 fps stream, so the rate control is running when the random part begins.
STEADY = [(50 if packet else 66_000, 0 if packet else 66, 1000, 1111) for _ in range(120) for packet in range(4)]
PACKETS = st.lists(
    st.tuples(st.one_of(st.integers(0, 400), st.integers(500, 6000), st.integers(20_000, 70_000),
                        st.integers(-30_000, -1), st.integers(60_000_000, 70_000_000)),
              st.one_of(st.integers(0, 8), st.integers(20, 120), st.sampled_from([500, 501]), st.integers(500, 1500)),
              st.integers(0, 1200), st.sampled_from([1111, 2222])),
    max_size=300)


@settings(max_examples=300)  # the burst and feedback boundaries need the tries
@given(PACKETS)
def test_remb_estimate_matches_aiortcs_remote_bitrate_estimator(packets: list[tuple[int, int, int, int]]) -> None:
    assert_same_as_aiortc(STEADY + packets)


def test_remb_estimate_matches_aiortc_at_the_burst_and_lapse_boundaries() -> None:
    assert_same_as_aiortc(STEADY + [
        (66_000, 66, 1000, 1111), (3_000, 2, 1000, 1111), (3_000, 3, 1000, 1111),  # not a burst: 3 - 3 is not < 0
        (66_000, 66, 1000, 1111), (5_000, 5, 1000, 1111), (5_000, 6, 1000, 1111),  # 6 ms apart: not a burst
        (66_000, 1500, 900, 1111), (100, 0, 900, 1111), (100, 0, 900, 1111),  # the rate lapses, then two at once
        (66_000, 66, 1000, 1111), (66_000, 500, 1000, 1111), (66_000, 501, 1000, 1111)])


def assert_same_as_aiortc(packets: list[tuple[int, int, int, int]]) -> None:
    theirs, driven = with_libwebrtcs_reduce_rule(RemoteBitrateEstimator()), RemoteBitrateEstimator()
    ours = RembEstimate(driven, BandwidthUsage.OVERUSING)
    for arrival_ms, abs_send_time, size, ssrc in timed(packets):
        expected = theirs.add(arrival_time_ms=arrival_ms, abs_send_time=abs_send_time, payload_size=size, ssrc=ssrc)
        assert ours.add(arrival_ms, abs_send_time, size, ssrc) == expected
        assert ours.incoming_rate(arrival_ms) == theirs.incoming_bitrate.rate(arrival_ms)
        assert ours.overuse.num_of_deltas == theirs.estimator.num_of_deltas()
    assert driven.detector.state() == theirs.detector.state()
    assert ours.overuse.offset == theirs.estimator.offset()
    assert driven.rate_control.current_bitrate == theirs.rate_control.current_bitrate
    assert driven.ssrcs == theirs.ssrcs


def timed(packets: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """(arrival ms, abs-send-time, size, SSRC) of the steps in ``packets``."""
    send_us, arrival_ms, out = 5_000_000, 3_900_000_000_000, []
    for send_step_us, arrival_step_ms, size, ssrc in packets:
        send_us += send_step_us
        arrival_ms += arrival_step_ms
        abs_send_time = (send_us * (1 << 18) // 1_000_000) & 0xFFFFFF  # 6.18 fixed-point seconds
        out.append((arrival_ms, abs_send_time, size, ssrc))
    return out


def with_libwebrtcs_reduce_rule(estimator: RemoteBitrateEstimator) -> RemoteBitrateEstimator:
    """aiortc's estimator, whose rate control is asked again while overusing only when
    libwebrtc's ``AimdRateControl::TimeToReduceFurther`` allows it (aiortc asks on every
    packet): an RTT (clamped to 10-200 ms) since its last change, or the incoming rate below
    half the estimate; never without an incoming rate."""
    control = estimator.rate_control
    update = control.update

    def update_as_libwebrtc(usage: BandwidthUsage, throughput: int | None, now_ms: int) -> int | None:
        last = estimator.last_update_ms
        periodic = last is None or now_ms - last > control.feedback_interval()
        if usage == BandwidthUsage.OVERUSING and not periodic:
            changed = control.last_change_ms
            after_rtt = changed is None or now_ms - changed >= min(max(control.rtt, 10), 200)
            halved = control.current_bitrate_initialized and throughput is not None \
                and throughput < control.current_bitrate / 2
            if throughput is None or not (after_rtt or halved):
                return None
        return update(usage, throughput, now_ms)

    control.update = update_as_libwebrtc  # type: ignore[method-assign,assignment]  # shadowed per instance
    return estimator


def test_remb_estimate_cuts_again_while_overusing_only_after_an_rtt() -> None:
    # After the steady start, arrivals 10 ms later every frame (a queue filling): the
    # detector overuses for seconds. aiortc recomputes the target on every packet meanwhile;
    # libwebrtc, and we, once per 200 ms (aiortc's fixed RTT), reaching the same estimate.
    queueing = [(50 if packet else 66_000, 0 if packet else 76, 1000, 1111) for _ in range(60) for packet in range(4)]
    plain, driven = RemoteBitrateEstimator(), RemoteBitrateEstimator()
    ours = RembEstimate(driven, BandwidthUsage.OVERUSING)
    updates: dict[str, list[tuple[int, int]]] = {"aiortc": [], "ours": []}
    for arrival_ms, abs_send_time, size, ssrc in timed(STEADY + queueing):
        for name, answer in (("aiortc", plain.add(arrival_ms, abs_send_time, size, ssrc)),
                             ("ours", ours.add(arrival_ms, abs_send_time, size, ssrc))):
            if answer is not None:
                updates[name].append((arrival_ms, answer[0]))
    assert driven.detector.state() == plain.detector.state() == BandwidthUsage.OVERUSING
    steady_ms = timed(STEADY)[-1][0]
    while_queueing = {name: [u for u in found if u[0] > steady_ms] for name, found in updates.items()}
    assert len(while_queueing["aiortc"]) > 3 * len(while_queueing["ours"])  # every packet, ours per 200 ms
    times = [at for at, _ in while_queueing["ours"]]
    assert len(times) > 5 and min(later - earlier for earlier, later in zip(times, times[1:], strict=False)) >= 200
    before = [target for at, target in updates["ours"] if at <= steady_ms][-1]
    assert updates["ours"][-1][1] < 0.9 * before  # cut all the same
    assert updates["ours"][-1][1] == min(target for _, target in while_queueing["aiortc"])


def test_remb_estimate_sees_overuse_when_queueing_delay_grows() -> None:
    # A 500 kbps stream whose packets arrive later and later (a queue filling): the estimate
    # drops below what was received, as aiortc's own does (the test above: identical).
    driven = RemoteBitrateEstimator()
    ours = RembEstimate(driven, BandwidthUsage.OVERUSING)
    targets = []
    for frame in range(300):
        send_ms, delay_ms = frame * 66, 20 + (frame - 150) * 3 if frame > 150 else 20
        for packet in range(4):
            abs_send_time = ((send_ms * 1000 + packet * 50) * (1 << 18) // 1_000_000) & 0xFFFFFF
            remb = ours.add(10_000_000 + send_ms + delay_ms, abs_send_time, 1000, 1111)
            if remb is not None:
                targets.append(remb[0])
    assert driven.detector.state() == BandwidthUsage.OVERUSING
    assert targets[-1] < 0.8 * max(targets)


def test_remb_goes_at_once_on_a_fall_otherwise_once_a_second() -> None:
    throttle = RembThrottle(interval_s=1.0, sooner_below=0.97)
    assert throttle.should_send(100.0, 500_000)  # the first, whenever it comes
    assert not throttle.should_send(100.2, 500_000)  # steady: waits for the second to pass
    assert not throttle.should_send(100.5, 900_000)  # a rise waits too
    assert not throttle.should_send(100.6, 485_000)  # a fall of 3 % is not yet one
    assert throttle.should_send(100.7, 484_000)  # below 97 % of the last sent: at once
    assert not throttle.should_send(101.6, 484_000)  # and the second counts from there
    assert throttle.should_send(101.7, 484_000)
    assert throttle.should_send(101.71, 400_000)  # a fall from the last sent, however recent
