"""``python -m clients.demo``: how many test-pattern agents it starts."""

from __future__ import annotations

import pytest

from clients.demo import DEFAULT_STATIONS, station_count
from hub.settings import HubSettings


def test_demo_stations_zero_switches_the_agents_off() -> None:
    assert station_count({"demo_stations": 0}, None) == 0
    assert station_count({"demo_stations": 7}, None) == 7
    assert station_count({"demo_stations": 7}, 0) == 0  # --stations wins
    assert station_count({}, None) == DEFAULT_STATIONS == HubSettings().demo_stations  # one default


@pytest.mark.parametrize(("section", "requested", "message"), [
    ({"demo_stations": -1}, None, r"\[hub\] demo_stations must be 0 or more"),
    ({"demo_stations": "4"}, None, r"must be a whole number, not '4'"),
    ({"demo_stations": True}, None, "must be a whole number"),
    ({}, -2, "--stations must be 0 or more"),
])
def test_a_bad_count_stops_the_demo_with_a_message(section: dict[str, object], requested: int | None,
                                                   message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        station_count(section, requested)
