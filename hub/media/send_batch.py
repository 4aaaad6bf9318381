"""Datagrams to many peers in one system call: Linux's ``sendmmsg``.

A relayed packet goes to every viewer of its station from the one media port: N ``sendto``
calls, each a Python call that copies the protected packet into a new bytes object, parses
the address tuple, lets go of the GIL and enters the kernel. Here a viewer's wire leaves its
protected packet in the buffer it protected it in and adds that buffer, its length and the
viewer's address to the port's :class:`SendBatch`; the station's fan-out flushes the batch
once per packet, with one ``sendmmsg`` for every viewer it reached (Janus, like most SFUs,
calls ``sendto`` per viewer).

What the kernel does not take goes on one by one through the batch's fallback — asyncio's
transport of the same socket, which queues behind a full buffer, retries and reports errors as
before: ``sendmmsg`` stops at the first datagram it cannot send (a full buffer: EAGAIN; an
address the kernel refuses) and says how many went.

An entry's buffer must hold its packet until the flush: a wire whose entry still waits
(``entry.generation == batch.generation``) when it is about to write its next packet there
flushes the batch first, so nothing is overwritten unsent, whoever forgot to flush.

libc is reached through cffi's ABI mode (cffi is already locked, for pylibsrtp): nothing is
compiled. Where there is no ``sendmmsg`` (not Linux), :func:`available` is False and wires
send one by one as before.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from typing import Any, Literal

import cffi

__all__ = ["BatchEntry", "SendBatch", "available"]

# sendmmsg takes at most UIO_MAXIOV (1,024) datagrams per call; a station's viewers beyond
# this many go in the next call.
CAPACITY = 256

_CDEF = """
struct iovec { void *iov_base; size_t iov_len; };
struct msghdr {
    void *msg_name; unsigned int msg_namelen; struct iovec *msg_iov; size_t msg_iovlen;
    void *msg_control; size_t msg_controllen; int msg_flags;
};
struct mmsghdr { struct msghdr msg_hdr; unsigned int msg_len; };
int sendmmsg(int sockfd, struct mmsghdr *msgvec, unsigned int vlen, int flags);
"""

_ffi = cffi.FFI()
_ffi.cdef(_CDEF)  # glibc's layout: socklen_t is unsigned int, the lengths are size_t
_libc: Any = None
if sys.platform == "linux":
    try:
        _libc = _ffi.dlopen(None)
        _libc.sendmmsg  # noqa: B018  # resolved now, so a libc without it counts as unavailable
    except (OSError, AttributeError):
        _libc = None


def available() -> bool:
    """This platform's libc has ``sendmmsg`` (Linux)."""
    return _libc is not None


def sockaddr(family: int, addr: tuple[str, int]) -> bytes | None:
    """The ``sockaddr_in`` / ``sockaddr_in6`` of ``addr`` for a socket of ``family``, or None
    (another family, an IPv6 address with a zone: those go through ``sendto``). Pure."""
    host, port = addr[0], addr[1]
    try:
        if family == socket.AF_INET and ":" not in host:
            return (socket.AF_INET.to_bytes(2, sys.byteorder) + port.to_bytes(2, "big")
                    + socket.inet_pton(socket.AF_INET, host) + bytes(8))
        if family == socket.AF_INET6 and ":" in host and "%" not in host:
            return (socket.AF_INET6.to_bytes(2, sys.byteorder) + port.to_bytes(2, "big") + bytes(4)
                    + socket.inet_pton(socket.AF_INET6, host) + bytes(4))
    except (OSError, OverflowError):
        return None
    return None


class BatchEntry:
    """One peer's place in a batch: where its packets lie (a buffer of its owner's) and where
    they go. It holds nothing else (a slot may name it after its owner is gone)."""

    __slots__ = ("addr", "base", "buffer", "generation", "name", "name_length")

    def __init__(self, buffer: Any, name: bytes, addr: tuple[str, int]) -> None:
        self.buffer = buffer  # held, so a slot naming this entry never points at freed memory
        self.base = int(_ffi.cast("uintptr_t", buffer))
        self.name = _ffi.new("char[]", name)  # the sockaddr, kept alive while the entry is
        self.name_length = len(name)  # cffi's char[] adds a NUL the kernel must not be told of
        self.addr = addr
        self.generation = -1  # the batch generation it waits in; -1: none


class SendBatch:
    """The datagrams waiting for one ``sendmmsg`` on one non-blocking UDP socket;
    ``fallback(data, addr)`` sends one the kernel did not take (asyncio's transport)."""

    def __init__(self, sock: socket.socket, fallback: Callable[[bytes, tuple[str, int]], object],
                 capacity: int = CAPACITY) -> None:
        if _libc is None:
            raise OSError("sendmmsg is not available here")
        self._sendmmsg = _libc.sendmmsg
        self._fd = sock.fileno()
        self._family = sock.family
        self._fallback = fallback
        self._capacity = capacity
        self._messages = _ffi.new("struct mmsghdr[]", capacity)
        self._vectors = _ffi.new("struct iovec[]", capacity)
        for slot in range(capacity):
            header = self._messages[slot].msg_hdr
            header.msg_iov = self._vectors + slot
            header.msg_iovlen = 1
        # iov_len of slot n, as a word of a flat view: set per datagram without cffi's objects
        stride = _ffi.sizeof("struct iovec") // _ffi.sizeof("size_t")
        word: Literal["Q", "I"] = "Q" if _ffi.sizeof("size_t") == 8 else "I"  # size_t
        self._lengths = memoryview(_ffi.buffer(self._vectors)).cast(word)
        self._length_at = [slot * stride + _ffi.offsetof("struct iovec", "iov_len") // _ffi.sizeof("size_t")
                           for slot in range(capacity)]
        self._slots: list[BatchEntry | None] = [None] * capacity
        self._count = 0
        self.generation = 0  # one per flush: an entry added since waits
        self.calls = 0  # sendmmsg calls made
        self.datagrams = 0  # datagrams the kernel took from them
        self.fallbacks = 0  # datagrams sent one by one instead (refused or not taken)

    def entry(self, buffer: Any, addr: tuple[str, int]) -> BatchEntry | None:
        """An entry for packets left in ``buffer`` (a cffi ``unsigned char[]`` of any FFI,
        kept alive by its owner) for ``addr``; None if this socket cannot batch to it."""
        name = sockaddr(self._family, addr)
        if name is None:
            return None
        return BatchEntry(buffer, name, addr)

    def __len__(self) -> int:
        return self._count

    def add(self, entry: BatchEntry, length: int) -> None:
        """Queue the ``length`` bytes at the entry's buffer, which must hold them until the
        next :meth:`flush`: its owner flushes first if the entry still waits from before
        (``entry.generation == self.generation``), then writes its next packet there."""
        slot = self._count
        if self._slots[slot] is not entry:  # a fan-out reaches its viewers in the same order
            self._place(slot, entry)
        self._lengths[self._length_at[slot]] = length
        entry.generation = self.generation
        self._count = slot + 1
        if slot + 1 == self._capacity:
            self.flush()

    def _place(self, slot: int, entry: BatchEntry) -> None:
        self._slots[slot] = entry
        header = self._messages[slot].msg_hdr
        header.msg_name = entry.name
        header.msg_namelen = entry.name_length
        self._vectors[slot].iov_base = _ffi.cast("void *", entry.base)

    def flush(self) -> None:
        """Send what waits: one ``sendmmsg``, then the rest through their fallbacks."""
        count = self._count
        if not count:
            return
        self._count = 0
        self.generation += 1
        if self._fd < 0:
            return  # closed: the number may name another file by now
        sent = self._sendmmsg(self._fd, self._messages, count, 0)
        self.calls += 1
        if sent > 0:
            self.datagrams += sent
        if sent != count:
            self._fall_back(max(sent, 0), count)

    def _fall_back(self, start: int, count: int) -> None:
        for slot in range(start, count):
            entry = self._slots[slot]
            assert entry is not None
            length = self._lengths[self._length_at[slot]]
            data = bytes(_ffi.buffer(_ffi.cast("char *", entry.base), length))
            self.fallbacks += 1
            self._fallback(data, entry.addr)

    def close(self) -> None:
        """Before the socket closes: what waits is dropped and nothing is sent any more."""
        self._fd = -1
        self._count = 0
        self.generation += 1
        self._slots = [None] * self._capacity
