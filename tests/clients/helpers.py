"""Helpers for agent tests: agent configs pointed at a test hub, plain video frames."""

from __future__ import annotations

import fractions
from pathlib import Path
from typing import Any

import av
from aiortc import RTCPeerConnection, RTCSessionDescription

from clients import rtc, whip
from clients.agent import Agent
from clients.config import StationConfig, config_from_mapping
from tests.kit import RunningHub

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
        "control_port": 0, "questions_port": 0, "thumbnail_s": 10.0, "status_s": 0.5,
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


def video_frame(width: int = 320, height: int = 180, pts: int = 0) -> av.VideoFrame:
    """A flat yuv420p frame stamped ``pts`` on the 90 kHz video clock."""
    frame = av.VideoFrame(width, height, "yuv420p")
    for index, plane in enumerate(frame.planes):
        plane.update(bytes([80 + 40 * index]) * plane.buffer_size)
    frame.pts, frame.time_base = pts, fractions.Fraction(1, 90_000)
    return frame


async def watch(pc: RTCPeerConnection, hub: RunningHub, station: str) -> whip.Answer:
    """Make ``pc`` a WHEP viewer of ``station`` (video and audio, on loopback) and connect it;
    the caller hooks ``track`` first and DELETEs ``answer.location`` when done."""
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    offer = await pc.createOffer()
    with rtc.host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(offer)
    answer = await whip.post_offer(f"{hub.http}/whep/{station}", pc.localDescription.sdp, None)
    await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    return answer
