"""Where ICE binds its host sockets: one shared UDP port for every session, or a port range.

aioice gives every peer connection its own socket on an ephemeral port; a hub behind a
firewall must open one port (LiveKit's ``udp_port``, pion's UDPMux) or a known range
(Janus's ``rtp_port_range``). Seam 13, pinned by ``tests/media/test_seams_udp.py``:

13. ``binding``: aioice gathers host candidates in ``Connection.get_component_candidates``
    (awaited by ``gather_candidates`` with the addresses ``get_host_addresses`` gave), which
    creates one ``StunProtocol`` per address with ``loop.create_datagram_endpoint`` and keeps
    it in ``Connection._protocols``. Inside a ``binding`` block we wrap that method: the
    original still gathers what is not a host candidate (TURN, when configured) from an
    empty address list, and we add the host candidates ourselves — each a ``StunProtocol``
    whose transport is a :class:`SessionSocket` on the shared :class:`UdpMux` (or a real
    socket bound inside the range), with the ``Candidate`` aioice would have made.

The demultiplexer (RFC 7983 for the first byte): a STUN binding request goes to the session
whose local ICE ufrag its USERNAME names (the first half of ``local:remote``); every other
datagram goes to the session that owns its source address. A session owns an address once it
has sent it a STUN request, a success response or data (DTLS, SRTP): so only the ICE agent's
own decisions, taken after MESSAGE-INTEGRITY was checked, map an address, never a datagram
that merely claims to come from one. Anything else — an unknown ufrag, a STUN request without
USERNAME, a datagram from an address nobody owns, an empty one — is dropped and counted by
reason (``UdpMux.dropped``), and no session sees it. A forged datagram from an owned address
reaches that session, where DTLS or SRTP authentication drops it, as it would on a socket of
its own.

The ingest and egress fast paths keep working: a session's RTP/RTCP goes straight to
``SessionSocket.media`` when ``seams_ingest`` has set it (otherwise its ``StunProtocol`` is
called per datagram through its instance attribute ``datagram_received``), and egress
writes each packet with the socket's own ``sendto`` while asyncio's
buffer for it is empty (``SessionSocket.raw_sendto``) — or, with ``batch_sends``, leaves it in
the port's :class:`~hub.media.send_batch.SendBatch` for one ``sendmmsg`` per relayed packet —
through asyncio's transport otherwise, so its flow control (a backed-up socket queues in
order) stays as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import platform
import random
import socket
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

from aioice.candidate import Candidate, candidate_foundation, candidate_priority
from aioice.ice import Connection, StunProtocol

from hub.media import send_batch
from hub.media.send_batch import SendBatch

logger = logging.getLogger(__name__)

__all__ = ["DROP_REASONS", "Binding", "SessionSocket", "UdpMux", "binding"]

DROP_REASONS = ("empty", "malformed", "unknown_ufrag", "unknown_address")

STUN_BINDING_REQUEST = 0x0001
STUN_BINDING_SUCCESS = 0x0101
STUN_USERNAME = 0x0006
STUN_HEADER = struct.Struct("!HHI12s")  # type, length, magic cookie, transaction id
STUN_MAGIC = 0x2112A442
ATTRIBUTE = struct.Struct("!HH")
SOCKET_BUFFER_BYTES = 8 * 1024 * 1024  # every session's packets queue in one socket
KERNEL_DOUBLES = 2 if sys.platform == "linux" else 1  # what getsockopt reports of a buffer asked for
GENERIC_SOCKET_ABI = {"x86_64", "aarch64", "i386", "i686", "armv7l", "armv6l", "riscv64", "ppc64le"}
DRAIN_PER_WAKEUP = 64  # datagrams read per loop wake-up, beyond asyncio's one
RECEIVE_BYTES = 65536
# Linux's SO_MEMINFO: the socket's memory counters as sock_diag lists them (SK_MEMINFO_*), the
# ninth (SK_MEMINFO_DROPS) the datagrams dropped at this socket with its receive buffer full.
# Python names no constant for it: 55 is the generic number (as for SO_FORCE below).
SO_MEMINFO = 55
SK_MEMINFO_DROPS_AT = 8 * 4
SK_MEMINFO_BYTES = 9 * 4


def stun_username(data: bytes) -> str | None:
    """The USERNAME of a STUN message (RFC 5389 §15.3), or None; never raises."""
    if len(data) < 20:
        return None
    _, length, magic, _ = STUN_HEADER.unpack_from(data)
    if magic != STUN_MAGIC:
        return None
    position, end = 20, min(len(data), 20 + length)
    while position + 4 <= end:
        kind, size = ATTRIBUTE.unpack_from(data, position)
        position += 4
        if kind == STUN_USERNAME:
            value = data[position:position + size]
            return value.decode("utf-8", "replace") if len(value) == size else None
        position += (size + 3) & ~3
    return None


def _claims_address(data: bytes) -> bool:
    """Sending this makes the peer's address ours: data (DTLS, SRTP), or the ICE agent's own
    check or its success answer to a check that passed MESSAGE-INTEGRITY (not an error)."""
    if not data or data[0] >= 4:
        return True
    return len(data) >= 2 and (data[0] << 8 | data[1]) in (STUN_BINDING_REQUEST, STUN_BINDING_SUCCESS)


class UdpMux(asyncio.DatagramProtocol):
    """One bound UDP socket shared by every session, demultiplexed as the module says."""

    def __init__(self, bind_host: str) -> None:
        self.bind_host = bind_host
        self.port = 0
        self.transport: asyncio.DatagramTransport | None = None
        # aioice's ufrags are 4 characters: with hundreds of sessions two may share one, told
        # apart by the remote half of USERNAME (``Connection.remote_username``)
        self.by_ufrag: dict[str, list[SessionSocket]] = {}
        self.by_address: dict[tuple[str, int], SessionSocket] = {}
        self.dropped: Counter[str] = Counter()
        self.received = 0
        self._recvfrom: Any = _nothing_waiting
        self._sendto: Any = _discard  # the socket's own (non-blocking) sendto, once bound
        # egress's datagrams for one sendmmsg per relayed packet (None: a sendto each)
        self.batch: SendBatch | None = None
        self._socket: socket.socket | None = None  # for kernel_drops, once bound

    @classmethod
    async def open(cls, bind_host: str, port: int, *, batch_sends: bool = False) -> UdpMux:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET, socket.SOCK_DGRAM)
        try:
            _grow_buffers(sock)
            sock.bind((bind_host, port))
        except OSError:
            sock.close()
            raise
        _, mux = await loop.create_datagram_endpoint(lambda: cls(bind_host), sock=sock)
        mux.port = sock.getsockname()[1]
        mux._recvfrom = sock.recvfrom  # non-blocking: asyncio made it so
        mux._sendto = sock.sendto
        if batch_sends and send_batch.available():
            assert mux.transport is not None
            mux.batch = SendBatch(sock, mux.transport.sendto)
        mux._socket = sock
        return mux

    def kernel_drops(self) -> int | None:
        """Datagrams the kernel dropped at this socket so far, its receive buffer full (None
        where that cannot be read: not Linux, or the socket closed). One ``getsockopt``
        (``SO_MEMINFO``), ≈ 0.3 µs; /proc/net/udp's ``drops`` column, read before, made the
        kernel write out its whole UDP table: ≈ 33 µs warm, ≈ 200 µs in a hub woken once a second."""
        if self._socket is None or not MEMINFO_READABLE:
            return None
        try:
            counters = self._socket.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, SK_MEMINFO_BYTES)
        except OSError:
            return None
        if len(counters) < SK_MEMINFO_BYTES:
            return None
        return int.from_bytes(counters[SK_MEMINFO_DROPS_AT:SK_MEMINFO_BYTES], sys.byteorder)

    def serves(self, host: str) -> bool:
        """Candidates for ``host`` can use this socket: it is bound there, or to every address
        of the host's family (no ``media.host_addresses``: aioice lists the machine's own)."""
        if self.bind_host in ("0.0.0.0", "::"):
            return (":" in host) == (":" in self.bind_host)
        return host == self.bind_host

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        # asyncio reads one datagram per wake-up of its loop; with every session on one socket
        # that made a loop turn (an epoll_wait) per packet, where a socket each gave many per
        # turn (bench/ingest.py: +8 % per publisher). So drain what else is waiting, bounded,
        # before the loop runs anything else.
        self._handle(data, addr)
        recvfrom = self._recvfrom
        for _ in range(DRAIN_PER_WAKEUP):
            try:
                data, addr = recvfrom(RECEIVE_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error for an earlier send: as asyncio reports it
                self.error_received(exc)
                return
            self._handle(data, addr)

    def _handle(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.received += 1
        if not data:
            self.dropped["empty"] += 1
            return
        address = addr if len(addr) == 2 else (addr[0], addr[1])  # IPv6 gives four
        if data[0] < 4:  # STUN
            session = self._stun_session(data, address)
        else:
            session = self.by_address.get(address)  # the hot path: one dict lookup per packet
            if session is None:
                self.dropped["unknown_address"] += 1
                return
            if 127 < data[0] < 192 and session.media is not None:  # RTP/RTCP (RFC 7983)
                session.media(data)
                return
        if session is not None:
            session.deliver(data, address)

    def _stun_session(self, data: bytes, address: tuple[str, int]) -> SessionSocket | None:
        if len(data) >= 2 and (data[0] << 8 | data[1]) == STUN_BINDING_REQUEST:
            username = stun_username(data)
            if username is None:
                self.dropped["malformed"] += 1
                return None
            local, _, remote = username.partition(":")
            sessions = self.by_ufrag.get(local)
            if not sessions:
                self.dropped["unknown_ufrag"] += 1
                return None
            if len(sessions) == 1:
                return sessions[0]
            return next((s for s in sessions if s.connection.remote_username == remote), sessions[0])
        session = self.by_address.get(address)  # an answer to our check, an indication
        if session is None:
            self.dropped["unknown_address"] += 1
        return session

    def error_received(self, exc: Exception) -> None:
        logger.debug("media UDP port %s: %s", self.port, exc)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.batch is not None:  # asyncio closes the socket right after: its number may be reused
            self.batch.close()
        for sessions in list(self.by_ufrag.values()):
            for session in list(sessions):
                session.close()

    # --- sessions --------------------------------------------------------------------

    def session(self, connection: Connection, ufrag: str) -> SessionSocket:
        session = SessionSocket(self, connection, ufrag)
        self.by_ufrag.setdefault(ufrag, []).append(session)
        return session

    def _forget(self, session: SessionSocket) -> None:
        sessions = self.by_ufrag.get(session.ufrag, [])
        if session in sessions:
            sessions.remove(session)
            if not sessions:
                del self.by_ufrag[session.ufrag]
        for address in session.addresses:
            if self.by_address.get(address) is session:
                del self.by_address[address]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class SessionSocket(asyncio.DatagramTransport):
    """What one session's ``StunProtocol`` sees as its transport: the shared socket, with
    its own peer addresses. ``get_write_buffer_size`` is the shared socket's: a backed-up
    socket is backed up for every session on it."""

    def __init__(self, mux: UdpMux, connection: Connection, ufrag: str) -> None:
        super().__init__()
        self.mux = mux
        self.connection = connection
        self.ufrag = ufrag
        self.addresses: set[tuple[str, int]] = set()
        self.protocols: list[StunProtocol] = []
        assert mux.transport is not None
        self._send = mux.transport.sendto
        # For the egress hot path (``seams_egress.SrtpWire``): bytes asyncio holds for the
        # shared socket (the kernel's buffer was full), and the socket's own ``sendto``, for
        # a peer in ``addresses`` while that is 0 (nothing queued that a packet could
        # overtake); otherwise, or when the kernel refuses, ``sendto`` below (asyncio queues,
        # retries and reports, as before). Two Python calls less per packet than ``sendto``.
        self.backlog: Callable[[], int] = mux.transport.get_write_buffer_size  # type: ignore[attr-defined]
        self.raw_sendto: Callable[[bytes, tuple[str, int]], object] = mux._sendto
        self.protocol: StunProtocol = None  # type: ignore[assignment]  # set right after, by attach
        # Where the session's RTP/RTCP goes straight from the mux, past ``deliver`` and the
        # protocol (``seams_ingest`` sets it); None: through them, as any other datagram.
        self.media: Callable[[bytes], None] | None = None
        self._closing = False

    def attach(self, protocol: StunProtocol) -> None:
        """One protocol per announced host; on a wildcard port several share this socket."""
        self.protocols.append(protocol)
        self.protocol = self.protocols[0]
        protocol.connection_made(self)

    def deliver(self, data: bytes, address: tuple[str, int]) -> None:
        # Called per datagram: the protocol's own (instance) datagram_received, which the
        # ingest fast path shadows. Several protocols (one port announced on several hosts):
        # a STUN answer goes to the one that asked (its transaction), the rest to the first.
        protocol = self.protocol
        if len(self.protocols) > 1 and data[0] < 4 and len(data) >= 20:
            transaction = data[8:20]
            protocol = next((p for p in self.protocols if transaction in p.transactions), protocol)
        protocol.datagram_received(data, address)

    def sendto(self, data: bytes | bytearray | memoryview, addr: Any = None) -> None:
        if addr in self.addresses:  # the hot path (egress): a peer this session already owns
            self._send(data, addr)
            return
        if self._closing or self.mux.transport is None:
            return
        address = (addr[0], addr[1])
        if _claims_address(bytes(data[:2])):
            self.addresses.add(address)
            self.mux.by_address[address] = self
        self.mux.transport.sendto(data, address)

    def get_write_buffer_size(self) -> int:
        transport: Any = self.mux.transport  # the selector transport has it; typeshed's ABC leaves it out
        return int(transport.get_write_buffer_size()) if transport is not None else 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "sockname":
            return (self.mux.bind_host, self.mux.port)
        return self.mux.transport.get_extra_info(name, default) if self.mux.transport is not None else default

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._send = _discard
        self.media = None
        self.mux._forget(self)
        self.addresses.clear()
        for protocol in self.protocols:
            asyncio.get_running_loop().call_soon(protocol.connection_lost, None)

    def abort(self) -> None:
        self.close()


def _nothing_waiting(size: int) -> tuple[bytes, Any]:
    raise BlockingIOError


def _discard(data: Any, addr: Any = None) -> None:
    """What a closed session's socket sends with."""


def _grow_buffers(sock: socket.socket) -> None:
    """Every session's packets share this socket's buffers: ask for ``SOCKET_BUFFER_BYTES``,
    forced past ``net.core.rmem_max``/``wmem_max`` where the process may (root, or
    CAP_NET_ADMIN), else as much as those allow; a receive buffer short of it is logged."""
    for forced, plain in ((SO_FORCE.get("SO_RCVBUFFORCE"), socket.SO_RCVBUF),
                          (SO_FORCE.get("SO_SNDBUFFORCE"), socket.SO_SNDBUF)):
        try:
            if forced is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, forced, SOCKET_BUFFER_BYTES)
        except OSError:
            sock.setsockopt(socket.SOL_SOCKET, plain, SOCKET_BUFFER_BYTES)
    # Linux doubles what it is asked (the other half is its own bookkeeping) and reports that.
    granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // KERNEL_DOUBLES
    if granted < SOCKET_BUFFER_BYTES:
        logger.warning("media UDP port: receive buffer %d bytes (asked %d); run as root or raise "
                       "net.core.rmem_max (docs/operations.md)", granted, SOCKET_BUFFER_BYTES)


def _force_options() -> dict[str, int]:
    """``SO_RCVBUFFORCE``/``SO_SNDBUFFORCE``: Python's socket module does not export them, and
    without them the buffers silently stopped at ``rmem_max`` (half the asked 8 MB here, 208 KB
    on a stock Debian). Their numbers are the generic Linux ones (include/uapi/asm-generic/
    socket.h); only architectures known to use those get them (alpha, MIPS, PA-RISC and SPARC
    number them differently)."""
    if sys.platform != "linux" or platform.machine() not in GENERIC_SOCKET_ABI:
        return {}
    return {"SO_SNDBUFFORCE": 32, "SO_RCVBUFFORCE": 33}


SO_FORCE = _force_options()
MEMINFO_READABLE = bool(SO_FORCE)  # SO_MEMINFO has the generic number on the same architectures


# --- where a session's host candidates come from ------------------------------------------


@dataclass(frozen=True)
class Binding:
    """The hub's choice: shared ports (``muxes``, one per bound address), or per-session
    sockets inside ``port_range`` (inclusive), or neither (aioice's ephemeral ports)."""

    muxes: tuple[UdpMux, ...] = ()
    port_range: tuple[int, int] | None = None


_binding: contextvars.ContextVar[Binding | None] = contextvars.ContextVar("jaga_udp_binding", default=None)


class _BoundHostCandidates:
    """Stands in for ``Connection.get_component_candidates`` (installed once, process-wide);
    outside a ``binding`` block it is the original."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def __get__(self, connection: Connection | None, owner: type) -> Any:
        if connection is None:
            return self
        return lambda component, addresses, timeout=5: self.gather(connection, component, addresses, timeout)

    async def gather(self, connection: Connection, component: int, addresses: list[str],
                     timeout: int) -> list[Candidate]:
        chosen = _binding.get()
        if chosen is None or not addresses or (not chosen.muxes and chosen.port_range is None):
            return list(await self.wrapped(connection, component, addresses, timeout))
        if chosen.muxes:
            protocols = _on_shared_ports(connection, component, addresses, chosen.muxes)
        else:
            assert chosen.port_range is not None
            protocols = await _in_port_range(connection, component, addresses, chosen.port_range)
        connection._protocols += protocols
        others = await self.wrapped(connection, component, [], timeout)  # TURN, if any
        return [p.local_candidate for p in protocols] + list(others)


def _host_candidate(component: int, host: str, port: int) -> Candidate:
    return Candidate(foundation=candidate_foundation("host", "udp", host), component=component, transport="udp",
                     priority=candidate_priority(component, "host"), host=host, port=port, type="host")


def _on_shared_ports(connection: Connection, component: int, addresses: list[str],
                     muxes: tuple[UdpMux, ...]) -> list[StunProtocol]:
    protocols = []
    for mux in muxes:
        hosts = [a for a in addresses if mux.serves(a)]
        if not hosts:
            continue
        session = mux.session(connection, connection.local_username)
        for host in hosts:  # one protocol per announced host, all on the one session socket
            protocol = StunProtocol(connection)
            session.attach(protocol)
            protocol.local_candidate = _host_candidate(component, host, mux.port)
            protocols.append(protocol)
    return protocols


async def _in_port_range(connection: Connection, component: int, addresses: list[str],
                         port_range: tuple[int, int]) -> list[StunProtocol]:
    loop = asyncio.get_running_loop()
    low, high = port_range
    protocols = []
    for address in addresses:
        ports = list(range(low, high + 1))
        random.shuffle(ports)  # not the same first port for every session: fewer collisions
        for port in ports:
            try:
                _, protocol = await loop.create_datagram_endpoint(lambda: StunProtocol(connection),
                                                                  local_addr=(address, port))
            except OSError:
                continue
            protocol.local_candidate = _host_candidate(component, address, port)
            protocols.append(protocol)
            break
        else:
            logger.error("media.udp_ports %d-%d: no free port on %s", low, high, address)
    return protocols


def _install() -> None:
    current = Connection.__dict__["get_component_candidates"]
    if not isinstance(current, _BoundHostCandidates):
        Connection.get_component_candidates = _BoundHostCandidates(current)  # type: ignore[method-assign,assignment]  # class-level wrap, once


@contextlib.contextmanager
def binding(chosen: Binding) -> Iterator[None]:
    """ICE gathering inside this block binds host candidates as ``chosen`` says. Wrap
    ``setLocalDescription`` (aiortc gathers there, in the caller's context)."""
    _install()
    token = _binding.set(chosen)
    try:
        yield
    finally:
        _binding.reset(token)
