"""A station's link goes silent (no FIN, no RST): reconnecting, then offline on time, the gap
in the ledger; when it comes back it is online again."""

from __future__ import annotations

import asyncio

from tests.faults.proxy import StallingProxy
from tests.kit import RunningHub, timeout
from tests.wsclient import Client, heartbeat, presence_of, station


async def test_silent_link_goes_reconnecting_then_offline_and_recovers(hub: RunningHub) -> None:
    proxy = await StallingProxy(hub.port).start()
    watcher = await Client.open(f"{hub.ws}/ws/watch")
    await watcher.recv()
    token = await hub.token("35.09.01.2002")
    client, _ = await station(f"ws://127.0.0.1:{proxy.port}", "35.09.01.2002", token)
    beats = asyncio.create_task(heartbeat(client))
    try:
        online = await watcher.recv_until(presence_of("35.09.01.2002", "online"))
        proxy.stall()
        stalled_at = hub.hub.clock()
        reconnecting = await watcher.recv_until(presence_of("35.09.01.2002", "reconnecting"), wait=5)
        assert reconnecting["reason"] == "silent"
        offline = await watcher.recv_until(presence_of("35.09.01.2002", "offline"), wait=5)
        assert offline["reason"] == "timeout"
        settings = hub.hub.settings.presence
        # Offline comes timeout_s after the last heartbeat that got through, give or take a tick.
        assert offline["since"] - stalled_at <= settings.timeout_s + 0.5 + timeout(0.5)
        beats.cancel()
        await proxy.cut()
        client.abort()

        back, _ = await station(hub.ws, "35.09.01.2002", token)  # the link returns: a fresh connection
        await watcher.recv_until(presence_of("35.09.01.2002", "online"))
        intervals = [i for i in await hub.hub.ledger.inner.intervals(0, 2e9) if i.station == "35.09.01.2002"]
        assert [(i.state, i.end_reason) for i in intervals] == [
            ("online", "silent"), ("reconnecting", "timeout"), ("online", None)]
        assert intervals[0].start == online["since"]
        gap_start = intervals[1].end
        assert gap_start is not None and intervals[2].start - gap_start > 0  # the gap is recorded as offline time
        await back.close()
    finally:
        beats.cancel()
        await proxy.cut()
