"""New public viewers turned away while the hub's media port drops, and their joins paced
(hub.media.overload)."""

from __future__ import annotations

import asyncio

import pytest

from hub.errors import ConfigError, Unavailable
from hub.media import MediaRelay
from hub.media.overload import SUSTAINED_LOOKS, JoinPacer, ViewerShedding
from hub.settings import settings_from_mapping
from tests.kit import wait_until
from tests.media.conftest import RecordedEvents, media_settings, overflow
from tests.media.peers import Publisher, Viewer

STATION = "35.09.01"


def overload(relay: MediaRelay) -> None:
    """The relay's port drops datagrams in ``SUSTAINED_LOOKS`` of its one-second looks in a row."""
    for _ in range(SUSTAINED_LOOKS):
        overflow(relay._binding.muxes[0])
        relay.check_overflow()


def test_bursts_of_drops_shorter_than_the_sustained_looks_refuse_no_one() -> None:
    """A stall's burst (drops in one look, or two when it straddles them) is not an overload."""
    assert SUSTAINED_LOOKS == 3
    shedding = ViewerShedding(hold_s=10.0)
    for now, dropping in enumerate((True, False, True, True, False, True, True, False, True), start=1):
        shedding.note(dropping, float(now))
        assert not shedding.refusing(float(now))


def test_viewers_are_refused_once_drops_last_and_for_the_hold_after_the_last_drop() -> None:
    shedding = ViewerShedding(hold_s=10.0)
    assert not shedding.refusing(0.0)  # nothing dropped yet
    shedding.note(dropping=False, now=1.0)
    shedding.note(dropping=True, now=2.0)
    shedding.note(dropping=True, now=3.0)
    assert not shedding.refusing(3.0)  # two seconds of drops
    shedding.note(dropping=True, now=4.0)  # a third in a row: an overload that lasts
    assert shedding.refusing(4.0) and shedding.refusing(13.9)
    assert shedding.retry_after_s(6.0) == pytest.approx(8.0)
    shedding.note(dropping=False, now=5.0)
    shedding.note(dropping=True, now=6.0)  # while refusing, any drop starts the hold over
    assert shedding.refusing(15.9)
    shedding.note(dropping=False, now=7.0)  # a quiet second does not end it early
    assert shedding.refusing(15.9) and not shedding.refusing(16.0)
    assert shedding.retry_after_s(15.5) == 1.0  # never told to come back at once


def test_a_hold_of_zero_never_refuses() -> None:
    shedding = ViewerShedding(hold_s=0.0)
    for now in (1.0, 2.0, 3.0):
        shedding.note(dropping=True, now=now)
    assert not shedding.refusing(3.0)


async def test_an_overflowing_port_turns_public_viewers_away_and_no_one_else() -> None:
    """The kernel really drops at the shared port (the loop does not read while the test sends):
    after one look with drops a public viewer still gets in; once drops last (``SUSTAINED_LOOKS``
    looks in a row), the next public viewer gets 503 ``overloaded`` with a Retry-After; an operator (the
    Pendopo's wall) still gets in, a viewer already watching keeps its picture, and a
    publisher still gets in (its presence is the public record)."""
    relay = MediaRelay(media_settings(shed_viewers_s=10.0), RecordedEvents())
    clients: list[Publisher | Viewer] = []
    try:
        clients.append(await Publisher.start(relay, STATION, audio=False))
        watching = await Viewer.start(relay, STATION, audio=False)
        clients.append(watching)
        await watching.wait_for(pictures=3)
        relay.check_overflow()  # the first look only sets the baseline
        overflow(relay._binding.muxes[0])
        relay.check_overflow()
        # drops in one look (a stall's burst): a public viewer is still let in
        clients.append(await Viewer.start(relay, STATION, audio=False, client_addr="10.0.0.4"))
        overload(relay)

        with pytest.raises(Unavailable) as refused:
            await Viewer.start(relay, STATION, audio=False, client_addr="10.0.0.2")
        assert refused.value.code == "overloaded" and 1.0 <= refused.value.retry_after <= 10.0
        metrics = relay.metrics()
        assert (metrics["viewers_shed"], metrics["sessions_refused"], metrics["shedding_viewers"]) == (1, 1, 1)

        operator = await Viewer.start(relay, STATION, audio=False, owner="operator:pendopo", client_addr="10.0.0.3")
        clients.append(operator)
        await operator.wait_for(pictures=3)
        seen = len(watching.pictures)
        await watching.wait_for(pictures=seen + 3)
        clients.append(await Publisher.start(relay, "35.09.02", audio=False, client_addr="10.0.0.9"))
        assert relay.metrics()["viewers_shed"] == 1
    finally:
        for client in clients:
            await client.close()
        await relay.close()


async def test_with_shedding_off_an_overflowing_port_refuses_no_viewer() -> None:
    relay = MediaRelay(media_settings(shed_viewers_s=0.0), RecordedEvents())
    clients: list[Publisher | Viewer] = []
    try:
        clients.append(await Publisher.start(relay, STATION, audio=False))
        relay.check_overflow()
        overload(relay)
        assert relay.own_loss.active  # the port did drop
        viewer = await Viewer.start(relay, STATION, audio=False, client_addr="10.0.0.2")
        clients.append(viewer)
        await viewer.wait_for(pictures=3)
        assert relay.metrics()["shedding_viewers"] == 0
    finally:
        for client in clients:
            await client.close()
        await relay.close()


# --- join pacing ----------------------------------------------------------------------


def test_joins_get_turns_per_second_and_past_the_longest_wait_none() -> None:
    pacer = JoinPacer(per_s=10.0, max_wait_s=1.0)
    waits = [pacer.turn(now=100.0) for _ in range(12)]
    assert waits[:11] == pytest.approx([i / 10 for i in range(11)])  # the eleventh waits the whole second
    assert waits[11] is None  # a queue over a second long: no turn given
    assert pacer.retry_after_s(100.0) == pytest.approx(1.0)  # at least a second
    assert pacer.retry_after_s(99.0) == pytest.approx(1.1)  # until a turn is within a second again
    assert pacer.turn(now=100.55) == pytest.approx(0.55)  # the refused join took no turn
    assert pacer.turn(now=200.0) == 0.0  # a quiet hub: at once


@pytest.mark.parametrize("media", [{"public_joins_per_s": -1.0}, {"public_join_wait_s": -0.5}])
def test_negative_pacing_settings_are_named(media: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="media.public_joins_per_s and media.public_join_wait_s"):
        settings_from_mapping({"media": media})


def test_pacing_off_gives_every_join_its_turn_at_once() -> None:
    pacer = JoinPacer(per_s=0.0, max_wait_s=0.0)
    assert [pacer.turn(now=1.0) for _ in range(100)] == [0.0] * 100


async def test_public_viewers_arriving_together_join_in_turns_and_an_operator_waits_for_none() -> None:
    """Two public joins a second, at most 1.2 s of waiting: of four public offers sent at once
    the first is answered at once, the next two wait for their turns (0.5 and 1 s), the fourth
    gets 503 ``busy`` with a Retry-After; an operator's offer sent with them waits for no turn.
    Everyone let in receives pictures."""
    relay = MediaRelay(media_settings(public_joins_per_s=2.0, public_join_wait_s=1.2), RecordedEvents())
    clients: list[Publisher | Viewer] = []
    try:
        clients.append(await Publisher.start(relay, STATION, audio=False))
        public = [await Viewer.offering(audio=False) for _ in range(4)]
        operator, operator_offer = await Viewer.offering(audio=False)
        joins = [viewer.join(relay, STATION, offer, client_addr=f"10.0.0.{i}")
                 for i, (viewer, offer) in enumerate(public)]
        joins.append(operator.join(relay, STATION, operator_offer, owner="operator:pendopo", client_addr="10.0.1.1"))
        results = await asyncio.gather(*joins, return_exceptions=True)

        assert results[:3] == [None, None, None] and results[4] is None
        refused = results[3]
        assert isinstance(refused, Unavailable) and refused.code == "busy" and refused.retry_after >= 1.0
        metrics = relay.metrics()
        assert (metrics["joins_waited"], metrics["joins_refused_busy"], metrics["sessions_refused"]) == (2, 1, 1)
        assert 1000 < metrics["join_wait_ms"] <= 1500 and metrics["joins_waiting"] == 0
        admitted = [viewer for viewer, _ in public[:3]] + [operator]
        clients.extend(admitted)
        for viewer in admitted:
            await viewer.wait_for(pictures=3)
    finally:
        for client in clients:
            await client.close()
        await relay.close()


async def test_a_public_viewer_waiting_for_its_turn_is_refused_if_the_port_overflows_meanwhile() -> None:
    relay = MediaRelay(media_settings(public_joins_per_s=1.0, public_join_wait_s=5.0), RecordedEvents())
    clients: list[Publisher | Viewer] = []
    try:
        clients.append(await Publisher.start(relay, STATION, audio=False))
        first = await Viewer.start(relay, STATION, audio=False)  # takes the turn of this second
        clients.append(first)
        relay.check_overflow()  # the first look only sets the baseline
        waiting, offer = await Viewer.offering(audio=False)
        join = asyncio.ensure_future(waiting.join(relay, STATION, offer, client_addr="10.0.0.2"))
        await wait_until(lambda: relay.metrics()["joins_waiting"] == 1, 10.0, "a join waiting for its turn")
        overload(relay)
        with pytest.raises(Unavailable) as refused:
            await join
        assert refused.value.code == "overloaded"
        assert relay.metrics()["joins_waiting"] == 0
    finally:
        for client in clients:
            await client.close()
        await relay.close()
