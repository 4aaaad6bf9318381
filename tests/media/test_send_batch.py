"""The shared port's batch of datagrams (``hub.media.send_batch``): real sockets, real sendmmsg."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

import cffi
import pytest

from hub.media import send_batch
from hub.media.send_batch import SendBatch, sockaddr

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="sendmmsg is Linux's")  # there: must be found

_ffi = cffi.FFI()  # buffers from another FFI than the batch's, as the wires' are (pylibsrtp's)


def test_libc_offers_sendmmsg() -> None:
    assert send_batch.available()


def test_sockaddr_is_the_kernel_layout_for_the_sockets_family_only() -> None:
    native = sys.byteorder
    assert sockaddr(socket.AF_INET, ("127.0.0.1", 7882)) == (
        socket.AF_INET.to_bytes(2, native) + b"\x1e\xca" + b"\x7f\x00\x00\x01" + bytes(8))
    assert sockaddr(socket.AF_INET6, ("::1", 443)) == (
        socket.AF_INET6.to_bytes(2, native) + b"\x01\xbb" + bytes(4) + bytes(15) + b"\x01" + bytes(4))
    assert len(sockaddr(socket.AF_INET6, ("fe80::1", 1)) or b"") == 28  # what the kernel reads of a sockaddr_in6
    # what a batch cannot send goes through sendto: None
    assert sockaddr(socket.AF_INET, ("::1", 1)) is None  # another family than the socket's
    assert sockaddr(socket.AF_INET6, ("127.0.0.1", 1)) is None
    assert sockaddr(socket.AF_INET6, ("fe80::1%eth0", 1)) is None  # a zone: the kernel needs its index
    assert sockaddr(socket.AF_INET, ("not-an-address", 1)) is None
    assert sockaddr(socket.AF_INET, ("127.0.0.1", 70000)) is None


class Peer:
    """A receiving socket on loopback and a buffer of the sender's for its packets."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)
        self.addr: tuple[str, int] = self.sock.getsockname()
        self.buffer = _ffi.new("unsigned char[]", 2048)

    def put(self, data: bytes) -> int:
        _ffi.memmove(self.buffer, data, len(data))
        return len(data)

    def received(self) -> bytes:
        return self.sock.recv(4096)

    def nothing_waiting(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.settimeout(5)
        return False


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)  # as asyncio leaves the media port
    yield sock
    sock.close()


@pytest.fixture
def peers() -> Iterator[list[Peer]]:
    made = [Peer() for _ in range(3)]
    yield made
    for peer in made:
        peer.sock.close()


def unused(data: bytes, addr: tuple[str, int]) -> None:
    raise AssertionError(f"nothing should fall back, got {len(data)} bytes for {addr}")


def test_one_flush_sends_each_peer_its_own_bytes_in_one_call(sender: socket.socket, peers: list[Peer]) -> None:
    batch = SendBatch(sender, unused)
    entries = [batch.entry(peer.buffer, peer.addr) for peer in peers]
    for rounds in range(3):  # the same order again: the slots are reused as they are
        payloads = [os.urandom(100 + 400 * i + rounds) for i in range(3)]
        for peer, entry, payload in zip(peers, entries, payloads, strict=True):
            assert entry is not None
            batch.add(entry, peer.put(payload))
        assert len(batch) == 3 and all(peer.nothing_waiting() for peer in peers)  # nothing left yet
        batch.flush()
        assert len(batch) == 0
        assert [peer.received() for peer in peers] == payloads
    assert (batch.calls, batch.datagrams, batch.fallbacks) == (3, 9, 0)
    batch.flush()  # nothing waits: no call
    assert batch.calls == 3


def test_a_new_order_rewrites_the_slots(sender: socket.socket, peers: list[Peer]) -> None:
    batch = SendBatch(sender, unused)
    entries: list[Any] = [batch.entry(peer.buffer, peer.addr) for peer in peers]
    for order in ([0, 1, 2], [2, 0], [1, 2, 0]):
        for index in order:
            batch.add(entries[index], peers[index].put(f"to {index} in {order}".encode()))
        batch.flush()
        for index in order:
            assert peers[index].received() == f"to {index} in {order}".encode()
    assert all(peer.nothing_waiting() for peer in peers)


def test_a_full_batch_flushes_itself(sender: socket.socket, peers: list[Peer]) -> None:
    batch = SendBatch(sender, unused, capacity=2)
    entries: list[Any] = [batch.entry(peer.buffer, peer.addr) for peer in peers]
    batch.add(entries[0], peers[0].put(b"a"))
    batch.add(entries[1], peers[1].put(b"b"))  # the second of two: sent now
    assert len(batch) == 0 and peers[0].received() == b"a" and peers[1].received() == b"b"
    batch.add(entries[2], peers[2].put(b"c"))
    batch.flush()
    assert peers[2].received() == b"c" and (batch.calls, batch.datagrams) == (2, 3)


def test_an_entry_waits_in_the_generation_it_was_added_in(sender: socket.socket, peers: list[Peer]) -> None:
    # what a wire checks before writing its next packet into the buffer
    batch = SendBatch(sender, unused)
    entry: Any = batch.entry(peers[0].buffer, peers[0].addr)
    assert entry.generation != batch.generation
    batch.add(entry, peers[0].put(b"first"))
    assert entry.generation == batch.generation
    batch.flush()
    assert entry.generation != batch.generation and peers[0].received() == b"first"


def test_what_the_kernel_refuses_goes_one_by_one_through_the_fallbacks(
        sender: socket.socket, peers: list[Peer]) -> None:
    # Port 0 is refused by the kernel (EINVAL) without anything leaving the machine:
    # sendmmsg stops there, and that datagram and every one after it fall back.
    fell_back: list[tuple[bytes, tuple[str, int]]] = []

    def fallback(data: bytes, addr: tuple[str, int]) -> None:
        fell_back.append((data, addr))

    batch = SendBatch(sender, fallback)
    good: Any = batch.entry(peers[0].buffer, peers[0].addr)
    refused: Any = batch.entry(peers[1].buffer, ("127.0.0.1", 0))
    after: Any = batch.entry(peers[2].buffer, peers[2].addr)
    batch.add(good, peers[0].put(b"taken"))
    batch.add(refused, peers[1].put(b"refused"))
    batch.add(after, peers[2].put(b"after it"))
    batch.flush()
    assert peers[0].received() == b"taken"
    assert fell_back == [(b"refused", ("127.0.0.1", 0)), (b"after it", peers[2].addr)]
    assert (batch.calls, batch.datagrams, batch.fallbacks) == (1, 1, 2)

    fell_back.clear()  # the first refused: sendmmsg answers -1, everything falls back
    batch.add(refused, peers[1].put(b"again"))
    batch.add(good, peers[0].put(b"then this"))
    batch.flush()
    assert fell_back == [(b"again", ("127.0.0.1", 0)), (b"then this", peers[0].addr)]
    assert (batch.calls, batch.datagrams, batch.fallbacks) == (2, 1, 4)


def test_the_kernel_is_told_the_sockaddrs_own_length(sender: socket.socket, peers: list[Peer]) -> None:
    batch = SendBatch(sender, unused)
    entry: Any = batch.entry(peers[0].buffer, peers[0].addr)
    assert entry.name_length == 16  # a sockaddr_in, not cffi's char[] with its NUL (17)


def test_a_peer_the_socket_cannot_batch_to_gets_no_entry(sender: socket.socket) -> None:
    batch = SendBatch(sender, unused)
    assert batch.entry(_ffi.new("unsigned char[]", 16), ("::1", 9)) is None


def test_a_closed_batch_sends_nothing(sender: socket.socket, peers: list[Peer]) -> None:
    # the socket's number may name another file once it is closed: nothing goes to it
    batch = SendBatch(sender, unused)
    entry: Any = batch.entry(peers[0].buffer, peers[0].addr)
    batch.add(entry, peers[0].put(b"waiting"))
    batch.close()
    assert len(batch) == 0
    batch.add(entry, peers[0].put(b"after"))
    batch.flush()
    assert peers[0].nothing_waiting() and batch.calls == 0
