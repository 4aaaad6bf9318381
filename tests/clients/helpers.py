"""Helpers for agent tests: agent configs pointed at a test hub, a hub on a chosen port."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import uvicorn

from clients.agent import Agent
from clients.config import StationConfig, config_from_mapping
from hub.app import create_app
from hub.cli import WS_MAX_SIZE
from hub.settings import Settings
from tests.conftest import RunningHub, timeout

# Short backoff for tests: first window 0.2 s, capped at 1 s.
FAST_NETWORK = {"host_addresses": ["127.0.0.1"], "backoff_base_s": 0.2, "backoff_cap_s": 1.0,
                "stable_s": 1.0, "connect_timeout_s": 5.0, "media_connect_timeout_s": 10.0}


def agent_config(tmp_path: Path, hub: RunningHub | str, station: str, token: str, **overrides: Any) -> StationConfig:
    token_file = tmp_path / f"{station}.token"
    token_file.write_text(token + "\n")
    network = {**FAST_NETWORK, **overrides.pop("network", {})}
    raw: dict[str, Any] = {
        "hub": hub.http if isinstance(hub, RunningHub) else hub,
        "station": station, "token_file": str(token_file), "source": "test", "always_on": True,
        "control_port": 0, "thumbnail_s": 10.0, "status_s": 0.5,
        "video": {"width": 320, "height": 180, "fps": 10, "bitrate_kbps": 300},
        "network": network,
    }
    for key, value in overrides.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return config_from_mapping(raw, base_dir=str(tmp_path))


async def start_agent(config: StationConfig, **kwargs: Any) -> Agent:
    agent = Agent(config, **kwargs)
    await agent.start()
    return agent


async def start_hub_on(settings: Settings, port: int = 0) -> RunningHub:
    """tests.conftest.start_hub, but on ``port`` (to restart a hub where agents expect it)."""
    app = create_app(settings)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, ws="websockets-sansio", ws_max_size=WS_MAX_SIZE,
                            ws_per_message_deflate=False, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    deadline = asyncio.get_running_loop().time() + timeout(15)
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("hub did not start")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("hub did not start in time")
        await asyncio.sleep(0.01)  # uvicorn offers no start event; poll with a deadline
    bound = server.servers[0].sockets[0].getsockname()[1]
    server._jaga_task = task  # type: ignore[attr-defined]
    return RunningHub(app.state.hub, bound, server)


async def wait_for(predicate: Any, wait: float, every: float = 0.02) -> None:
    """Poll a hub-side condition with a deadline (the hub offers no event for it)."""
    deadline = asyncio.get_running_loop().time() + timeout(wait)
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"condition not met within {wait} s")
        await asyncio.sleep(every)
