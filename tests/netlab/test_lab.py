"""The lab for real: a namespace, two TUN devices and the forwarder, with traffic from inside.

A UDP (and a TCP) echo server runs in the test on the host's end of the link; a probe
(:mod:`tests.netlab.probe`) runs inside the namespace. Bounds are generous: the forwarder only
ever adds delay, so lower bounds are tight and upper bounds allow a loaded 2-core machine.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.kit import REPO, timeout, wait_until
from tests.netlab import Lab, LinkSpec, lab_available, lab_unavailable_reason

pytestmark = pytest.mark.skipif(not lab_available(), reason=lab_unavailable_reason() or "lab available")

PROBE = [sys.executable, "-m", "tests.netlab.probe"]


# -- the host side's servers


@dataclass
class UdpEcho(asyncio.DatagramProtocol):
    """Echoes every datagram (or only counts it, ``echo=False``); remembers senders and arrivals."""

    echo: bool = True
    received: int = 0
    size: int = 0  # bytes on the wire
    senders: set[str] = field(default_factory=set)
    arrivals: list[float] = field(default_factory=list)
    transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a datagram endpoint's

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received += 1
        self.size += len(data) + 28  # as the link counts them: with the IP and UDP headers
        self.arrivals.append(time.monotonic())
        self.senders.add(addr[0])
        if self.echo and self.transport is not None:
            self.transport.sendto(data, addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port


class HostServers:
    """UDP and TCP echo servers on the host side, closed at the end of the test."""

    def __init__(self) -> None:
        self._udp: list[UdpEcho] = []
        self._tcp: list[asyncio.Server] = []

    async def udp(self, address: str, echo: bool = True) -> UdpEcho:
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_datagram_endpoint(lambda: UdpEcho(echo), local_addr=(address, 0))
        self._udp.append(protocol)
        return protocol

    async def tcp(self, address: str) -> int:
        """A TCP server on ``address`` that echoes one line; its port."""
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(serve, address, 0)
        self._tcp.append(server)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def close(self) -> None:
        for protocol in self._udp:
            if protocol.transport is not None:
                protocol.transport.close()
        for server in self._tcp:
            server.close()
            await server.wait_closed()


@pytest.fixture
async def servers() -> AsyncIterator[HostServers]:
    running = HostServers()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def lab() -> AsyncIterator[Lab]:
    async with Lab() as running:
        yield running


# -- running probes inside


async def probe(lab: Lab, *args: str, limit: float = 30) -> dict[str, Any]:
    """Run one probe inside the namespace to its end; its summary line."""
    proc = await lab.spawn([*PROBE, *args], stdout=subprocess.PIPE)
    out, _ = await asyncio.wait_for(proc.communicate(), timeout(limit))
    assert proc.returncode == 0, out
    summary: dict[str, Any] = json.loads(out.splitlines()[-1])
    return summary


def adds_up(stats: dict[str, Any]) -> bool:
    return all(stats[d]["received"]["packets"] == stats[d]["forwarded"]["packets"] + stats[d]["dropped_total"]
               + stats[d]["pending"] for d in ("up", "down"))


# -- the tests


async def test_delay_is_the_configured_one_way_delay_each_way(servers: HostServers) -> None:
    async with Lab(up=LinkSpec(delay_ms=60), down=LinkSpec(delay_ms=40)) as lab:
        server = await servers.udp(lab.host_address)
        result = await probe(lab, "echo", "--to", f"{lab.host_address}:{server.port}", "--count", "30",
                             "--interval", "0.02", "--wait", str(timeout(2)))
        assert result["received"] == 30
        rtts = result["rtts"]
        assert min(rtts) >= 0.100  # the forwarder never delivers early
        assert statistics.median(rtts) < 0.100 + timeout(0.1)
        assert server.senders == {lab.inside_address}


async def test_loss_is_the_configured_fraction_each_way_and_counters_add_up(servers: HostServers) -> None:
    async with Lab(up=LinkSpec(loss=0.2), down=LinkSpec(loss=0.1), seed=7) as lab:
        server = await servers.udp(lab.host_address)
        result = await probe(lab, "echo", "--to", f"{lab.host_address}:{server.port}", "--count", "500",
                             "--interval", "0.004", "--wait", str(timeout(0.5)))
        stats = await lab.stats()
        up, down = stats["up"], stats["down"]
        assert up["received"]["packets"] == result["sent"] == 500  # only the probe's traffic crosses
        assert 0.13 <= up["dropped"]["loss"] / up["received"]["packets"] <= 0.27
        assert 0.05 <= down["dropped"]["loss"] / down["received"]["packets"] <= 0.16
        assert server.received == up["forwarded"]["packets"] == down["received"]["packets"]  # every one echoed
        assert result["received"] == down["forwarded"]["packets"]
        assert adds_up(stats) and up["pending"] == down["pending"] == 0
        assert up["dropped_total"] == up["dropped"]["loss"]


async def test_rate_limit_caps_throughput_going_up(servers: HostServers) -> None:
    async with Lab(up=LinkSpec(rate_kbps=400, queue_ms=200)) as lab:
        sink = await servers.udp(lab.host_address, echo=False)
        sent = await probe(lab, "blast", "--to", f"{lab.host_address}:{sink.port}", "--kbps", "1600",
                           "--seconds", "2", "--size", "1000")
        stats = await wait_until(lambda: _drained(lab), message="the link's queue to drain")
        assert stats["up"]["dropped"]["queue"] > 0
        assert 10 < stats["up"]["forwarded"]["packets"] < sent["sent"] / 2
        await wait_until(lambda: sink.received == stats["up"]["forwarded"]["packets"], message="the last packets")
        kbps = (sink.size - 1028) * 8 / (sink.arrivals[-1] - sink.arrivals[0]) / 1000  # the first one's time is 0
        assert 300 <= kbps <= 440, kbps


async def test_rate_limit_caps_throughput_going_down() -> None:
    async with Lab(down=LinkSpec(rate_kbps=400, queue_ms=200)) as lab:
        sink = await lab.spawn([*PROBE, "sink", "--idle", str(timeout(0.5))], stdout=subprocess.PIPE)
        assert sink.stdout is not None
        port = json.loads(await asyncio.wait_for(sink.stdout.readline(), timeout(15)))["port"]
        blaster = await asyncio.create_subprocess_exec(
            *PROBE, "blast", "--to", f"{lab.inside_address}:{port}", "--kbps", "1600", "--seconds", "2",
            stdout=subprocess.PIPE, cwd=REPO)
        await asyncio.wait_for(blaster.communicate(), timeout(30))
        out, _ = await asyncio.wait_for(sink.communicate(), timeout(30))
        got = json.loads(out.splitlines()[-1])
        kbps = (got["bytes"] - 1028) * 8 / (got["last"] - got["first"]) / 1000  # the first one's time is 0
        assert 300 <= kbps <= 440, kbps
        stats = await lab.stats()
        assert stats["down"]["dropped"]["queue"] > 0
        assert got["received"] == stats["down"]["forwarded"]["packets"]


async def _drained(lab: Lab) -> dict[str, Any] | None:
    stats = await lab.stats()
    return stats if stats["up"]["pending"] == stats["down"]["pending"] == 0 else None


async def test_outage_drops_everything_both_ways_and_the_link_recovers(servers: HostServers) -> None:
    async with Lab(up=LinkSpec(delay_ms=20), down=LinkSpec(delay_ms=20)) as lab:
        server = await servers.udp(lab.host_address)
        echoes: list[dict[str, Any]] = []
        arrived = asyncio.Event()
        proc = await lab.spawn([*PROBE, "echo", "--to", f"{lab.host_address}:{server.port}", "--count", "0",
                                "--interval", "0.02", "--lines"], stdout=subprocess.PIPE)

        async def read() -> None:
            assert proc.stdout is not None
            async for line in proc.stdout:
                echoes.append(json.loads(line))
                arrived.set()

        reader = asyncio.create_task(read())
        try:
            await wait_until(lambda: len(echoes) >= 10, message="echoes through the link", changed=arrived)
            cut = await lab.outage(True)
            cut_at = time.monotonic()
            during = await wait_until(lambda: _outage_drops(lab, 25), timeout=15, message="packets lost to the outage")
            for direction in ("up", "down"):
                assert during[direction]["forwarded"] == cut[direction]["forwarded"]  # nothing crossed
            assert not [e for e in echoes if e["sent_at"] > cut_at]
            await lab.outage(False)
            back_at = time.monotonic()
            await wait_until(lambda: any(e["sent_at"] > back_at for e in echoes), message="echoes after the outage",
                             changed=arrived)
            assert adds_up(await lab.stats())
        finally:
            reader.cancel()


async def _outage_drops(lab: Lab, at_least: int) -> dict[str, Any] | None:
    stats = await lab.stats()
    return stats if stats["up"]["dropped"]["outage"] >= at_least else None


async def test_udp_blocked_while_tcp_passes_then_only_one_tcp_port(lab: Lab, servers: HostServers) -> None:
    server = await servers.udp(lab.host_address)
    allowed_port = await servers.tcp(lab.host_address)
    other_port = await servers.tcp(lab.host_address)
    udp_echo = ["echo", "--to", f"{lab.host_address}:{server.port}", "--count", "10", "--wait", str(timeout(2))]
    udp_blocked = [*udp_echo[:-1], "0.5"]  # nothing comes back: no need to wait long for it
    assert (await probe(lab, *udp_echo))["received"] == 10

    await lab.block_udp(True)
    assert (await probe(lab, *udp_blocked))["received"] == 0
    assert (await lab.stats())["up"]["dropped"]["filter"] == 10
    assert (await probe(lab, "tcp", "--to", f"{lab.host_address}:{allowed_port}"))["ok"]
    assert (await probe(lab, "tcp", "--to", f"{lab.host_address}:{other_port}"))["ok"]

    await lab.allow_tcp_only(lab.host_address, allowed_port)
    assert (await probe(lab, "tcp", "--to", f"{lab.host_address}:{allowed_port}"))["ok"]
    refused = await probe(lab, "tcp", "--to", f"{lab.host_address}:{other_port}", "--timeout", "1")
    assert not refused["ok"] and "timed out" in refused["error"]
    assert (await probe(lab, *udp_blocked))["received"] == 0

    await lab.allow_tcp_only(None)
    assert (await probe(lab, *udp_echo))["received"] == 10
    assert adds_up(await lab.stats())


async def test_nat_maps_both_ends_and_keeps_checksums_valid(servers: HostServers) -> None:
    async with Lab(nat=True, up=LinkSpec(delay_ms=5)) as lab:
        server = await servers.udp(lab.host_address)
        result = await probe(lab, "echo", "--to", f"{lab.public_host_address}:{server.port}", "--count", "10",
                             "--wait", str(timeout(1)))
        assert result["received"] == 10
        assert server.senders == {lab.public_inside_address}  # the host sees the public address
        port = await servers.tcp(lab.host_address)
        assert (await probe(lab, "tcp", "--to", f"{lab.public_host_address}:{port}"))["ok"]
        assert (await lab.stats())["nat"]["inside"] == {lab.inside_address: lab.public_inside_address}


async def test_it_carries_4_mbps_of_small_packets_cheaply(servers: HostServers) -> None:
    async with Lab(up=LinkSpec(delay_ms=50, rate_kbps=8000), down=LinkSpec(delay_ms=50)) as lab:
        sink = await servers.udp(lab.host_address, echo=False)
        before = (await lab.stats())["cpu_s"]
        sent = await probe(lab, "blast", "--to", f"{lab.host_address}:{sink.port}", "--kbps", "4000",
                           "--seconds", "3", "--size", "200")
        stats = await wait_until(lambda: _drained(lab), message="the link's queue to drain")
        assert stats["up"]["received"]["packets"] == sent["sent"] > 6000
        await wait_until(lambda: sink.received >= 0.99 * sent["sent"], message="the sink to get 99 % of it")
        cores = (stats["cpu_s"] - before) / sent["seconds"]
        assert cores < 0.5, f"the forwarder used {cores:.2f} of a core for 4 Mbps of 200-byte packets"


async def test_two_labs_at_once_and_nothing_left_after(servers: HostServers) -> None:
    async with Lab() as first, Lab() as second:
        assert first.netns != second.netns and first.host_address != second.host_address
        for lab in (first, second):
            server = await servers.udp(lab.host_address)
            assert (await probe(lab, "echo", "--to", f"{lab.host_address}:{server.port}", "--count", "5"))[
                "received"] == 5
        names = [first.names, second.names]
        forwarders = [first._core.forwarder, second._core.forwarder]
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    for n in names:
        assert n.netns not in namespaces and n.host_dev not in links
    assert all(f is not None and f.returncode is not None for f in forwarders)


async def test_a_failing_body_still_tears_everything_down() -> None:
    lab = Lab()
    with pytest.raises(RuntimeError, match="the body failed"):
        async with lab:
            sleeper = await lab.spawn([sys.executable, "-c", "import time; time.sleep(600)"])
            raise RuntimeError("the body failed")
    assert sleeper.returncode is not None
    assert lab.netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


async def test_a_killed_owner_leaves_no_namespace_behind() -> None:
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c",
        "import sys, time\n"
        "from tests.netlab import SyncLab\n"
        "lab = SyncLab().__enter__()\n"
        "lab.spawn([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(lab.netns, flush=True)\n"
        "time.sleep(600)\n",
        stdout=subprocess.PIPE, cwd=REPO)
    assert owner.stdout is not None
    netns = (await asyncio.wait_for(owner.stdout.readline(), timeout(20))).decode().strip()
    assert netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    owner.kill()  # no cleanup runs in the owner: its forwarder sees stdin close
    await owner.wait()

    def gone() -> bool:
        return netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout

    await wait_until(gone, timeout=15, message=f"{netns} to be removed by its orphaned forwarder", every=0.1)
