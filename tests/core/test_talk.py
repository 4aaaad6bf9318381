"""The talk table: only addressed stations may listen to the Pendopo."""

from __future__ import annotations

from hub.core.talk import Talk, TalkTable


def test_a_station_may_listen_from_talk_start_to_talk_stop_only() -> None:
    table = TalkTable()
    assert not table.may_listen("35.09.01")
    table.start("35.09.01", "budi", 100.0)
    table.start("35.09.01", "budi", 105.0)  # the bus echoes our own start: the first time stays
    assert table.may_listen("35.09.01") and not table.may_listen("35.09.02")
    assert table.get("35.09.01") == Talk("budi", 100.0)
    assert table.stop("35.09.01") == Talk("budi", 100.0)
    assert table.stop("35.09.01") is None
    assert not table.may_listen("35.09.01")
