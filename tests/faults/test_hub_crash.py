"""A real hub process killed with SIGKILL at a random moment under load, then restarted:
every agent comes back on its own, and the ledger matches what the stations did within one
checkpoint period — nothing doubled, nothing left open. And a reconnect storm of the whole
Jember registry after a restart: all back, spread by the agents' jitter, no hub error."""

from __future__ import annotations

import asyncio
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

from clients.agent import Agent
from hub.backends.sqlite import SqliteCredentials
from hub.core.registry import parse_registry
from hub.services.auth import hash_token, mint_token
from tests.clients.helpers import agent_config, start_agent
from tests.kit import REPO, HubProcess, wait_until

REGISTRY = REPO / "data" / "jember_stations.csv"
CHECKPOINT_S = 0.25


def jember_hub(tmp: Path) -> HubProcess:
    """A hub process on the whole Jember registry, with agents' presence timings."""
    return HubProcess(tmp, hub={"checkpoint_s": CHECKPOINT_S}, stations={"registry": str(REGISTRY)},
                      presence={"heartbeat_s": 0.5, "timeout_s": 3.0, "hello_timeout_s": 10.0})


async def mint(hub: HubProcess, stations: list[str]) -> dict[str, str]:
    """Tokens for many stations at once, straight into the hub's credential store (the CLI
    would start a process per station)."""
    store = SqliteCredentials(hub.database)
    tokens = {station: mint_token() for station in stations}
    for station, token in tokens.items():
        await store.set_token_hash(station, hash_token(token))
    await store.close()
    return tokens


async def start_agents(hub: HubProcess, tmp: Path, tokens: dict[str, str], publishers: set[str],
                       **network: Any) -> list[Agent]:
    agents = []
    for station, token in tokens.items():
        config = agent_config(tmp, hub.http, station, token,
                              media=station in publishers, network=network)
        agents.append(await start_agent(config))
    return agents


def ledger_problems(rows: list[dict[str, Any]]) -> list[str]:
    """Per station: no interval left open, none overlapping another (nothing doubled)."""
    problems = []
    by_station: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_station[row["station"]].append(row)
    for station, items in by_station.items():
        for earlier, later in zip(items, items[1:], strict=False):
            if earlier["end"] is None or earlier["end"] > later["start"] + 1e-6:
                problems.append(f"{station}: {earlier} overlaps {later}")
        if items[-1]["end"] is None:
            problems.append(f"{station}: left open {items[-1]}")
    return problems


async def test_kill_9_under_load_agents_return_and_ledger_matches(tmp_path: Path) -> None:
    seed = int(os.environ.get("JAGA_FAULT_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    print(f"fault seed {seed} (JAGA_FAULT_SEED={seed} reproduces it)")
    stations = [s.id for s in parse_registry(REGISTRY.read_text())][:52]
    publishers = set(stations[:2])
    hub = jember_hub(tmp_path)
    await hub.start()
    tokens = await mint(hub, stations)
    agents = await start_agents(hub, tmp_path, tokens, publishers)
    try:
        await wait_until(lambda: all(a.state == ("live" if a.config.station in publishers else "online")
                                     for a in agents), 30, "all 52 agents on", every=0.05)
        await asyncio.sleep(rng.uniform(0, 2 * CHECKPOINT_S))  # the random moment of the crash
        hub.kill()
        killed_at = asyncio.get_running_loop().time()
        before = hub.intervals()
        await hub.start()  # same port: the agents find it again by themselves
        await wait_until(lambda: all(a.state == ("live" if a.config.station in publishers else "online")
                                     for a in agents), 30, "all 52 agents back after the restart", every=0.05)
        back_after = asyncio.get_running_loop().time() - killed_at
        print(f"all 52 back {back_after:.2f} s after the kill")
    finally:
        await asyncio.gather(*(a.stop() for a in agents))
        hub.stop()
    after = hub.intervals()
    assert not ledger_problems(after)
    crashed = [r for r in after if r["end_reason"] == "crash"]
    assert {r["station"] for r in crashed} == set(stations)  # every station was on at the crash
    open_at_kill = [r for r in before if r["end"] is None]
    last_checkpoint = max(r["checkpoint"] for r in open_at_kill)
    for row in crashed:
        # Closed at its last checkpoint: at most one checkpoint period (plus a timer tick)
        # before the last stamp the hub wrote, so at most that much presence is lost.
        assert last_checkpoint - row["end"] <= CHECKPOINT_S + 1.0
    # Intervals closed before the crash were not touched by the recovery.
    closed_before = {r["id"]: r for r in before if r["end"] is not None}
    assert all(closed_before[r["id"]] == r for r in after if r["id"] in closed_before)
    assert "Traceback" not in hub.log_text()


async def test_reconnect_storm_of_the_whole_registry_is_spread_by_jitter(tmp_path: Path) -> None:
    stations = [s.id for s in parse_registry(REGISTRY.read_text())]
    assert len(stations) == 303
    hub = jember_hub(tmp_path)
    await hub.start()
    tokens = await mint(hub, stations)
    window_s = 2.0  # the agents' first retry window after a hub restart
    agents = await start_agents(hub, tmp_path, tokens, set(), backoff_base_s=window_s, backoff_cap_s=4.0)
    try:
        await wait_until(lambda: all(a.state == "online" for a in agents), 60, "303 agents online", every=0.05)
        hub.stop()  # a clean restart: every agent is told 1012 and retries with jitter
        restarted_at = hub.intervals()[-1]["end"] or 0.0
        await hub.start()
        await wait_until(lambda: all(a.state == "online" for a in agents), 60, "303 agents back", every=0.05)
    finally:
        await asyncio.gather(*(a.stop() for a in agents))
        hub.stop()
    rows = hub.intervals()
    returns = sorted(r["start"] for r in rows if r["start"] > restarted_at and r["state"] == "online")
    returns = returns[:303]
    assert len(returns) == 303
    spread = returns[-1] - returns[0]
    first_tenth = sum(1 for t in returns if t - returns[0] < window_s / 10)
    print(f"303 reconnects spread over {spread:.2f} s; {first_tenth} in the first tenth of the window")
    # Uniform jitter over [0, 2 s): 303 draws all inside 0.5 s, or over 100 in one 0.2 s
    # slice (expected ~30), are both astronomically unlikely; a stampede does exactly that.
    assert spread >= window_s / 4
    assert first_tenth < 100
    assert not ledger_problems(rows)
    assert "Traceback" not in hub.log_text()
