"""The agent against a real hub on real sockets: online, thumbnails, live, WHEP, control."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from pathlib import Path

import av
import httpx
import pytest
from aiortc.mediastreams import MediaStreamTrack

from clients import control, rtc, whip
from clients.agent import Agent
from tests.clients.helpers import agent_config, start_agent, watch
from tests.kit import RunningHub, timeout, wait_until
from tests.wsclient import JSON, Client, presence_of

STATION = "35.09.01.2001"


async def test_online_then_thumbnail_over_http(hub: RunningHub, tmp_path: Path) -> None:
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    await watcher.recv()
    started = time.monotonic()
    agent = await start_agent(agent_config(tmp_path, hub, STATION, await hub.token(STATION), media=True))
    try:
        await watcher.recv_until(presence_of(STATION, "online"), wait=5)
        online_s = time.monotonic() - started
        await agent.wait_until(lambda a: a.thumbs_sent >= 1, timeout(5))
        async with httpx.AsyncClient(base_url=hub.http) as http:
            response = await http.get(f"/api/v1/stations/{STATION}/thumbnail.jpg")
        assert response.status_code == 200
        assert response.content.startswith(b"\xff\xd8") and len(response.content) < 64 * 1024
        assert hub.hub.stations.sessions[next(iter(hub.hub.stations.sessions))].camera == "test"
        print(f"online after {online_s:.2f} s (first attempt jittered over ≤0.2 s)")
    finally:
        await agent.stop()
    await watcher.recv_until(presence_of(STATION, "offline"), wait=5)


@pytest.mark.parametrize("packet_ms", [60, 20])
async def test_the_agents_sound_reaches_the_hub_in_packets_of_audio_packet_ms(
        hub: RunningHub, tmp_path: Path, packet_ms: int) -> None:
    """60 ms of sound per RTP packet by default: a third of the browsers' packets for the hub's
    per-packet work (docs/station.md); ``audio.packet_ms = 20`` sends what browsers send."""
    overrides = {} if packet_ms == 60 else {"audio": {"packet_ms": packet_ms}}
    agent = await start_agent(agent_config(tmp_path, hub, STATION, await hub.token(STATION), **overrides))
    timestamps: list[int] = []

    def tap(kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None:
        if kind == "audio":
            timestamps.append(ts)

    try:
        stream = await wait_until(lambda: hub.hub.media.stream(STATION), timeout=15, message="the station live")
        stream.add_tap(tap)
        await wait_until(lambda: len(timestamps) >= 8, timeout=10, message="8 audio packets at the hub")
        stream.remove_tap(tap)
        assert {(b - a) & 0xFFFFFFFF for a, b in zip(timestamps, timestamps[1:], strict=False)} == {48 * packet_ms}
    finally:
        await agent.stop()


async def test_live_and_whep_viewer_receives_video_and_audio(hub: RunningHub, tmp_path: Path) -> None:
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    await watcher.recv()
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION))
    started = time.monotonic()
    agent = await start_agent(config)
    try:
        await watcher.recv_until(presence_of(STATION, "live"), wait=15)
        live_s = time.monotonic() - started
        await agent.wait_until(lambda a: a.state == "live", timeout(5))

        pc = rtc.new_peer_connection([])
        tracks: dict[str, MediaStreamTrack] = {}
        pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
        answer = await watch(pc, hub, STATION)
        try:
            video = await asyncio.wait_for(tracks["video"].recv(), timeout(10))
            audio = await asyncio.wait_for(tracks["audio"].recv(), timeout(10))
            assert isinstance(video, av.VideoFrame) and isinstance(audio, av.AudioFrame)
            assert (video.width, video.height) == (320, 180)
            assert audio.sample_rate == 48000
            viewed_s = time.monotonic() - started
        finally:
            await whip.delete_session(answer.location, None)
            await pc.close()
        print(f"live after {live_s:.2f} s; WHEP viewer decoded video+audio after {viewed_s:.2f} s")
    finally:
        await agent.stop()
    offline = await watcher.recv_until(presence_of(STATION, "offline"), wait=5)
    assert offline["reason"] == "closed"


async def test_activity_through_control_socket_and_announce(hub: RunningHub, tmp_path: Path,
                                                            unused_tcp_port: int,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION), media=False,
                          control_port=unused_tcp_port)
    agent = await start_agent(config)
    try:
        await agent.wait_until(lambda a: a.presence.online, timeout(5))
        reply = await control.request(unused_tcp_port, {"cmd": "activity.start", "title": "Musyawarah Desa"})
        assert reply == {"ok": True, "sent": True}
        await wait_until(lambda: (hub.hub.stations.table.get(STATION).activity or {}).get("title")
                         == "Musyawarah Desa", 5, "the hub to show the activity")
        status = await control.request(unused_tcp_port, {"cmd": "status"})
        assert status["status"]["activity"] == "Musyawarah Desa"
        assert status["status"]["state"] == "online"
        assert (await control.request(unused_tcp_port, {"cmd": "activity.stop"}))["ok"]
        await wait_until(lambda: hub.hub.stations.table.get(STATION).activity is None, 5, "the activity to end")

        with caplog.at_level(logging.WARNING, logger="jaga.station.console"):
            await hub.hub.stations.announce([STATION], "Rapat koordinasi jam 10", "operator")
            await agent.wait_until(lambda a: bool(a.announcements), timeout(5))
        assert agent.announcements == ["Rapat koordinasi jam 10"]
        assert "Rapat koordinasi jam 10" in caplog.text
    finally:
        await agent.stop()


async def test_control_cli_reaches_running_agent(hub: RunningHub, tmp_path: Path, unused_tcp_port: int) -> None:
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION), media=False,
                          control_port=unused_tcp_port)
    toml = tmp_path / "station.toml"
    toml.write_text(f'hub = "{hub.http}"\nstation = "{STATION}"\ncontrol_port = {unused_tcp_port}\n')
    agent = await start_agent(config)
    try:
        await agent.wait_until(lambda a: a.presence.online, timeout(5))
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "clients", "--config", str(toml), "activity", "start", "Posyandu Balita",
            stdout=asyncio.subprocess.PIPE, cwd=str(Path(__file__).parents[2]))
        out, _ = await asyncio.wait_for(process.communicate(), timeout(20))
        assert process.returncode == 0, out
        assert agent.activity == "Posyandu Balita"
    finally:
        await agent.stop()


def test_agent_is_constructed_without_a_loop_running(tmp_path: Path) -> None:
    # Building the agent must not need the network: only start() connects.
    agent = Agent(agent_config(tmp_path, "http://127.0.0.1:9", STATION, "t"))
    assert agent.state == "offline"
