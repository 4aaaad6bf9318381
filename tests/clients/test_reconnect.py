"""Never gives up: hub restarts, a revoked token, and twenty agents starting together."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from pathlib import Path

import pytest

from clients import control
from clients.agent import Agent
from clients.backoff import BackoffPolicy
from tests.clients.helpers import agent_config, start_agent
from tests.kit import hub_settings, start_hub, stop_hub, timeout, wait_until

STATION = "35.09.01.2001"


async def test_hub_restart_agent_comes_back_and_ledger_shows_gap(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path)
    hub = await start_hub(settings)
    port = hub.port
    token = await hub.token(STATION)
    expected = "live"  # the agent publishes media: it must come back live, not just online
    agent = await start_agent(agent_config(tmp_path, hub, STATION, token, media=True))
    try:
        await wait_until(lambda: hub.hub.stations.table.get(STATION).state == expected, 10, "the station to go live")
        welcomes = agent.presence.welcomes
        await stop_hub(hub)
        stopped_at = time.time()
        # While the hub is down the agent keeps trying (refused), backing off up to the 1 s cap.
        await agent.wait_until(lambda a: a.presence.attempts >= welcomes + 2, timeout(10))
        assert not agent.presence.online
        restarted_at = time.time()
        hub = await start_hub(settings, port=port)  # same port, same data_dir (tokens persist)
        await agent.wait_until(lambda a: a.presence.welcomes > welcomes, timeout(10))
        back_s = time.time() - restarted_at
        await wait_until(lambda: hub.hub.stations.table.get(STATION).state == expected, 10,
                         "the station to be live again")
        live_again_s = time.time() - restarted_at
        # The ledger (one SQLite file under data_dir) has the first session closed at the
        # shutdown and a new one opened after the restart: the gap is the downtime.
        intervals = [i for i in await hub.hub.ledger.inner.intervals(0, 2e9) if i.station == STATION]
        before = [i for i in intervals if i.start < stopped_at]
        after = [i for i in intervals if i.start >= restarted_at]
        assert expected in [i.state for i in before] and all(i.end is not None for i in before)
        last_end = max(i.end for i in before if i.end is not None)
        assert last_end <= stopped_at + 0.5
        assert after and after[0].state == "online" and after[-1].state == expected
        gap = after[0].start - last_end
        assert gap >= restarted_at - stopped_at - 0.5
        print(f"back online {back_s:.2f} s and {expected} {live_again_s:.2f} s after the hub restarted; "
              f"ledger gap {gap:.2f} s")
    finally:
        await agent.stop()
        await stop_hub(hub)


async def test_a_kegiatan_survives_a_hub_restart(tmp_path: Path, unused_tcp_port: int) -> None:
    settings = hub_settings(tmp_path)
    hub = await start_hub(settings)
    port = hub.port
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION), control_port=unused_tcp_port)
    agent = await start_agent(config)
    try:
        await agent.wait_until(lambda a: a.presence.online, timeout(10))
        assert (await control.request(unused_tcp_port, {"cmd": "activity.start", "title": "Musyawarah Desa"}))["ok"]
        await wait_until(lambda: hub.hub.stations.table.get(STATION).activity, 5, "the kegiatan on the hub")
        await stop_hub(hub)
        hub = await start_hub(settings, port=port)  # a new process forgets every kegiatan
        await wait_until(lambda: (hub.hub.stations.table.get(STATION).activity or {}).get("title")
                         == "Musyawarah Desa", 10, "the agent to announce its kegiatan again")
    finally:
        await agent.stop()
        await stop_hub(hub)


async def test_revoked_token_stops_fast_retries_and_says_why(tmp_path: Path, caplog: pytest.LogCaptureFixture
                                                             ) -> None:
    hub = await start_hub(hub_settings(tmp_path))
    try:
        token = await hub.token(STATION)
        config = agent_config(tmp_path, hub, STATION, token, media=False,
                              network={"auth_retry_s": 600.0})
        agent = await start_agent(config)
        await agent.wait_until(lambda a: a.presence.online, timeout(5))
        await hub.token(STATION)  # rotate: the agent's token is now revoked
        with caplog.at_level(logging.ERROR, logger="jaga.station.presence"):
            # The hub keeps the current session; a restart of the link must present the token.
            for session in list(hub.hub.stations.sessions.values()):
                await session.peer.close(4408, "test: drop the session")
            await agent.wait_until(lambda a: a.presence.state == "rejected", timeout(10))
        attempts = agent.presence.attempts
        assert "rejected the token" in caplog.text and "jaga-hub stations token 35.09.01.2001" in caplog.text
        assert str(config.token_path) in caplog.text
        assert agent.state == "token-rejected"
        # In a tight loop it would have tried dozens of times by now; it waits ≥ 300 s instead.
        assert agent.presence.next_attempt_in >= 300
        with pytest.raises(TimeoutError):
            await agent.wait_until(lambda a: a.presence.attempts > attempts, 1.5)
        # Writing a new token into the file cuts the wait short.
        config.token_path.write_text(await hub.token(STATION))
        await agent.wait_until(lambda a: a.presence.online, timeout(5))
        await agent.stop()
    finally:
        await stop_hub(hub)


MANY = 20
JITTER_S = 2.0  # the first attempt's window (network.backoff_base_s)


async def test_twenty_agents_started_together_spread_their_connections(tmp_path: Path) -> None:
    # The registry gets 20 desa; their agents start at the same instant, as after a power cut.
    ids = [f"35.09.03.{2001 + n}" for n in range(MANY)]
    registry = tmp_path / "stations.csv"
    registry.write_text("id,name,kind,kecamatan,public\n"
                        + "".join(f"{i},Desa {n},desa,Ajung,true\n" for n, i in enumerate(ids)))
    hub = await start_hub(hub_settings(tmp_path))
    agents: list[Agent] = []
    try:
        configs = [agent_config(tmp_path, hub, i, await hub.token(i), media=False,
                                network={"backoff_base_s": JITTER_S, "backoff_cap_s": 4.0}) for i in ids]
        started = time.time()
        agents = [Agent(c) for c in configs]
        await asyncio.gather(*(a.start() for a in agents))
        await asyncio.gather(*(a.wait_until(lambda x: x.presence.online, timeout(JITTER_S + 5)) for a in agents))
        intervals = [i for i in await hub.hub.ledger.inner.intervals(0, 2e9) if i.state == "online"]
        offsets = sorted(i.start - started for i in intervals)
        assert len(offsets) == MANY
        spread = offsets[-1] - offsets[0]
        in_first_tenth = sum(1 for o in offsets if o < JITTER_S / 10)
        print(f"{MANY} agents connected over {spread:.2f} s (first {offsets[0]:.2f} s, last {offsets[-1]:.2f} s); "
              f"{in_first_tenth} in the first {JITTER_S / 10:.1f} s")
        # Each first attempt is uniform on [0, JITTER_S). For 20 such draws the range is
        # below 0.3·JITTER_S with probability 20·0.3^19 − 19·0.3^20 ≈ 2e-9, and ≥ 10 of them
        # fall in the first tenth with probability ≤ C(20,10)·0.1^10 ≈ 2e-5: neither flakes.
        assert spread >= 0.3 * JITTER_S
        assert in_first_tenth < 10
        assert offsets[-1] <= JITTER_S + timeout(2)  # and the spread costs at most one window
    finally:
        await asyncio.gather(*(a.stop() for a in agents))
        await stop_hub(hub)


def test_first_attempt_delays_are_what_the_spread_test_assumes() -> None:
    policy = BackoffPolicy(base_s=JITTER_S)
    rng = random.Random(1)
    draws = [policy.delay(0, rng) for _ in range(10_000)]
    assert 0 <= min(draws) and max(draws) < JITTER_S
    assert abs(sum(draws) / len(draws) - JITTER_S / 2) < 0.05


async def test_a_jaga_hub_serve_restart_is_a_restart_to_the_agent(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM to a real `jaga-hub serve`: its close code is the one the agent takes for a
    restart (retry from the first window, re-make the WHIP session), not a lost connection."""
    from clients.presence import Outcome
    from tests.kit import HubProcess

    process = HubProcess(tmp_path / "hub")
    await process.start()
    try:
        agent = await start_agent(agent_config(tmp_path, process.http, STATION, process.token(STATION), media=True))
        outcomes: list[Outcome] = []
        report = agent.presence._report  # every outcome passes here: a spy on it

        def spy(outcome: Outcome) -> None:
            outcomes.append(outcome)
            report(outcome)

        monkeypatch.setattr(agent.presence, "_report", spy)
        try:
            await agent.wait_until(lambda a: a.state == "live", timeout(15))
            welcomes = agent.presence.welcomes
            await asyncio.to_thread(process.stop)
            await wait_until(lambda: outcomes, 10, "the agent to see the hub go")
            assert (outcomes[0].kind, outcomes[0].detail) == ("restart", "hub shutting down"), outcomes[0]
            await process.start()
            await agent.wait_until(lambda a: a.presence.welcomes > welcomes and a.state == "live", timeout(15))
        finally:
            await agent.stop()
    finally:
        process.stop()
