"""A hub behind a 1:1 NAT (docs/operations.md "Behind a 1:1 NAT"), in the network lab.

The hub (``jaga-hub serve``) binds the lab's host address and announces the public one that
the lab's NAT maps to it (``media.public_addresses``); the office's agent and a viewer run in
the namespace, which reaches the hub only at the public address. The agent goes live, the
viewer decodes, every host candidate the hub announces names the public address, and the hub
holds exactly one media UDP socket for all of it (``ss``).
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

from jaga.ice_hosts import announced_host_addresses
from tests.kit import HubProcess, free_udp_port, timeout, wait_until
from tests.netlab import Lab, lab_available, lab_unavailable_reason

pytestmark = pytest.mark.skipif(not lab_available(), reason=lab_unavailable_reason() or "lab available")

STATION = "35.09.01.2001"
CANDIDATE = re.compile(r"^a=candidate:\S+ \d+ udp \d+ (\S+) (\d+) typ host", re.MULTILINE)


async def test_an_agent_and_a_viewer_reach_a_hub_behind_a_1_to_1_nat(tmp_path: Path) -> None:
    async with Lab(nat=True) as lab:
        media_port = free_udp_port(lab.host_address)
        hub = HubProcess(tmp_path / "hub", hub={"host": lab.host_address},
                         media={"host_addresses": [lab.host_address], "public_addresses": [lab.public_host_address],
                                "udp_port": media_port})
        try:
            await hub.start()
            private_url, public_url = (f"http://{address}:{hub.port}"
                                       for address in (lab.host_address, lab.public_host_address))
            token_file = tmp_path / "token.txt"
            token_file.write_text(hub.token(STATION) + "\n")
            station_toml = tmp_path / "station.toml"
            station_toml.write_text(
                f'hub = "{public_url}"\nstation = "{STATION}"\ntoken_file = "{token_file}"\n'
                'source = "test"\nalways_on = true\ncontrol_port = 0\nquestions_port = 0\n'
                '[video]\nwidth = 320\nheight = 180\nfps = 10\nbitrate_kbps = 300\n'
                f'[network]\nhost_addresses = ["{lab.inside_address}"]\nbackoff_base_s = 0.5\nbackoff_cap_s = 2.0\n')
            with (tmp_path / "agent.log").open("wb") as sink:
                await lab.spawn([sys.executable, "-m", "clients", "--config", str(station_toml), "run"],
                                stdout=sink, stderr=subprocess.STDOUT)
            async with httpx.AsyncClient(base_url=private_url, timeout=timeout(5)) as http:
                async def live() -> bool:
                    state: str = (await http.get(f"/api/v1/stations/{STATION}")).json()["state"]
                    return state == "live"

                await wait_until(live, 60, "the office behind the NAT to be live", every=0.2)
                announced = await announced_hosts(http, lab.host_address)
            assert announced == {(lab.public_host_address, media_port)}

            viewer = await lab.spawn([sys.executable, "-m", "bench.field.viewer", "--base", public_url,
                                      "--station", STATION, "--address", lab.inside_address],
                                     stdout=asyncio.subprocess.PIPE)
            assert viewer.stdout is not None
            decoded = 0
            async with asyncio.timeout(timeout(30)):
                while decoded < 10:
                    decoded += len(json.loads(await viewer.stdout.readline())["frames"])

            assert await hub_udp_ports(hub) == {media_port}  # every session on the one port
        finally:
            await lab.close()
            hub.stop()


async def announced_hosts(http: httpx.AsyncClient, own_address: str) -> set[tuple[str, int]]:
    """The host candidates of a WHEP answer (a throwaway viewer on the host side, offering only
    a lab address, so the hub's checks stay in the lab; it never connects)."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # never aiortc's default STUN server
    try:
        pc.addTransceiver("video", direction="recvonly")
        pc.addTransceiver("audio", direction="recvonly")
        with announced_host_addresses([own_address]):
            await pc.setLocalDescription(await pc.createOffer())
        answer = await http.post(f"/whep/{STATION}", content=pc.localDescription.sdp,
                                 headers={"Content-Type": "application/sdp"})
        assert answer.status_code == 201, answer.text
        await http.delete(answer.headers["Location"])
        RTCSessionDescription(answer.text, "answer")  # it parses
        return {(host, int(port)) for host, port in CANDIDATE.findall(answer.text)}
    finally:
        await pc.close()


async def hub_udp_ports(hub: HubProcess) -> set[int]:
    """The UDP ports the hub process holds, as ``ss -ulnp`` lists them."""
    assert hub.process is not None
    listed = await asyncio.create_subprocess_exec("ss", "-H", "-ulnp", stdout=asyncio.subprocess.PIPE)
    out, _ = await listed.communicate()
    mine = [line for line in out.decode().splitlines() if f"pid={hub.process.pid}," in line]
    return {int(line.split()[3].rpartition(":")[2]) for line in mine}
