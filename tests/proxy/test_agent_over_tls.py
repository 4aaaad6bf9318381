"""The office agent against the hub as deployed: ``jaga-station`` (a real process, ``--source
test``) reaches the hub only through nginx, over ``wss://`` (presence) and ``https://`` (WHIP),
verifying the hub's certificate with a private CA (``ca_file``). Without that CA it says why,
plainly, and keeps trying; it never crashes. A WHEP viewer decodes the station's video
through the same proxy, the WHEP answer's headers intact."""

from __future__ import annotations

import asyncio
import shutil
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import av
import httpx
import pytest
from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from clients import rtc, whip
from clients.config import StationConfigError, config_from_mapping
from tests.kit import REPO, timeout, wait_until
from tests.proxy.conftest import Proxied
from tests.proxy.tls import Tls, make_tls
from tests.wsclient import JSON, Client, presence_of

STATION = "35.09.01.2001"
UNTRUSTED = "the hub's TLS certificate is not trusted by this PC's system CAs"


class AgentProcess:
    """``jaga-station --source test --always-on run`` on a ``station.toml`` in ``home``; its
    console (stderr) goes to ``home/console.log``."""

    def __init__(self, home: Path, hub: str, token: str, ca_file: Path | None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        (home / "token.txt").write_text(token + "\n", encoding="utf-8")
        ca_line = ""
        if ca_file is not None:
            shutil.copy(ca_file, home / "ca.pem")
            ca_line = 'ca_file = "ca.pem"\n'  # relative: to the config's folder, as token_file
        self.config = home / "station.toml"
        self.config.write_text(
            f'hub = "{hub}"\n{ca_line}station = "{STATION}"\ntoken_file = "token.txt"\n'
            "control_port = 0\nquestions_port = 0\n\n"
            "[video]\nwidth = 320\nheight = 180\nfps = 10\nbitrate_kbps = 300\n\n"
            '[network]\nhost_addresses = ["127.0.0.1"]\nbackoff_base_s = 0.2\nbackoff_cap_s = 1.0\n'
            "stable_s = 1.0\nconnect_timeout_s = 5.0\nmedia_connect_timeout_s = 10.0\n", encoding="utf-8")
        self.console = home / "console.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProcess:
        with self.console.open("wb") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "clients", "--config", str(self.config), "--source", "test", "--always-on",
                 "run"], stdout=subprocess.DEVNULL, stderr=sink, cwd=REPO)
        return self

    def text(self) -> str:
        return self.console.read_text(encoding="utf-8", errors="replace")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def stop(self) -> int:
        """SIGTERM, as systemd and the demo stop it; the exit status."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.to_thread(self.process.wait, timeout(20))


async def whep_video(url: str, tls: Tls, frames: int) -> list[av.VideoFrame]:
    """View ``STATION`` over WHEP at ``url`` (aiortc, HTTP through httpx with the CA); the
    first ``frames`` decoded video frames. Checks the session's headers, PATCH and DELETE."""
    pc = rtc.new_peer_connection([])
    tracks: dict[str, MediaStreamTrack] = {}
    pc.on("track", lambda track: tracks.__setitem__(track.kind, track))
    pc.addTransceiver("video", direction="recvonly")
    offer = await pc.createOffer()
    with rtc.host_addresses(["127.0.0.1"]):
        await pc.setLocalDescription(offer)
    async with httpx.AsyncClient(base_url=url, verify=tls.client_context()) as http:
        created = await http.post(f"/whep/{STATION}", content=pc.localDescription.sdp,
                                  headers={"Content-Type": "application/sdp"})
        assert created.status_code == 201, created.text
        location = created.headers["location"]
        assert location.startswith(f"/whep/{STATION}/"), location  # as the hub wrote it (proxy_redirect off)
        assert created.headers["etag"].startswith('"') and created.headers["content-type"] == "application/sdp"
        try:
            await pc.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
            decoded = [await asyncio.wait_for(tracks["video"].recv(), timeout(10)) for _ in range(frames)]
            assert all(isinstance(frame, av.VideoFrame) for frame in decoded)
            patched = await http.patch(location, content="",
                                       headers={"Content-Type": "application/trickle-ice-sdpfrag"})
            assert patched.status_code == 405 and "DELETE" in patched.headers["allow"]
        finally:
            deleted = await http.delete(location)
            await pc.close()
        assert deleted.status_code == 200
    return [frame for frame in decoded if isinstance(frame, av.VideoFrame)]


async def test_the_agent_goes_live_through_the_proxy_with_its_ca_file(
        proxied: Callable[..., Awaitable[Proxied]], tls: Tls, tmp_path: Path) -> None:
    deployment = await proxied()
    watcher = await Client.open(f"{deployment.wss}/ws/watch", JSON, ssl=tls.client_context())
    assert (await watcher.recv())["t"] == "snapshot"
    agent = AgentProcess(tmp_path / "agent", deployment.url, await deployment.running.token(STATION), tls.ca).start()
    try:
        await watcher.recv_until(presence_of(STATION, "live"), wait=30)
        # The agent logs this once its own side of the session is up, which may be a moment
        # after the hub's side: WHIP went over https through nginx.
        published = f"live: publishing 320x180@10 H264 ≤300 kbps to {deployment.url}/whip/{STATION}/"
        await wait_until(lambda: published in agent.text(), timeout=10, message="the agent's own word that it is live")
        assert f"online: connected to {deployment.wss}/ws/station" in agent.text()

        frames = await whep_video(deployment.url, tls, frames=3)
        assert {(frame.width, frame.height) for frame in frames} == {(320, 180)}
    finally:
        await watcher.close()
        status = await agent.stop()
    assert status == 0, agent.text()[-3000:]
    assert "Traceback" not in agent.text()


async def test_without_the_ca_file_the_agent_says_why_and_keeps_trying(
        proxied: Callable[..., Awaitable[Proxied]], tls: Tls, tmp_path: Path) -> None:
    deployment = await proxied()
    agent = AgentProcess(tmp_path / "agent", deployment.url, await deployment.running.token(STATION), None).start()
    try:
        await wait_until(lambda: agent.text().count(UNTRUSTED) >= 3 or not agent.running(),
                         timeout=30, message="three refused attempts logged")
        assert agent.running(), agent.text()[-3000:]
        assert deployment.running.hub.stations.sessions == {}  # never said hello
    finally:
        status = await agent.stop()
    console = agent.text()
    assert status == 0 and "Traceback" not in console, console[-3000:]
    line = next(line for line in console.splitlines() if UNTRUSTED in line)
    assert " ERROR presence connection: " in line and f"{deployment.wss}/ws/station" in line, line
    assert "(self-signed certificate in certificate chain)" in line, line  # OpenSSL's reason, as it said it
    assert "set ca_file in station.toml to that CA's certificate" in line, line

    # WHIP/HTTP says the same, and with a CA file of another CA, that the hub does not chain to it.
    with pytest.raises(whip.Unreachable, match=UNTRUSTED):
        await whip.get(f"{deployment.url}/healthz")
    stranger = make_tls(tmp_path / "another-ca")
    wrong = config_from_mapping({"hub": deployment.url, "ca_file": str(stranger.ca)}).tls_context()
    with pytest.raises(whip.Unreachable, match="does not verify with ca_file .*: it is not signed by that CA"):
        await whip.get(f"{deployment.url}/healthz", context=wrong)
    right = config_from_mapping({"hub": deployment.url, "ca_file": str(tls.ca)}).tls_context()
    assert (await whip.get(f"{deployment.url}/healthz", context=right))[0] == 200


def test_the_ca_file_is_checked_when_the_config_is_read(tmp_path: Path) -> None:
    with pytest.raises(StationConfigError, match=r"cannot read ca_file .*missing\.pem: No such file or directory"):
        config_from_mapping({"hub": "https://jaga.example", "ca_file": "missing.pem"}, base_dir=str(tmp_path))
    (tmp_path / "garbage.pem").write_text("not a certificate\n")
    with pytest.raises(StationConfigError, match=r"ca_file .*garbage\.pem holds no usable PEM certificate"):
        config_from_mapping({"hub": "https://jaga.example", "ca_file": "garbage.pem"}, base_dir=str(tmp_path))
    with pytest.raises(StationConfigError, match="ca_file is set but hub is not https://"):
        config_from_mapping({"hub": "http://jaga.example", "ca_file": "garbage.pem"}, base_dir=str(tmp_path))

    # As the agent's command line shows it: an error naming the file, exit status 2.
    toml = tmp_path / "station.toml"
    toml.write_text('hub = "https://jaga.example"\nca_file = "missing.pem"\nstation = "x"\n', encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "clients", "--config", str(toml), "run"], capture_output=True,
                          text=True, cwd=REPO, timeout=timeout(60))
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot read ca_file {tmp_path / 'missing.pem'}"), done.stderr
