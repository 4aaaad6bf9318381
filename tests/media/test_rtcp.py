"""hub.media.rtcp: a viewer's feedback read as aiortc reads it, our SRs and REMBs written as aiortc writes them."""

from __future__ import annotations

import random

import pytest
from aiortc import clock as aiortc_clock
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RTCP_RTPFB_NACK,
    AnyRtcpPacket,
    RtcpByePacket,
    RtcpPacket,
    RtcpPsfbPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpRtpfbPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
    pack_remb_fci,
)
from hypothesis import given
from hypothesis import strategies as st

from hub.media.rtcp import ReceiverReport, middle_bits, ntp_now, read_feedback, remb, sender_report
from tests.kit import corruptions


def block(ssrc: int, lost: int = 0, highest: int = 70_000) -> RtcpReceiverInfo:
    return RtcpReceiverInfo(ssrc=ssrc, fraction_lost=64, packets_lost=lost, highest_sequence=highest, jitter=90,
                            lsr=0x1234_5678, dlsr=65536)


def nack(media_ssrc: int, lost: list[int]) -> RtcpRtpfbPacket:
    packet = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=media_ssrc)
    packet.lost = lost
    return packet


def compound(*packets: AnyRtcpPacket) -> bytes:
    return b"".join(bytes(packet) for packet in packets)


# what aiortc's receivers and browsers send every 0.5-1.5 s, and as they lose packets
VIEWER_REPORT = compound(
    RtcpRrPacket(ssrc=9, reports=[block(1111, lost=-3), block(2222, lost=5)]),
    RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=9, items=[(1, b"{viewer-cname}")])]),
    RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=9, media_ssrc=0, fci=pack_remb_fci(300_000, [1111])),
)
LOSSES = compound(
    nack(1111, [100, 101, 117, 300]),
    RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1111),
    RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=9, media_ssrc=2222, fci=b"\x00" * 8),
)


def reference(data: bytes) -> list[tuple[str, int, object]] | None:
    """What the relay takes from aiortc's parse of ``data``; None if aiortc refuses it."""
    try:
        packets = RtcpPacket.parse(data)
    except ValueError:
        return None
    read: list[tuple[str, int, object]] = []
    for packet in packets:
        if isinstance(packet, RtcpRrPacket):
            read += [("report", b.ssrc, ReceiverReport(b.fraction_lost, b.packets_lost, b.highest_sequence, b.jitter,
                                                       b.lsr, b.dlsr)) for b in packet.reports]
        elif isinstance(packet, RtcpRtpfbPacket):
            read.append(("nack", packet.media_ssrc, [seq & 0xFFFF for seq in packet.lost]))
        elif isinstance(packet, RtcpPsfbPacket) and packet.fmt != RTCP_PSFB_APP:
            read.append(("keyframe", packet.media_ssrc, None))
    return read


def ours(data: bytes) -> list[tuple[str, int, object]] | None:
    feedback = read_feedback(data)
    if feedback is None:
        return None
    return ([("report", ssrc, report) for ssrc, report in feedback.reports]
            + [("nack", media, lost) for _, media, lost in feedback.nacks]
            + [("keyframe", media, None) for media in feedback.keyframe_requests])


def test_a_viewers_regular_report_reads_as_aiortc_reads_it() -> None:
    feedback = read_feedback(VIEWER_REPORT)
    assert feedback is not None
    assert feedback.reports == [
        (1111, ReceiverReport(fraction_lost=64, packets_lost=-3, highest_sequence=70_000, jitter=90,
                              lsr=0x1234_5678, dlsr=65536)),
        (2222, ReceiverReport(64, 5, 70_000, 90, 0x1234_5678, 65536)),
    ]
    assert feedback.nacks == [] and feedback.keyframe_requests == []  # SDES and REMB ask nothing of a relay
    assert ours(VIEWER_REPORT) == reference(VIEWER_REPORT)


def test_nacks_and_keyframe_requests_read_as_aiortc_reads_them_with_sequence_numbers_wrapped() -> None:
    feedback = read_feedback(LOSSES)
    assert feedback is not None
    assert feedback.nacks == [(9, 1111, [100, 101, 117, 300])]
    assert feedback.keyframe_requests == [1111, 2222]
    assert ours(LOSSES) == reference(LOSSES)
    # aiortc's own list says 65,536 and 65,537 for the bits after 65,535: a sequence number wraps
    wrapped = bytes([0x81, 205, 0, 3]) + (9).to_bytes(4, "big") + (1111).to_bytes(4, "big") + bytes([0xFF, 0xFF, 0, 3])
    assert reference(wrapped) == [("nack", 1111, [65_535, 0, 1])] == ours(wrapped)  # PID 65,535 and the next two


@pytest.mark.parametrize("other", [
    RtcpSrPacket(ssrc=9, sender_info=RtcpSenderInfo(ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)),
    RtcpByePacket(sources=[9]),
    RtcpRtpfbPacket(fmt=15, ssrc=9, media_ssrc=1111),  # transport-wide feedback
    RtcpPsfbPacket(fmt=2, ssrc=9, media_ssrc=1111),  # SLI
], ids=["sr", "bye", "transport-cc", "sli"])
def test_a_compound_with_anything_but_receiver_feedback_is_left_to_aiortc(other: AnyRtcpPacket) -> None:
    assert read_feedback(VIEWER_REPORT + bytes(other)) is None
    assert read_feedback(bytes(other) + LOSSES) is None
    assert read_feedback(VIEWER_REPORT + b"\x80\xcc\x00\x01" + b"\x00" * 4) is None  # APP (204)


def test_an_empty_compound_asks_nothing() -> None:
    feedback = read_feedback(b"")
    assert feedback is not None and (feedback.reports, feedback.nacks, feedback.keyframe_requests) == ([], [], [])


def test_padding_is_read_as_aiortc_reads_it() -> None:
    rr = bytes(RtcpRrPacket(ssrc=9, reports=[block(1111)]))
    padded = bytes([rr[0] | 0x20, rr[1]]) + (int.from_bytes(rr[2:4], "big") + 1).to_bytes(2, "big") + rr[4:]
    for tail in (b"\x00\x00\x00\x04", b"\x00\x00\x00\x00", b"\x00\x00\x00\xff"):  # right, zero, too long
        assert ours(padded + tail) == reference(padded + tail)
    assert ours(padded + b"\x00\x00\x00\x04") == [("report", 1111, ReceiverReport(64, 0, 70_000, 90, 0x1234_5678,
                                                                                   65536))]


def test_every_corruption_of_a_compound_is_refused_where_aiortc_refuses_it_and_read_alike_elsewhere() -> None:
    # Bad input from a viewer: read exactly as aiortc would read it, or handed to aiortc
    # (None), never read differently and never an exception.
    sources = [VIEWER_REPORT, LOSSES, VIEWER_REPORT + LOSSES]
    tricky = [0, 1, 0x7F, 0x80, 0xA0, 0xFF]  # zero lengths, version and padding bits

    def new_byte(rng: random.Random) -> int:
        return rng.choice([*tricky, rng.randrange(256)])

    cases = sum(check_alike(data) for data in corruptions(sources, seed=20, per_source=1500, most_changed=3,
                                                          new_byte=new_byte))
    assert cases > 1000  # most corruptions still read: the comparison really ran


def check_alike(data: bytes) -> int:
    read = ours(data)
    if read is None:
        return 0
    assert read == reference(data), data.hex()
    return 1


def test_our_sender_report_is_the_one_aiortc_writes() -> None:
    for values in [(0x1111, 0xE5A0_0000_8000_0000, 90_000, 1, 1200),
                   (0xFFFF_FFFF, 0, 0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF)]:
        ssrc, ntp, timestamp, packets, octets = values
        info = RtcpSenderInfo(ntp_timestamp=ntp, rtp_timestamp=timestamp, packet_count=packets, octet_count=octets)
        assert sender_report(*values) == bytes(RtcpSrPacket(ssrc=ssrc, sender_info=info))
    # counts past 2^32 wrap (RFC 3550 §6.4.1) where aiortc's struct.pack would raise
    assert sender_report(1, 2, 1 << 32, (1 << 32) + 5, 1 << 33)[-12:] == bytes(4) + (5).to_bytes(4, "big") + bytes(4)


@given(st.integers(0, (1 << 62) - 1) | st.integers(0, 1 << 20), st.integers(0, 0xFFFF_FFFF),
       st.lists(st.integers(0, 0xFFFF_FFFF), max_size=4))
def test_our_remb_is_the_one_aiortc_writes(bitrate: int, ssrc: int, ssrcs: list[int]) -> None:
    ours = remb(ssrc, bitrate, ssrcs)
    assert ours == bytes(RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=ssrc, media_ssrc=0, fci=pack_remb_fci(bitrate, ssrcs)))
    assert read_feedback(ours) is not None  # and our reader takes it back


def test_ntp_time_is_aiortcs_clock_and_the_lsr_its_middle_bits() -> None:
    assert ntp_now(lambda: 0.5) == (2_208_988_800 << 32) | (1 << 31)
    assert abs((ntp_now() >> 32) - (aiortc_clock.current_ntp_time() >> 32)) <= 1
    assert middle_bits(0x1122_3344_5566_7788) == 0x3344_5566
