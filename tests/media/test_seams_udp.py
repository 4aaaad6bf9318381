"""Seam 13 (``hub.media.seams_udp``): one UDP port for every session, or a port range.

Pins the aioice internals it wraps; shows the demultiplexer dropping (and counting) what
belongs to nobody; and shows a real relay putting every publisher and viewer on one port,
with media flowing, or each on its own port inside the range."""

from __future__ import annotations

import asyncio
import functools
import inspect
import os
import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import aioice.ice
import pytest
from aioice.ice import Connection, StunProtocol

from hub.media import seams_udp
from hub.media.relay import MediaRelay
from hub.media.seams_udp import UdpMux, stun_username
from tests.kit import free_udp_port, wait_until
from tests.locked import check_locked
from tests.media.conftest import RecordedEvents, media_settings, overflow
from tests.media.peers import Publisher, Viewer

MAGIC = 0x2112A442


def stun(kind: int, username: str | None = None, transaction: bytes = b"t" * 12) -> bytes:
    attributes = b""
    if username is not None:
        value = username.encode()
        attributes = struct.pack("!HH", 0x0006, len(value)) + value + b"\x00" * (-len(value) % 4)
    return struct.pack("!HHI12s", kind, len(attributes), MAGIC, transaction) + attributes


def test_the_aioice_internals_it_wraps() -> None:
    check_locked("aioice")
    gather = inspect.getsource(Connection.gather_candidates)
    assert "self.get_component_candidates(component=component, addresses=addresses)" in gather
    current = Connection.__dict__["get_component_candidates"]  # wrapped, once another test gathered
    original = inspect.getsource(current.wrapped if isinstance(current, seams_udp._BoundHostCandidates) else current)
    assert "self._protocols += host_protocols" in original  # host sockets are kept there
    assert "StunProtocol(self)" in original and "local_addr=(address, 0)" in original
    assert list(inspect.signature(StunProtocol.__init__).parameters) == ["self", "receiver"]
    assert "self.receiver.request_received(message, addr, self)" in inspect.getsource(StunProtocol.datagram_received)
    assert "self.transport.sendto" in inspect.getsource(StunProtocol.send_stun)
    assert "self.transport.close()" in inspect.getsource(StunProtocol.close)
    assert "message.transaction_id in self.transactions" in inspect.getsource(StunProtocol.datagram_received)
    assert inspect.signature(aioice.candidate.candidate_foundation).parameters.keys() >= {"candidate_type"}
    assert "self.remote_username: str | None = None" in inspect.getsource(Connection.__init__)
    assert isinstance(Connection.__dict__["local_username"], property)


def test_stun_username_never_raises() -> None:
    assert stun_username(stun(0x0001, "abcd:wxyz")) == "abcd:wxyz"
    assert stun_username(stun(0x0001)) is None
    assert stun_username(b"\x00\x01\x00") is None
    assert stun_username(stun(0x0001, "abcd:wxyz")[:-4]) is None  # cut inside the attribute
    assert stun_username(b"\x00\x01\x00\x08" + b"\x00" * 16 + b"\x00\x06\xff\xff") is None  # wrong cookie


class Recorded(StunProtocol):
    """A session's protocol that only records what the mux hands it."""

    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []
        self.lost = asyncio.Event()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes | str, addr: tuple[Any, ...]) -> None:
        assert isinstance(data, bytes)
        self.got.append((data, (addr[0], addr[1])))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost.set()


class FakeConnection:
    def __init__(self, local: str, remote: str) -> None:
        self.local_username, self.remote_username = local, remote


@pytest.fixture
async def mux() -> AsyncIterator[UdpMux]:
    opened = await UdpMux.open("127.0.0.1", 0)
    yield opened
    opened.close()


async def test_hostile_datagrams_are_dropped_counted_and_reach_nobody(mux: UdpMux) -> None:
    session = mux.session(FakeConnection("abcd", "wxyz"), "abcd")  # type: ignore[arg-type]
    protocol = Recorded()
    session.attach(protocol)
    loop = asyncio.get_running_loop()
    attacker, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
    try:
        target = ("127.0.0.1", mux.port)
        hostile = [stun(0x0001, "zzzz:wxyz"), stun(0x0001), b"\x80\x60" + b"\x00" * 30, b"\x16\xfe\xfd" + b"\x00" * 40,
                   stun(0x0101)]
        for datagram in hostile:
            attacker.sendto(datagram, target)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:  # asyncio never sends an empty one
            raw.sendto(b"", target)
        await wait_until(lambda: mux.received == len(hostile) + 1, message="the hostile datagrams to arrive")
        assert protocol.got == []
        assert dict(mux.dropped) == {"unknown_ufrag": 1, "malformed": 1, "unknown_address": 3, "empty": 1}

        # A check naming the session's ufrag reaches it; its data does only once the session
        # itself has answered that address (the ICE agent's decision, after the integrity check).
        attacker_address = attacker.get_extra_info("sockname")
        attacker.sendto(stun(0x0001, "abcd:wxyz"), target)
        await wait_until(lambda: len(protocol.got) == 1, message="the check to reach its session")
        attacker.sendto(b"\x80\x60rtp", target)
        await wait_until(lambda: mux.dropped["unknown_address"] == 4, message="data before the answer dropped")
        session.sendto(stun(0x0111), attacker_address)  # an error answer claims nothing
        attacker.sendto(b"\x80\x60rtp", target)
        await wait_until(lambda: mux.dropped["unknown_address"] == 5, message="still nobody's after an error")
        session.sendto(stun(0x0101), attacker_address)  # a success answer: the address is the session's
        attacker.sendto(b"\x80\x60rtp", target)
        await wait_until(lambda: len(protocol.got) == 2, message="data after the answer")
        assert protocol.got[1] == (b"\x80\x60rtp", attacker_address)
    finally:
        attacker.close()
    session.close()
    await asyncio.wait_for(protocol.lost.wait(), 5)
    assert mux.by_ufrag == {} and mux.by_address == {}


async def test_rtp_and_rtcp_go_straight_to_the_sessions_media_handler_the_rest_to_its_protocol(mux: UdpMux) -> None:
    session = mux.session(FakeConnection("abcd", "wxyz"), "abcd")  # type: ignore[arg-type]
    protocol = Recorded()
    session.attach(protocol)
    media: list[bytes] = []
    session.media = media.append  # as seams_ingest.divert_srtp sets it
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        session.sendto(stun(0x0101), peer.getsockname())  # the session answered: the address is its own
        target = ("127.0.0.1", mux.port)
        for datagram in (b"\x80\x60rtp", b"\x81\xc9rtcp", b"\x16\xfe\xfddtls", b"\xc0other", stun(0x0001, "abcd:wxyz")):
            peer.sendto(datagram, target)
        await wait_until(lambda: mux.received == 5, message="the five datagrams")
    assert media == [b"\x80\x60rtp", b"\x81\xc9rtcp"]  # bytes 128-191 (RFC 7983)
    assert [data[:3] for data, _ in protocol.got] == [b"\x16\xfe\xfd", b"\xc0ot", stun(0x0001, "abcd:wxyz")[:3]]
    session.close()
    assert session.media is None  # a closed session's handler is not called again


async def test_two_sessions_with_one_ufrag_are_told_apart_by_the_remote_half(mux: UdpMux) -> None:
    first, second = Recorded(), Recorded()
    mux.session(FakeConnection("abcd", "aaaa"), "abcd").attach(first)  # type: ignore[arg-type]
    mux.session(FakeConnection("abcd", "bbbb"), "abcd").attach(second)  # type: ignore[arg-type]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.sendto(stun(0x0001, "abcd:bbbb"), ("127.0.0.1", mux.port))
        await wait_until(lambda: second.got, message="the check for the second session")
    assert first.got == []


def streaming(relay: MediaRelay, station: str) -> bool:
    return relay.is_publishing(station) and relay.stream(station) is not None


async def test_every_session_of_a_relay_shares_the_one_port_and_media_flows() -> None:
    port = free_udp_port()
    events = RecordedEvents()
    relay = MediaRelay(media_settings(udp_port=port), events)
    peers: list[Publisher | Viewer] = []
    try:
        for index in range(2):
            station = f"s{index}"
            peers.append(await Publisher.start(relay, station))
            await events.wait_until(functools.partial(streaming, relay, station))
            for _ in range(2):
                peers.append(await Viewer.start(relay, station))
        viewers = [p for p in peers if isinstance(p, Viewer)]
        await asyncio.gather(*(v.wait_for(pictures=5) for v in viewers))
        ports = set()
        for session in list(relay._sessions.values()):
            for transceiver in session.pc.getTransceivers():
                connection = transceiver.sender.transport.transport.iceGatherer._connection
                ports |= {p.transport.get_extra_info("sockname")[1] for p in connection._protocols}
        assert ports == {port}
        metrics = relay.metrics()
        assert metrics["udp_port_datagrams"] > 0 and metrics["udp_port_dropped_unknown_ufrag"] == 0
        # the relayed packets left in batches: one sendmmsg per packet for a station's two viewers
        assert metrics["udp_port_sent_batched"] >= metrics["packets_forwarded"] > 0
        assert metrics["udp_port_sent_batched"] > metrics["udp_port_send_calls"] > 0
        assert metrics["udp_port_send_fallbacks"] == 0
    finally:
        for peer in peers:
            await peer.close()
        await relay.close()


async def test_without_send_batch_each_viewer_gets_a_sendto_and_media_flows() -> None:
    events = RecordedEvents()
    relay = MediaRelay(media_settings(udp_port=free_udp_port(), send_batch=False), events)
    peers: list[Publisher | Viewer] = []
    try:
        peers.append(await Publisher.start(relay, "s0"))
        await events.wait_until(functools.partial(streaming, relay, "s0"))
        viewer = await Viewer.start(relay, "s0")
        peers.append(viewer)
        await viewer.wait_for(pictures=5)
        metrics = relay.metrics()
        assert metrics["packets_forwarded"] > 0 and metrics["udp_port_send_calls"] == 0
        assert metrics["udp_port_sent_batched"] == 0
    finally:
        for peer in peers:
            await peer.close()
        await relay.close()


async def test_per_session_sockets_inside_a_port_range() -> None:
    low = free_udp_port()
    low = min(low, 65535 - 20)
    events = RecordedEvents()
    relay = MediaRelay(media_settings(udp_port=0, udp_ports=f"{low}-{low + 20}"), events)
    publisher = await Publisher.start(relay, "s0")
    viewer = None
    try:
        await events.wait_until(lambda: relay.stream("s0") is not None)
        viewer = await Viewer.start(relay, "s0")
        await viewer.wait_for(pictures=5)
        ports = set()
        for peer in list(relay._sessions.values()):
            connection = peer.pc.getTransceivers()[0].sender.transport.transport.iceGatherer._connection
            ports |= {p.transport.get_extra_info("sockname")[1] for p in connection._protocols}
        assert len(ports) == 2 and all(low <= p <= low + 20 for p in ports)
        assert relay.metrics()["udp_port_datagrams"] == 0
    finally:
        if viewer is not None:
            await viewer.close()
        await publisher.close()
        await relay.close()


def test_outside_a_binding_block_aioice_gathers_as_ever() -> None:
    seams_udp._install()
    wrapper = Connection.__dict__["get_component_candidates"]
    assert isinstance(wrapper, seams_udp._BoundHostCandidates)
    assert seams_udp._binding.get() is None  # the wrapper then calls the original, unchanged


def test_a_wildcard_port_serves_every_address_of_its_family() -> None:
    wildcard, bound = UdpMux("0.0.0.0"), UdpMux("10.1.2.3")
    assert wildcard.serves("10.1.2.3") and wildcard.serves("192.0.2.1") and not wildcard.serves("2001:db8::1")
    assert bound.serves("10.1.2.3") and not bound.serves("10.1.2.4")


# --- the shared port's buffers -------------------------------------------------------------


def kernel_buffers(sock: socket.socket) -> tuple[int, int]:
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)


def rmem_max() -> int:
    with open("/proc/sys/net/core/rmem_max") as limit:
        return int(limit.read())


def test_the_force_option_numbers_are_this_kernels() -> None:
    """Python's socket module has no SO_RCVBUFFORCE/SO_SNDBUFFORCE; the numbers the mux uses
    must be the kernel's: as root, each sets its own buffer (doubled) past the sysctl cap."""
    assert not hasattr(socket, "SO_RCVBUFFORCE")  # if Python grows them, use Python's
    assert seams_udp.SO_FORCE == {"SO_SNDBUFFORCE": 32, "SO_RCVBUFFORCE": 33}  # this Linux, x86_64/aarch64
    if os.geteuid() != 0:
        pytest.skip("forcing a buffer needs root (CI runs as root)")
    asked = 2 * rmem_max() + 4096  # past what SO_RCVBUF/SO_SNDBUF could reach
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        before = kernel_buffers(sock)
        sock.setsockopt(socket.SOL_SOCKET, seams_udp.SO_FORCE["SO_RCVBUFFORCE"], asked)
        assert kernel_buffers(sock) == (2 * asked, before[1])
        sock.setsockopt(socket.SOL_SOCKET, seams_udp.SO_FORCE["SO_SNDBUFFORCE"], asked)
        assert kernel_buffers(sock) == (2 * asked, 2 * asked)


async def test_the_shared_port_gets_its_whole_buffer_or_says_it_did_not(caplog: pytest.LogCaptureFixture) -> None:
    """As root the mux's socket gets SOCKET_BUFFER_BYTES whatever net.core.rmem_max says (it
    stopped at that cap before: half of it on this machine, 208 KB on a stock Debian);
    without the privilege, less than asked is logged."""
    mux = await UdpMux.open("127.0.0.1", 0)
    try:
        assert mux.transport is not None
        sock = mux.transport.get_extra_info("socket")
        received, sent = kernel_buffers(sock)
        if os.geteuid() == 0:
            assert (received, sent) == (2 * seams_udp.SOCKET_BUFFER_BYTES, 2 * seams_udp.SOCKET_BUFFER_BYTES)
            assert "receive buffer" not in caplog.text
        elif rmem_max() < seams_udp.SOCKET_BUFFER_BYTES:
            assert received == 2 * rmem_max()
            assert "media UDP port: receive buffer" in caplog.text
    finally:
        mux.close()


def proc_udp_drops(sock: socket.socket) -> int | None:
    """The ``drops`` column /proc/net/udp gives ``sock`` (its line found by inode): the kernel's
    other view of the count ``kernel_drops`` reads with one ``getsockopt``."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    with open("/proc/self/net/udp", encoding="ascii") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if fields[9] == inode:
                return int(fields[-1])
    return None


async def test_kernel_drops_is_what_proc_net_udp_says_of_the_port_and_none_once_closed() -> None:
    mux = await UdpMux.open("127.0.0.1", 0)
    try:
        assert mux._socket is not None
        assert mux.kernel_drops() == proc_udp_drops(mux._socket) == 0
        overflow(mux)
        drops = mux.kernel_drops()
        assert drops is not None and drops > 0 and drops == proc_udp_drops(mux._socket)
    finally:
        mux.close()
    await asyncio.sleep(0)  # asyncio closes the socket on the next turn
    assert mux.kernel_drops() is None  # a closed socket (its number may be another's by now)


async def test_an_overflowing_port_is_seen_and_its_gaps_are_not_nacked_meanwhile() -> None:
    """The shared port's kernel drops, read once a tick (relay.check_overflow):
    datagrams sent while the loop cannot read (this test does not yield) overflow its buffer,
    the drop counter rises, ``own_loss`` turns active; a quiet second later it is off."""
    relay = MediaRelay(media_settings(udp_port=free_udp_port()), RecordedEvents())
    await relay.open()
    try:
        relay.check_overflow()
        assert not relay.own_loss.active  # the first look only sets the baseline
        mux = relay._binding.muxes[0]
        assert mux.kernel_drops() == 0
        overflow(mux)  # the loop never runs: nothing is read meanwhile
        relay.check_overflow()
        assert relay.own_loss.active
        assert relay.metrics()["udp_port_kernel_drops"] == mux.kernel_drops() > 0
        relay.check_overflow()  # no drops since the last look
        assert not relay.own_loss.active
    finally:
        await relay.close()
