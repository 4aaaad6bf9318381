"""One viewer's egress: nothing before a keyframe, rewritten headers on shared bytes,
continuity across eras, a slow viewer dropped to the next keyframe, NACKs answered as RTX."""

from __future__ import annotations

import asyncio
import random
import struct

import pytest

from hub.media.packet_cache import PacketCache
from hub.media.seams_peers import MediaStreamError
from hub.media.viewer_egress import (
    CONGESTED,
    SENT,
    EgressParameters,
    IdleTrack,
    StreamClock,
    ViewerEgress,
    mid_extension_block,
)

VIDEO = EgressParameters(kind="video", payload_type=96, clock_rate=90000, ssrc=0xAABBCCDD,
                         rtx_payload_type=97, rtx_ssrc=0x01020304)
AUDIO = EgressParameters(kind="audio", payload_type=111, clock_rate=48000, ssrc=0x11111111)


class FakeWire:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.backed_up = False

    def send_parts(self, header: bytes, rest: bytes) -> int:
        if self.backed_up:
            return CONGESTED
        self.sent.append(header + rest)
        return SENT

    def send(self, packet: bytes) -> bool:
        self.sent.append(packet)
        return True

    def headers(self) -> list[tuple[int, int, int, int, int]]:
        """(marker, payload type, seq, ts, ssrc) of each packet sent."""
        out = []
        for packet in self.sent:
            first, m_pt, seq, ts, ssrc = struct.unpack("!BBHII", packet[:12])
            assert first & 0xC0 == 0x80
            out.append((m_pt >> 7, m_pt & 0x7F, seq, ts, ssrc))
        return out


class Recorder:
    def __init__(self) -> None:
        self.keyframe_requests = 0
        self.dropped = 0
        self.retransmitted = 0

    def egress(self, parameters: EgressParameters = VIDEO, cache: PacketCache | None = None) -> ViewerEgress:
        def keyframe_needed() -> None:
            self.keyframe_requests += 1

        def dropped(packets: int) -> None:
            self.dropped += packets

        def retransmitted(packets: int) -> None:
            self.retransmitted += packets

        return ViewerEgress(parameters, StreamClock(), cache, keyframe_needed, dropped, retransmitted,
                            rng=random.Random(7))


def payloads(wire: FakeWire, header: int = 12) -> list[bytes]:
    return [p[header:] for p in wire.sent]


def test_video_waits_for_connection_then_for_a_keyframe_start() -> None:
    calls, wire = Recorder(), FakeWire()
    egress = calls.egress()
    assert egress.send(100, 9000, 1, b"K0", True) == 0  # not connected yet
    egress.attach(wire)
    assert calls.keyframe_requests == 1 and egress.waiting_for_keyframe
    egress.send(101, 12000, 1, b"d1", False)
    egress.send(102, 15000, 0, b"K2a", True)
    egress.send(103, 15000, 1, b"K2b", False)
    egress.send(104, 18000, 1, b"d3", False)
    assert payloads(wire) == [b"K2a", b"K2b", b"d3"]
    headers = wire.headers()
    seqs = [h[2] for h in headers]
    assert seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2] and seqs[0] < 32768
    assert [h[3] - headers[0][3] for h in headers] == [0, 0, 3000]  # publisher's spacing kept
    assert {h[1] for h in headers} == {96} and {h[4] for h in headers} == {VIDEO.ssrc}
    assert [h[0] for h in headers] == [0, 1, 1]


def test_the_same_bytes_go_to_every_viewer_only_the_header_differs() -> None:
    calls = Recorder()
    wires = [FakeWire(), FakeWire()]
    egresses = [calls.egress(), calls.egress(EgressParameters(**{**VIDEO.__dict__, "ssrc": 5, "payload_type": 100}))]
    for egress, wire in zip(egresses, wires, strict=True):
        egress.attach(wire)
    rest = b"payload bytes"
    for egress in egresses:
        egress.send(7, 1000, 1, rest, True)
    assert wires[0].sent[0][12:] == wires[1].sent[0][12:] == rest
    assert wires[0].headers()[0][1] == 96 and wires[1].headers()[0][1] == 100 and wires[1].headers()[0][4] == 5


def test_publisher_loss_and_reordering_pass_through_and_older_than_the_era_is_never_sent() -> None:
    calls, wire = Recorder(), FakeWire()
    egress = calls.egress()
    egress.attach(wire)
    egress.send(500, 0, 1, b"K", True)
    egress.send(499, 0, 1, b"old", False)  # from before the viewer's start: would reuse a seq
    egress.send(502, 3000, 1, b"d2", False)  # 501 lost
    egress.send(501, 3000, 0, b"d1", False)  # ... or late
    seqs = [h[2] for h in wire.headers()]
    assert payloads(wire) == [b"K", b"d2", b"d1"] and seqs == [seqs[0], seqs[0] + 2, seqs[0] + 1]


def test_resync_continues_the_viewers_numbers_across_a_new_publisher() -> None:
    calls, wire = Recorder(), FakeWire()
    egress = calls.egress()
    egress.attach(wire)
    egress.send(65535, 4_294_960_000, 1, b"K", True)  # wraps on the next packet
    egress.send(0, 4_294_963_000, 1, b"d", False)
    egress.resync()  # a new publisher, numbering from somewhere else entirely
    assert calls.keyframe_requests == 2
    egress.send(30000, 123, 1, b"new d", False)
    egress.send(30001, 3123, 1, b"new K", True)
    headers = wire.headers()
    assert payloads(wire) == [b"K", b"d", b"new K"]
    assert headers[2][2] == (headers[1][2] + 1) & 0xFFFF
    assert 0 < (headers[2][3] - headers[1][3]) & 0xFFFFFFFF < 90000  # forwards, about a frame


def test_a_slow_viewer_drops_to_the_next_keyframe_without_touching_the_others() -> None:
    calls = Recorder()
    slow_wire, fast_wire = FakeWire(), FakeWire()
    slow, fast = calls.egress(), calls.egress()
    slow.attach(slow_wire)
    fast.attach(fast_wire)
    for egress in (slow, fast):
        egress.send(1, 0, 1, b"K0", True)
    slow_wire.backed_up = True
    for seq, key in [(2, False), (3, False)]:
        for egress in (slow, fast):
            egress.send(seq, seq * 3000, 1, b"d", key)
    slow_wire.backed_up = False
    for egress in (slow, fast):
        egress.send(4, 12000, 1, b"d4", False)
        egress.send(5, 15000, 1, b"K5", True)
    assert payloads(slow_wire) == [b"K0", b"K5"]
    assert payloads(fast_wire) == [b"K0", b"d", b"d", b"d4", b"K5"]
    assert calls.dropped == 3 and calls.keyframe_requests == 3  # 2 attaches + 1 overflow
    seqs = [h[2] for h in slow_wire.headers()]
    assert seqs[1] == seqs[0] + 1  # the viewer sees no gap to NACK for


def test_audio_starts_anywhere_and_a_backed_up_socket_only_loses_that_packet() -> None:
    calls, wire = Recorder(), FakeWire()
    egress = calls.egress(AUDIO)
    egress.attach(wire)
    assert calls.keyframe_requests == 0
    egress.send(10, 960, 0, b"a0", False)
    wire.backed_up = True
    egress.send(11, 1920, 0, b"a1", False)
    wire.backed_up = False
    egress.send(12, 2880, 0, b"a2", False)
    seqs = [h[2] for h in wire.headers()]
    assert payloads(wire) == [b"a0", b"a2"] and seqs[1] == seqs[0] + 2 and calls.dropped == 1


def test_nack_is_answered_as_rtx_from_the_cache() -> None:
    calls, wire, cache = Recorder(), FakeWire(), PacketCache(16)
    egress = calls.egress(cache=cache)
    egress.attach(wire)
    for seq in (40, 41, 42):
        cache.put(seq, seq * 10, 1, b"p%d" % seq)
        egress.send(seq, seq * 10, 1, b"p%d" % seq, seq == 40)
    viewer_seq_41 = wire.headers()[1][2]
    assert egress.retransmit([viewer_seq_41, (viewer_seq_41 + 5) & 0xFFFF]) == 1  # unknown one ignored
    marker, pt, _, ts, ssrc = wire.headers()[-1]
    rtx = wire.sent[-1]
    assert (pt, ssrc, ts) == (97, VIDEO.rtx_ssrc, wire.headers()[1][3])
    assert rtx[12:14] == struct.pack("!H", viewer_seq_41) and rtx[14:] == b"p41"  # RFC 4588 OSN
    assert calls.retransmitted == 1
    assert not cache.put(41, 410, 1, b"again")  # the station drops a duplicate


def test_sender_report_extrapolates_the_viewers_clock() -> None:
    clock = StreamClock()
    egress = ViewerEgress(AUDIO, clock, None, lambda: None, lambda n: None, rng=random.Random(1))
    wire = FakeWire()
    egress.attach(wire)
    assert egress.sender_report(0.0) is None  # nothing sent: no SR
    clock.ts, clock.at = 48000, 10.0
    egress.send(1, 48000, 0, b"abc", True)
    report = egress.sender_report(10.5)
    assert report is not None
    rtp, packets, octets = report
    assert packets == 1 and octets == 3
    assert (rtp - wire.headers()[0][3]) & 0xFFFFFFFF == 24000


def test_mid_extension_block() -> None:
    assert mid_extension_block(4, "1") == b"\xbe\xde\x00\x01\x40" + b"1\x00\x00"
    with pytest.raises(ValueError):
        mid_extension_block(15, "0")


async def test_stopping_the_idle_track_ends_the_senders_loop() -> None:
    track = IdleTrack("video")
    waiting = asyncio.ensure_future(track.recv())
    await asyncio.sleep(0)  # let recv() start waiting
    track.stop()
    with pytest.raises(MediaStreamError):
        await waiting
