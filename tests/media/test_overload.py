"""New public viewers turned away while the hub's media port drops (hub.media.overload)."""

from __future__ import annotations

import pytest

from hub.errors import Unavailable
from hub.media import MediaRelay
from hub.media.overload import ViewerShedding
from tests.media.conftest import RecordedEvents, media_settings, overflow
from tests.media.peers import Publisher, Viewer

STATION = "35.09.01"


def test_viewers_are_refused_for_the_hold_after_the_last_drop() -> None:
    shedding = ViewerShedding(hold_s=10.0)
    assert not shedding.refusing(0.0)  # nothing dropped yet
    shedding.note(dropping=False, now=1.0)
    assert not shedding.refusing(1.0)
    shedding.note(dropping=True, now=2.0)
    assert shedding.refusing(2.0) and shedding.refusing(11.9)
    assert shedding.retry_after_s(4.0) == pytest.approx(8.0)
    shedding.note(dropping=True, now=5.0)  # dropping again: the hold starts over
    assert shedding.refusing(14.9)
    shedding.note(dropping=False, now=6.0)  # a quiet second does not end it early
    assert shedding.refusing(14.9) and not shedding.refusing(15.0)
    assert shedding.retry_after_s(14.5) == 1.0  # never told to come back at once


def test_a_hold_of_zero_never_refuses() -> None:
    shedding = ViewerShedding(hold_s=0.0)
    shedding.note(dropping=True, now=1.0)
    assert not shedding.refusing(1.0)


async def test_an_overflowing_port_turns_public_viewers_away_and_no_one_else() -> None:
    """The kernel really drops at the shared port (the loop does not read while the test sends):
    the next public viewer gets 503 ``overloaded`` with a Retry-After; an operator (the
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
        overflow(relay._binding.muxes[0])
        relay.check_overflow()
        assert relay.own_loss.active  # the port did drop
        viewer = await Viewer.start(relay, STATION, audio=False, client_addr="10.0.0.2")
        clients.append(viewer)
        await viewer.wait_for(pictures=3)
        assert relay.metrics()["shedding_viewers"] == 0
    finally:
        for client in clients:
            await client.close()
        await relay.close()
