"""`kill -9` of a real hub process: intervals closed before the crash stay as they were, the
open ones are closed at their last checkpoint on restart."""

from __future__ import annotations

from pathlib import Path

from tests.kit import HubProcess, wait_until
from tests.wsclient import station


async def test_kill_9_keeps_closed_intervals_and_closes_open_ones_at_checkpoint(tmp_path: Path) -> None:
    hub = HubProcess(tmp_path)
    token = hub.token("35.09.01")
    await hub.start()
    try:
        first, _ = await station(hub.ws, "35.09.01", token)
        await first.close()  # a clean close: one closed interval before the crash
        await wait_until(lambda: any(r["end"] is not None for r in hub.intervals()), 10, "the closed interval")
        second, _ = await station(hub.ws, "35.09.01", token)
        await wait_until(lambda: any(r["end"] is None and r["checkpoint"] > r["start"] for r in hub.intervals()), 10,
                         "a checkpoint of the open interval")
        before = hub.intervals()
        hub.kill()
        second.abort()
    finally:
        hub.kill()
    closed_before = [r for r in before if r["end"] is not None]
    assert [r["end_reason"] for r in closed_before] == ["closed"]

    await hub.start()
    try:
        after = hub.intervals()
    finally:
        hub.stop()
    assert [r for r in after if r["id"] in {c["id"] for c in closed_before}] == closed_before
    crashed = [r for r in after if r["end_reason"] == "crash"]
    assert len(crashed) == 1
    assert crashed[0]["end"] == crashed[0]["checkpoint"] >= crashed[0]["start"]
    assert all(r["end"] is not None for r in after)
