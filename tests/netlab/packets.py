"""IPv4 packets built from scratch for the unit tests, checksums computed in full (RFC 791/768/793)."""

from __future__ import annotations

import ipaddress
import struct

from tests.netlab.nat import internet_checksum

ICMP, TCP, UDP = 1, 6, 17


def ipv4(proto: int, src: str, dst: str, payload: bytes, fragment_offset: int = 0) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, fragment_offset, 64, proto, 0,
                         ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)
    header = header[:10] + struct.pack("!H", internet_checksum(header)) + header[12:]
    return header + payload


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return ipaddress.IPv4Address(src).packed + ipaddress.IPv4Address(dst).packed + struct.pack("!BBH", 0, proto, length)


def udp(src: str, sport: int, dst: str, dport: int, data: bytes = b"hello", checksum: bool = True) -> bytes:
    segment = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    if checksum:
        value = internet_checksum(_pseudo(src, dst, UDP, len(segment)) + segment) or 0xFFFF
        segment = segment[:6] + struct.pack("!H", value) + segment[8:]
    return ipv4(UDP, src, dst, segment)


def tcp(src: str, sport: int, dst: str, dport: int, data: bytes = b"") -> bytes:
    segment = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 65535, 0, 0) + data
    value = internet_checksum(_pseudo(src, dst, TCP, len(segment)) + segment)
    segment = segment[:16] + struct.pack("!H", value) + segment[18:]
    return ipv4(TCP, src, dst, segment)


def icmp_echo(src: str, dst: str) -> bytes:
    message = struct.pack("!BBHHH", 8, 0, 0, 1, 1) + b"ping"
    message = message[:2] + struct.pack("!H", internet_checksum(message)) + message[4:]
    return ipv4(ICMP, src, dst, message)


def checksums_valid(packet: bytes) -> bool:
    """Whether the IPv4 header checksum and the TCP/UDP checksum (if any) verify."""
    if internet_checksum(packet[:20]) != 0:
        return False
    proto, src, dst = packet[9], str(ipaddress.IPv4Address(packet[12:16])), str(ipaddress.IPv4Address(packet[16:20]))
    segment = packet[20:]
    if proto == UDP and segment[6:8] == b"\0\0":
        return True
    if proto in (TCP, UDP):
        return internet_checksum(_pseudo(src, dst, proto, len(segment)) + segment) == 0
    return True
