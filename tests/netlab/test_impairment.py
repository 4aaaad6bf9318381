"""The per-direction impairment as pure logic: made-up times, a seeded RNG, no I/O."""

from __future__ import annotations

import functools
import random

import pytest

from tests.netlab.impairment import DROP_REASONS, Filter, Link, LinkSpec
from tests.netlab.packets import icmp_echo, tcp, udp

HOST, INSIDE = "10.7.0.1", "10.7.0.2"


@functools.cache
def datagram(size: int = 1000) -> bytes:
    """A UDP packet of ``size`` bytes on the wire, namespace → host."""
    return udp(INSIDE, 5000, HOST, 6000, b"x" * (size - 28))


def assert_adds_up(link: Link) -> None:
    c = link.counters
    assert c.received_packets == c.forwarded_packets + sum(c.dropped.values()) + link.pending


def test_an_unimpaired_link_delivers_at_once_in_order() -> None:
    link = Link("up")
    packets = [datagram(100 + i) for i in range(5)]
    for p in packets:
        assert link.push(p, 1.0) == 1.0
    assert link.due(1.0) == packets
    assert link.next_deadline() is None
    stats = link.stats()
    assert stats["forwarded"] == {"packets": 5, "bytes": sum(len(p) for p in packets)}
    assert stats["dropped_total"] == 0


def test_delay_holds_each_packet_for_the_one_way_delay() -> None:
    link = Link("down", LinkSpec(delay_ms=100))
    first, second = datagram(), datagram(200)
    assert link.push(first, 10.0) == pytest.approx(10.1)
    assert link.push(second, 10.05) == pytest.approx(10.15)
    assert link.due(10.099) == []
    assert link.next_deadline() == pytest.approx(10.1)
    assert link.due(10.1) == [first]
    assert link.due(10.2) == [second]
    assert_adds_up(link)


def test_loss_drops_the_configured_fraction_reproducibly() -> None:
    verdicts = []
    for _ in range(2):
        link = Link("up", LinkSpec(loss=0.1), seed=42)
        verdicts.append([link.push(datagram(), i * 0.001) for i in range(10_000)])
        assert_adds_up(link)
    assert verdicts[0] == verdicts[1]  # same seed, same packets → the same losses
    lost = verdicts[0].count("loss")
    assert 900 <= lost <= 1100
    assert Link("up", LinkSpec(loss=0.1), seed=42).counters.dropped["loss"] == 0


def test_the_two_directions_lose_different_packets() -> None:
    up, down = Link("up", LinkSpec(loss=0.5), seed=3), Link("down", LinkSpec(loss=0.5), seed=3)
    assert [up.push(datagram(), 0) for _ in range(64)] != [down.push(datagram(), 0) for _ in range(64)]


def test_rate_limit_serialises_packets_and_drops_beyond_the_queue() -> None:
    # 800 kbps: a 1000-byte packet takes 10 ms; a 300 ms queue holds 30 of them
    link = Link("up", LinkSpec(rate_kbps=800, queue_ms=300))
    verdicts = [link.push(datagram(), 0.0) for _ in range(40)]
    assert verdicts[:30] == [pytest.approx(0.01 * (i + 1)) for i in range(30)]
    assert verdicts[30:] == ["queue"] * 10
    # 50 ms later five have gone out: room for five more, not six
    more = [link.push(datagram(), 0.05) for _ in range(6)]
    assert more[:5] == [pytest.approx(0.31 + 0.01 * i) for i in range(5)]
    assert more[5] == "queue"
    assert link.counters.dropped["queue"] == 11
    assert_adds_up(link)


def test_rate_limit_caps_throughput_at_the_rate() -> None:
    # offered 2 Mbps for 10 s into a 500 kbps link: about 500 kbps comes out
    link = Link("down", LinkSpec(rate_kbps=500, delay_ms=50))
    delivered = 0
    t = 0.0
    while t < 10.0:
        link.push(datagram(), t)
        t += 0.004  # 1000 bytes every 4 ms = 2 Mbps
        delivered += sum(len(p) for p in link.due(t))
    kbps = delivered * 8 / 10.0 / 1000
    assert 480 <= kbps <= 505
    assert link.counters.dropped["queue"] > 0


def test_small_packets_pass_a_rate_limit_they_fit_under() -> None:
    link = Link("up", LinkSpec(rate_kbps=1000, queue_ms=300))
    for i in range(1000):  # 200 bytes every 2 ms = 800 kbps
        assert isinstance(link.push(datagram(200), i * 0.002), float)
    assert link.counters.dropped["queue"] == 0


def test_delay_is_added_after_the_queue() -> None:
    link = Link("up", LinkSpec(rate_kbps=800, delay_ms=100))
    assert link.push(datagram(), 0.0) == pytest.approx(0.11)
    assert link.push(datagram(), 0.0) == pytest.approx(0.12)


def test_outage_drops_new_and_in_flight_packets_and_recovers() -> None:
    link = Link("up", LinkSpec(delay_ms=100, rate_kbps=800))
    for _ in range(3):
        link.push(datagram(), 0.0)
    link.set_outage(True)
    assert link.pending == 0
    assert link.push(datagram(), 0.01) == "outage"
    assert link.counters.dropped["outage"] == 4
    link.set_outage(False)
    # the queue the outage emptied is not still occupying the link
    assert link.push(datagram(), 0.02) == pytest.approx(0.13)
    assert_adds_up(link)


def test_jitter_never_reorders() -> None:
    link = Link("down", LinkSpec(delay_ms=50, jitter_ms=40), seed=5)
    times = [float(link.push(datagram(), i * 0.001)) for i in range(500)]
    assert times == sorted(times)
    assert all(i * 0.001 + 0.05 <= t <= i * 0.001 + 0.09 + 1e-9 or t == times[max(0, i - 1)]
               for i, t in enumerate(times))


def test_new_settings_apply_to_later_packets_only() -> None:
    link = Link("up", LinkSpec(delay_ms=200))
    early = datagram()
    link.push(early, 0.0)
    link.configure(LinkSpec(delay_ms=10))
    late = datagram(300)
    # the late packet would be due at 0.06 but never overtakes the one ahead of it
    assert link.push(late, 0.05) == pytest.approx(0.2)
    assert link.due(0.2) == [early, late]


def test_block_udp_filter() -> None:
    rule = Filter(block_udp=True)
    assert not rule.passes(udp(INSIDE, 1, HOST, 2), "up")
    assert rule.passes(tcp(INSIDE, 1, HOST, 2), "up")
    assert rule.passes(icmp_echo(INSIDE, HOST), "down")
    link = Link("up")
    link.filter = rule
    assert link.push(udp(INSIDE, 1, HOST, 2), 0.0) == "filter"
    assert link.counters.dropped["filter"] == 1


def test_allow_only_tcp_to_one_address_and_port() -> None:
    rule = Filter(allow_tcp=(HOST, 443))
    assert rule.passes(tcp(INSIDE, 40000, HOST, 443), "up")
    assert rule.passes(tcp(HOST, 443, INSIDE, 40000), "down")  # its replies
    assert not rule.passes(tcp(INSIDE, 40000, HOST, 80), "up")
    assert not rule.passes(tcp(INSIDE, 40000, "10.7.0.9", 443), "up")
    assert not rule.passes(tcp(HOST, 80, INSIDE, 40000), "down")
    assert not rule.passes(udp(INSIDE, 40000, HOST, 443), "up")
    assert not rule.passes(icmp_echo(INSIDE, HOST), "up")
    assert not rule.passes(b"\x60" + b"\0" * 10, "up")  # not a packet it can read


def test_filter_round_trips_through_json() -> None:
    for rule in (Filter(), Filter(block_udp=True), Filter(allow_tcp=(HOST, 8080))):
        assert Filter.from_json(rule.to_json()) == rule


def test_counters_add_up_under_everything_at_once() -> None:
    rng = random.Random(9)
    link = Link("up", LinkSpec(delay_ms=30, loss=0.1, rate_kbps=300, queue_ms=100), seed=9)
    t = 0.0
    for step in range(5000):
        t += rng.uniform(0, 0.01)
        if step % 700 == 0:
            link.set_outage(not link.outage)
        if step % 900 == 0:
            link.filter = Filter(block_udp=not link.filter.block_udp)
        packet = tcp(INSIDE, 1, HOST, 2, b"y" * rng.randrange(100)) if step % 3 else datagram(rng.randrange(60, 1400))
        link.push(packet, t)
        link.due(t)
        assert_adds_up(link)
    assert all(link.counters.dropped[reason] > 0 for reason in DROP_REASONS)
    c = link.counters
    assert c.received_bytes == c.forwarded_bytes + c.dropped_bytes + sum(len(p) for _, _, p in link._heap)


@pytest.mark.parametrize("bad", [{"loss": 1.5}, {"loss": -0.1}, {"delay_ms": -1}, {"rate_kbps": 0}])
def test_link_spec_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        LinkSpec(**bad)


def test_link_spec_round_trips_through_json() -> None:
    spec = LinkSpec(delay_ms=100, loss=0.05, rate_kbps=1000, queue_ms=250, jitter_ms=5)
    assert LinkSpec.from_json(spec.to_json()) == spec
