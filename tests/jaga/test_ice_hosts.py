"""Pins the aioice internals ``jaga.ice_hosts`` relies on (seam 4), and its scope: the patch
is process-wide, the addresses belong to the context that set them.

Both the hub (``media.host_addresses``, around every answer it gives) and the station agent
(``network.host_addresses``, around its own offers) gather through it, and the tests run
both in one process: each must get its own addresses, and nobody else any.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import sys
from pathlib import Path

import aioice.ice
from aiortc import RTCConfiguration, RTCPeerConnection

from jaga import ice_hosts
from jaga.ice_hosts import announced_host_addresses
from tests.locked import check_locked


def aioice_own(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    """What aioice answers without the seam: the function the wrapper wraps."""
    current = aioice.ice.get_host_addresses
    inner = current.wrapped if isinstance(current, ice_hosts._AnnouncedOrAioice) else current
    return inner(use_ipv4, use_ipv6)


async def gathered_addresses(addresses: list[str] | None) -> set[str]:
    """The host candidates' addresses of a fresh peer connection's offer."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no STUN: host candidates only
    pc.addTransceiver("audio")
    offer = await pc.createOffer()
    if addresses is None:
        await pc.setLocalDescription(offer)
    else:
        with announced_host_addresses(addresses):
            await pc.setLocalDescription(offer)
    sdp = pc.localDescription.sdp
    await pc.close()
    return {line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:") and " typ host" in line}


def test_installed_aioice_and_aiortc_are_the_locked_ones() -> None:
    check_locked("aioice", "aiortc")


def test_aioice_gathers_host_addresses_through_the_module_function() -> None:
    # gather_candidates looks the module-level function up by name, by keyword, at call time
    gather = inspect.getsource(aioice.ice.Connection.gather_candidates)
    assert "addresses = get_host_addresses(" in gather
    assert "use_ipv4=self._use_ipv4, use_ipv6=self._use_ipv6" in gather
    own = inspect.getsource(aioice.ice)
    assert "def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:" in own
    assert 'ip.ip != "127.0.0.1"' in own  # still leaves loopback out: why the seam exists


def test_setlocaldescription_gathers_inside_the_callers_context() -> None:
    # Wrapping setLocalDescription works because gathering is awaited from it, in the
    # caller's context (tasks created there inherit its contextvars too).
    assert "await self.__gather()" in inspect.getsource(RTCPeerConnection.setLocalDescription)


def test_imports_only_aioice_and_the_standard_library() -> None:
    # The agent installs jaga without the hub; the hub's and the agent's code stay out.
    tree = ast.parse(Path(ice_hosts.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    outside = {name for name in imported if name.partition(".")[0] not in sys.stdlib_module_names}
    assert outside == {"aioice.ice"}


def test_the_hub_and_the_agent_gather_through_this_one_seam() -> None:
    from clients import rtc
    from hub.media import peers

    assert rtc.host_addresses is announced_host_addresses
    assert vars(peers)["announced_host_addresses"] is announced_host_addresses  # what answers are wrapped in


def test_addresses_apply_inside_the_block_only_and_by_family() -> None:
    with announced_host_addresses(["127.0.0.1", "::1"]):
        assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1", "::1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(False, True) == ["::1"]
        with announced_host_addresses(["127.0.0.2"]):
            assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.2"]  # innermost wins
        with announced_host_addresses([]):
            assert aioice.ice.get_host_addresses(True, False) == aioice_own(True, False)  # aioice decides
    assert aioice.ice.get_host_addresses(True, False) == aioice_own(True, False)
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(True, False)


def test_the_wrapper_is_installed_once() -> None:
    for _ in range(3):
        with announced_host_addresses(["127.0.0.1"]):
            pass
    current = aioice.ice.get_host_addresses
    assert isinstance(current, ice_hosts._AnnouncedOrAioice)
    assert not isinstance(current.wrapped, ice_hosts._AnnouncedOrAioice)


async def test_addresses_are_context_local_not_process_wide() -> None:
    # Two gatherings at once (a hub answering while an agent offers, or two answers): each
    # sees its own addresses across awaits, and a task started inside a block keeps them.
    seen: dict[str, list[str]] = {}
    both_inside = asyncio.Barrier(2)

    async def gather_as(name: str, addresses: list[str]) -> None:
        with announced_host_addresses(addresses):
            await both_inside.wait()
            seen[name] = aioice.ice.get_host_addresses(True, False)

    await asyncio.gather(gather_as("hub", ["127.0.0.1"]), gather_as("agent", ["127.0.0.2"]))
    assert seen == {"hub": ["127.0.0.1"], "agent": ["127.0.0.2"]}

    with announced_host_addresses(["127.0.0.3"]):
        started_inside = asyncio.get_running_loop().create_future()

        async def later() -> list[str]:
            await started_inside
            return aioice.ice.get_host_addresses(True, False)

        task = asyncio.ensure_future(later())
    started_inside.set_result(None)
    assert await task == ["127.0.0.3"]
    assert aioice.ice.get_host_addresses(True, False) == aioice_own(True, False)


async def test_peer_connections_gathering_at_once_get_their_own_host_candidates() -> None:
    hub, anywhere = await asyncio.gather(gathered_addresses(["127.0.0.1"]), gathered_addresses(None))
    assert hub == {"127.0.0.1"}
    assert "127.0.0.1" not in anywhere
