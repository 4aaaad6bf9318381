"""The lab's 1:1 NAT: addresses rewritten, every checksum still verifying, as computed from scratch."""

from __future__ import annotations

import random

import pytest

from tests.netlab.nat import Nat, adjust_checksum, internet_checksum, rewrite
from tests.netlab.packets import checksums_valid, icmp_echo, ipv4, tcp, udp

INSIDE, PUBLIC_INSIDE = "10.7.0.2", "10.7.1.2"
HOST, PUBLIC_HOST = "10.7.0.1", "10.7.1.1"
NAT = Nat(inside={INSIDE: PUBLIC_INSIDE}, outside={HOST: PUBLIC_HOST})


def test_up_maps_the_source_and_the_public_destination() -> None:
    # the namespace sends to the host's public address; the host sees the namespace's public one
    out = NAT.up(udp(INSIDE, 5000, PUBLIC_HOST, 3478, b"stun"))
    assert out == udp(PUBLIC_INSIDE, 5000, HOST, 3478, b"stun")


def test_down_is_the_reverse() -> None:
    out = NAT.down(udp(HOST, 3478, PUBLIC_INSIDE, 5000, b"answer"))
    assert out == udp(PUBLIC_HOST, 3478, INSIDE, 5000, b"answer")


def test_a_round_trip_restores_the_packet() -> None:
    packet = tcp(INSIDE, 40000, PUBLIC_HOST, 443, b"GET /")
    up = NAT.up(packet)
    assert up == tcp(PUBLIC_INSIDE, 40000, HOST, 443, b"GET /")
    reply = tcp(HOST, 443, PUBLIC_INSIDE, 40000, b"200 OK")
    assert NAT.down(reply) == tcp(PUBLIC_HOST, 443, INSIDE, 40000, b"200 OK")


def test_unmapped_addresses_pass_unchanged() -> None:
    packet = udp("10.7.0.5", 1, "10.7.0.6", 2)
    assert NAT.up(packet) is packet
    assert NAT.down(packet) is packet
    v6 = bytes([0x60]) + b"\0" * 39
    assert NAT.up(v6) is v6


def test_a_udp_datagram_without_checksum_keeps_none() -> None:
    out = NAT.up(udp(INSIDE, 5000, PUBLIC_HOST, 9, b"x", checksum=False))
    assert out[26:28] == b"\0\0"
    assert out == udp(PUBLIC_INSIDE, 5000, HOST, 9, b"x", checksum=False)


def test_icmp_only_needs_its_ip_header_fixed() -> None:
    assert NAT.up(icmp_echo(INSIDE, PUBLIC_HOST)) == icmp_echo(PUBLIC_INSIDE, HOST)


def test_a_later_fragment_has_no_transport_header_to_fix() -> None:
    tail = ipv4(17, INSIDE, PUBLIC_HOST, b"\x12\x34" * 20, fragment_offset=185)
    out = NAT.up(tail)
    assert out[20:] == tail[20:]
    assert internet_checksum(out[:20]) == 0


def test_checksums_verify_after_any_rewrite() -> None:
    rng = random.Random(4)
    for _ in range(500):
        addresses = [".".join(str(rng.randrange(256)) for _ in range(4)) for _ in range(4)]
        nat = Nat(inside={addresses[0]: addresses[1]}, outside={addresses[2]: addresses[3]})
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(40)))
        make = rng.choice([udp, tcp])
        packet = make(addresses[0], rng.randrange(65536), addresses[3], rng.randrange(65536), data)
        out = nat.up(packet)
        assert checksums_valid(out)
        assert out == make(addresses[1], int.from_bytes(packet[20:22], "big"), addresses[2],
                           int.from_bytes(packet[22:24], "big"), data)


def test_incremental_update_matches_a_full_recomputation() -> None:
    rng = random.Random(11)
    for _ in range(1000):
        data = bytearray(rng.randbytes(20))
        old = bytes(data[4:12])
        before = internet_checksum(bytes(data))
        new = rng.randbytes(8)
        data[4:12] = new
        assert adjust_checksum(before, old, new) == internet_checksum(bytes(data))


def test_rewrite_with_empty_maps_is_the_identity() -> None:
    packet = tcp(INSIDE, 1, HOST, 2)
    assert rewrite(packet, {}, {}) is packet


def test_a_map_must_be_one_to_one() -> None:
    with pytest.raises(ValueError):
        Nat(inside={"10.0.0.1": "10.1.0.1", "10.0.0.2": "10.1.0.1"})
