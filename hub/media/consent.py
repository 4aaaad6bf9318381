"""Answering a viewer's consent check (a STUN Binding request on an ICE pair already in use,
RFC 7675 §5.2, RFC 8445 §7.3, RFC 8489) without aioice's message objects.

Every viewer's ICE agent checks, every ~5 s, that the hub still consents to receive; aioice
answers each by parsing the request into a dict of attributes, checking it, building a
response object and writing it out twice over (once for MESSAGE-INTEGRITY, once for
FINGERPRINT): about a tenth of the hub's CPU per browser-like viewer, more than the rest of
that viewer's RTCP (docs/benchmarks.md section 3). ``answer_check`` answers the common case
with the bytes aioice would send; for anything else it answers None and the caller leaves
the request to aioice, so what is refused, and how, stays aioice's.

The common case: a well-formed Binding request that carries only USERNAME, PRIORITY, one
role attribute, MESSAGE-INTEGRITY and FINGERPRINT (and comprehension-optional attributes
aioice does not know, such as a browser's network information), whose USERNAME is exactly
ours, whose integrity and fingerprint are valid, without USE-CANDIDATE (a nomination: aioice
must see it) and without a role conflict (aioice must resolve it).
"""

from __future__ import annotations

import binascii
import hmac
import socket
import struct

BINDING_REQUEST, BINDING_SUCCESS = 0x0001, 0x0101
MAGIC_COOKIE = 0x2112A442
HEADER_BYTES = 20
USERNAME, PRIORITY, MESSAGE_INTEGRITY = 0x0006, 0x0024, 0x0008
XOR_MAPPED_ADDRESS, FINGERPRINT = 0x0020, 0x8028
ICE_CONTROLLED, ICE_CONTROLLING = 0x8029, 0x802A
FINGERPRINT_XOR = 0x5354554E
INTEGRITY_BYTES, FINGERPRINT_BYTES = 20, 4
# attribute type -> its exact length; any other type aioice knows sends the request to aioice
_EXPECTED = {USERNAME: None, PRIORITY: 4, ICE_CONTROLLED: 8, ICE_CONTROLLING: 8, MESSAGE_INTEGRITY: INTEGRITY_BYTES,
             FINGERPRINT: FINGERPRINT_BYTES}
FIRST_UNKNOWN_OPTIONAL = 0xC000  # aioice knows no comprehension-optional attribute from here on

_HEADER = struct.Struct("!HHI12s")
_ATTRIBUTE = struct.Struct("!HH")
_COOKIE = struct.pack("!I", MAGIC_COOKIE)


def answer_check(request: bytes, address: tuple[str, int], username: bytes, key: bytes,
                 controlling: bool) -> bytes | None:
    """The Binding success response aioice would send to ``request`` from ``address``, or None
    to leave it to aioice. ``username``: ``local:remote`` ufrags as the peer must send them;
    ``key``: our ICE password; ``controlling``: our ICE role."""
    if len(request) < HEADER_BYTES:
        return None
    kind, length, cookie, transaction = _HEADER.unpack_from(request)
    if kind != BINDING_REQUEST or cookie != MAGIC_COOKIE or length != len(request) - HEADER_BYTES:
        return None
    found = _attributes(request)
    if found is None or USERNAME not in found or MESSAGE_INTEGRITY not in found:
        return None
    if (ICE_CONTROLLING if controlling else ICE_CONTROLLED) in found:
        return None  # a role conflict
    start, end = found[USERNAME]
    if request[start:end] != username:
        return None
    integrity_at = found[MESSAGE_INTEGRITY][0] - 4
    if not hmac.compare_digest(request[integrity_at + 4:integrity_at + 4 + INTEGRITY_BYTES],
                               _integrity(request[:integrity_at], key)):
        return None
    if FINGERPRINT in found:
        fingerprint_at = found[FINGERPRINT][0] - 4
        if request[fingerprint_at + 4:fingerprint_at + 8] != _fingerprint(request[:fingerprint_at]):
            return None
    return binding_success(transaction, address, key)


def _attributes(request: bytes) -> dict[int, tuple[int, int]] | None:
    """Type -> (start, end) of each value aioice reads (none after MESSAGE-INTEGRITY but
    FINGERPRINT); None if one overruns the message, has a length aioice would choke on,
    repeats, or is one this module leaves to aioice."""
    found: dict[int, tuple[int, int]] = {}
    position, size = HEADER_BYTES, len(request)
    while position + 4 <= size:
        kind, length = _ATTRIBUTE.unpack_from(request, position)
        start = position + 4
        end = start + length
        if end > size:
            return None
        if MESSAGE_INTEGRITY not in found or kind == FINGERPRINT:
            if kind in _EXPECTED:
                expected = _EXPECTED[kind]
                if (expected is not None and length != expected) or kind in found:
                    return None
                found[kind] = (start, end)
            elif kind < FIRST_UNKNOWN_OPTIONAL:
                return None
        position = end + (-length % 4)
    return found if position == size else None


def binding_success(transaction: bytes, address: tuple[str, int], key: bytes) -> bytes:
    """XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY and FINGERPRINT, in aioice's order and bytes."""
    host, port = address[0], address[1]
    try:
        packed = socket.inet_pton(socket.AF_INET, host)
        family = 1
    except OSError:
        packed = socket.inet_pton(socket.AF_INET6, host)
        family = 2
    pad = _COOKIE + transaction
    xored = bytes(a ^ b for a, b in zip(packed, pad, strict=False))
    mapped = struct.pack("!HHBBH", XOR_MAPPED_ADDRESS, 4 + len(packed), 0, family, port ^ (MAGIC_COOKIE >> 16)) + xored
    body = mapped + _ATTRIBUTE.pack(MESSAGE_INTEGRITY, INTEGRITY_BYTES) + _integrity(
        _HEADER.pack(BINDING_SUCCESS, len(mapped), MAGIC_COOKIE, transaction) + mapped, key)
    fingerprint = _fingerprint(_HEADER.pack(BINDING_SUCCESS, len(body), MAGIC_COOKIE, transaction) + body)
    return (_HEADER.pack(BINDING_SUCCESS, len(body) + 4 + FINGERPRINT_BYTES, MAGIC_COOKIE, transaction) + body
            + _ATTRIBUTE.pack(FINGERPRINT, FINGERPRINT_BYTES) + fingerprint)


def _integrity(message: bytes, key: bytes) -> bytes:
    """HMAC-SHA1 of ``message`` with its length counting the MESSAGE-INTEGRITY that follows."""
    length = len(message) - HEADER_BYTES + 4 + INTEGRITY_BYTES
    return hmac.digest(key, message[:2] + length.to_bytes(2, "big") + message[4:], "sha1")


def _fingerprint(message: bytes) -> bytes:
    """CRC-32 of ``message`` with its length counting the FINGERPRINT that follows, XORed."""
    length = len(message) - HEADER_BYTES + 4 + FINGERPRINT_BYTES
    crc = binascii.crc32(message[:2] + length.to_bytes(2, "big") + message[4:])
    return struct.pack("!I", crc ^ FINGERPRINT_XOR)
