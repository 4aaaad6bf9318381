"""An office whose network drops all UDP goes live through coturn over TCP (tests/netlab).

The real agent (``jaga-station run``, test source) runs in the lab's namespace with UDP blocked
both ways; the hub (``jaga-hub serve``) and coturn run on the host's end of the link, coturn
relaying to the hub's address only. The agent has no TURN settings: it uses the ``[turn]`` the
hub hands it in its welcome. Its direct UDP candidate pair to the hub cannot work (the lab
drops it), so being live with frames arriving means the media came through coturn; coturn's
log names the station's allocation.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from tests.kit import HubProcess, timeout, wait_until
from tests.netlab import Lab, lab_available, lab_unavailable_reason
from tests.turn.coturn import SECRET, Coturn

pytestmark = pytest.mark.skipif(not lab_available(), reason=lab_unavailable_reason() or "lab available")

STATION = "35.09.01.2001"
METRICS_TOKEN = "turn-test-metrics"
FRAMES = re.compile(r'^jaga_media\{counter="frames_received"\} ([0-9.e+]+)$', re.MULTILINE)


async def test_an_agent_whose_network_drops_udp_goes_live_through_turn_over_tcp(tmp_path: Path) -> None:
    async with Lab(block_udp=True) as lab:
        coturn = Coturn(tmp_path / "coturn", listen=lab.host_address, peers=(lab.host_address,))
        coturn.start()
        hub = HubProcess(tmp_path / "hub", hub={"host": lab.host_address, "metrics_token": METRICS_TOKEN},
                         media={"host_addresses": [lab.host_address]},
                         turn={"urls": [coturn.url("tcp")], "secret": SECRET, "ttl_s": 600})
        agent_log = tmp_path / "agent.log"
        try:
            await hub.start()
            url = f"http://{lab.host_address}:{hub.port}"
            token_file = tmp_path / "token.txt"
            token_file.write_text(hub.token(STATION) + "\n")
            toml = tmp_path / "station.toml"
            toml.write_text(f'hub = "{url}"\nstation = "{STATION}"\ntoken_file = "{token_file}"\n'
                            'source = "test"\nalways_on = true\ncontrol_port = 0\nquestions_port = 0\n'
                            '[video]\nwidth = 320\nheight = 180\nfps = 10\nbitrate_kbps = 300\n'
                            '[network]\nbackoff_base_s = 0.5\nbackoff_cap_s = 2.0\n')  # no ice_servers: the hub's
            with agent_log.open("wb") as sink:
                await lab.spawn([sys.executable, "-m", "clients", "--config", str(toml), "run"],
                                stdout=sink, stderr=subprocess.STDOUT)

            async with httpx.AsyncClient(base_url=url, timeout=timeout(5)) as http:
                async def state() -> str:
                    return str((await http.get(f"/api/v1/stations/{STATION}")).json()["state"])

                async def frames() -> float:
                    text = (await http.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})).text
                    found = FRAMES.search(text)
                    return float(found.group(1)) if found else 0.0

                await wait_until(lambda: _is(state, "live"), 60, "the office to be live", every=0.2)
                first = await wait_until(frames, 10, "frames at the hub", every=0.2)
                await wait_until(lambda: _more(frames, first + 50), 15, "frames still arriving", every=0.2)
            assert coturn.allocated_for(STATION)  # minted by the hub for this station, in its welcome
            dropped = (await lab.stats())["up"]["dropped"]
            assert dropped.get("filter", 0) > 0  # the direct UDP path was tried, and dropped by the lab
        finally:
            await lab.close()  # the agent first
            hub.stop()
            coturn.stop()
            print(agent_log.read_text(errors="replace")[-4000:] if agent_log.exists() else "(no agent log)")



async def _is(read: Callable[[], Awaitable[str]], wanted: str) -> bool:
    return await read() == wanted


async def _more(read: Callable[[], Awaitable[float]], than: float) -> bool:
    return await read() > than
