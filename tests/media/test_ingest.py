"""The ingest fast path: a publisher's packets from the socket to the forwarder, with the RTCP
the publisher relies on (receiver reports, NACK, REMB) still coming from the hub."""

from __future__ import annotations

import socket
import struct
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiortc import RTCPeerConnection
from aiortc.rtp import RTCP_PSFB_APP, AnyRtcpPacket, RtcpPsfbPacket, RtpPacket
from aiortc.stats import RTCRemoteInboundRtpStreamStats

from hub.errors import ProtocolViolation
from hub.media import MediaRelay
from hub.media.ingest import PublisherIngest, _Route
from tests.kit import wait_until
from tests.media.peers import Publisher, Viewer, make_offer, prefer

STATION = "35.09.01"

# --- PublisherIngest alone, with a recording stand-in for the receiver's bookkeeping -------


class RecordingBook:
    def __init__(self) -> None:
        self.running = True
        self.counted: list[tuple[int, int]] = []
        self.media: list[tuple[int, int]] = []

    def accepting(self) -> bool:
        return self.running

    def count(self, ssrc: int, seq: int, ts: int, size: int, abs_send_time: int | None) -> None:
        self.counted.append((ssrc, seq))

    def note_media(self, ssrc: int, seq: int) -> None:
        self.media.append((ssrc, seq))


def _ingest() -> tuple[PublisherIngest, RecordingBook, list[tuple[str, int, int, int, bytes]]]:
    book, forwarded = RecordingBook(), []
    media_ssrc = [0]
    routes = {pt: _Route("video", book, rtx, media_ssrc)  # type: ignore[arg-type]  # book: a recording stand-in
              for pt, rtx in ((96, False), (97, True))}
    ingest = PublisherIngest(routes, None, lambda *packet: forwarded.append(packet))
    return ingest, book, forwarded


def _rtp(pt: int, seq: int, ssrc: int, payload: bytes, marker: int = 0) -> bytes:
    return RtpPacket(payload_type=pt, marker=marker, sequence_number=seq, timestamp=9000, ssrc=ssrc,
                     payload=payload).serialize()


def test_media_and_rtx_reach_the_forwarder_unwrapped_and_are_counted_under_their_own_ssrc() -> None:
    ingest, book, forwarded = _ingest()
    ingest.on_packet(_rtp(96, 100, 1111, b"frame", marker=1))
    ingest.on_packet(_rtp(97, 7, 2222, b"\x00\x63" + b"again"))  # RTX of seq 99 (RFC 4588 §4)
    ingest.on_packet(_rtp(97, 8, 2222, b"\x00"))  # RTX padding: probing, not forwarded
    assert forwarded == [("video", 100, 9000, 1, b"frame"), ("video", 99, 9000, 0, b"again")]
    assert book.counted == [(1111, 100), (2222, 7), (2222, 8)]
    assert book.media == [(1111, 100), (1111, 99)]  # NACK tracking in the media stream's numbers


def test_unknown_payload_types_malformed_packets_and_a_stopped_receiver_forward_nothing() -> None:
    ingest, book, forwarded = _ingest()
    ingest.on_packet(_rtp(111, 1, 1111, b"opus?"))
    ingest.on_packet(b"\x80\x60\x00")
    ingest.on_packet(b"\x00" * 40)
    book.running = False
    ingest.on_packet(_rtp(96, 2, 1111, b"late"))
    assert forwarded == [] and book.counted == []
    assert ingest.malformed == 2


# --- with real aiortc peers ----------------------------------------------------------------


def _publisher_peer(relay: MediaRelay, publisher: Publisher) -> RTCPeerConnection:
    return relay._sessions[publisher.session_id].pc


async def test_packets_skip_aiortcs_parser_and_jitter_buffer(relay: MediaRelay,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from aiortc.rtcdtlstransport import RTCDtlsTransport

    through_aiortc: list[RTCDtlsTransport] = []
    original = RTCDtlsTransport._handle_rtp_data

    async def spy(self: RTCDtlsTransport, data: bytes, arrival_time_ms: int) -> None:
        through_aiortc.append(self)
        await original(self, data, arrival_time_ms)

    monkeypatch.setattr(RTCDtlsTransport, "_handle_rtp_data", spy)
    publisher = await Publisher.start(relay, STATION)
    viewer = await Viewer.start(relay, STATION)
    await viewer.wait_for(pictures=10, audio=10)

    hub_side = {t.receiver.transport for t in _publisher_peer(relay, publisher).getTransceivers()}
    assert not hub_side & set(through_aiortc)
    assert {kind for _, kind in viewer.pictures} == {"A"}
    await viewer.close()
    await publisher.close()


async def test_publisher_gets_receiver_reports_and_a_bandwidth_estimate(
        relay: MediaRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = await Publisher.start(relay, STATION, audio=False)
    sender = publisher.pc.getTransceivers()[0].sender
    rembs: list[RtcpPsfbPacket] = []
    handle = sender._handle_rtcp_packet

    async def spy(packet: AnyRtcpPacket) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            rembs.append(packet)
        await handle(packet)

    monkeypatch.setattr(sender, "_handle_rtcp_packet", spy)
    through_aiortc: list[AnyRtcpPacket] = []  # the hub's RTCP goes out on its own wire instead
    for transceiver in _publisher_peer(relay, publisher).getTransceivers():
        monkeypatch.setattr(transceiver.receiver, "_send_rtcp", through_aiortc.append)

    async def receiver_report() -> RTCRemoteInboundRtpStreamStats | None:
        stats = await sender.getStats()
        report = next((s for s in stats.values() if isinstance(s, RTCRemoteInboundRtpStreamStats)), None)
        return report if rembs else None

    report = await wait_until(receiver_report, message="a receiver report and a REMB from the relay", every=0.1)
    assert report.packetsLost == 0
    assert rembs[0].fci[:4] == b"REMB"
    assert through_aiortc == []
    await publisher.close()


def drop_one_media_packet(sender: Any, monkeypatch: pytest.MonkeyPatch, at: int = 40) -> list[int]:
    """The publisher's ``at``-th media packet never leaves (RTCP and RTX do): the returned list
    gets its sequence number. No other loss after it."""
    dtls = sender.transport
    send_rtp = dtls._send_rtp
    media_sent = 0
    dropped: list[int] = []

    async def lossy(data: bytes) -> None:
        nonlocal media_sent
        if 192 <= data[1] <= 208 or struct.unpack_from("!I", data, 8)[0] != sender._ssrc:
            await send_rtp(data)  # RTCP, and RTX under its own SSRC
            return
        media_sent += 1
        if media_sent == at:
            dropped.append(struct.unpack_from("!H", data, 2)[0])
            return
        await send_rtp(data)

    monkeypatch.setattr(dtls, "_send_rtp", lossy)
    return dropped


def record_retransmissions(sender: Any, monkeypatch: pytest.MonkeyPatch,
                           sends: Callable[[list[int], int], bool]) -> list[int]:
    """Every NACKed sequence number the publisher is asked to resend, in order; it resends
    only when ``sends(asked so far, seq)`` says so."""
    asked: list[int] = []
    retransmit = sender._retransmit

    async def spy(seq: int) -> None:
        asked.append(seq)
        if sends(asked, seq):
            await retransmit(seq)

    monkeypatch.setattr(sender, "_retransmit", spy)
    return asked


async def test_a_lost_publisher_packet_is_nacked(relay: MediaRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    publisher = await Publisher.start(relay, STATION, audio=False)
    sender = publisher.pc.getTransceivers()[0].sender
    dropped = drop_one_media_packet(sender, monkeypatch)
    asked = record_retransmissions(sender, monkeypatch, lambda asked, seq: True)
    await wait_until(lambda: dropped and dropped[0] in asked, message="the dropped packet to be retransmitted")
    await publisher.close()


async def test_a_lost_retransmission_is_nacked_again_without_a_new_gap(
        relay: MediaRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    # aiortc NACKs again only when a new gap appears; on a lossy uplink the retransmission is
    # lost too now and then, and the hole would stay open until the next loss.
    publisher = await Publisher.start(relay, STATION, audio=False)
    sender = publisher.pc.getTransceivers()[0].sender
    dropped = drop_one_media_packet(sender, monkeypatch)
    asked = record_retransmissions(sender, monkeypatch, lambda asked, seq: asked.count(seq) > 1)  # the first is lost
    await wait_until(lambda: dropped and asked.count(dropped[0]) >= 2, message="the hole to be NACKed again")
    await publisher.close()


async def test_a_packet_that_never_comes_is_asked_for_at_most_max_nacks_times(
        relay: MediaRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    # An overloaded hub's own socket drops packets; asking for each again and again fed the
    # overload (the Jember-day benchmark): a hole is NACKed MAX_NACKS times, then given up.
    from hub.media.seams_ingest import MAX_NACKS, RENACK_S

    publisher = await Publisher.start(relay, STATION, audio=False)
    sender = publisher.pc.getTransceivers()[0].sender
    dropped = drop_one_media_packet(sender, monkeypatch)
    asked = record_retransmissions(sender, monkeypatch, lambda asked, seq: False)  # never resent
    await wait_until(lambda: dropped and asked.count(dropped[0]) >= MAX_NACKS, message="the hole asked for")
    started = time.monotonic()
    # long after: ten more re-NACK periods of media, the hole still tracked by aiortc
    await wait_until(lambda: time.monotonic() - started > 10 * RENACK_S, message="ten re-NACK periods", every=0.05)
    assert asked.count(dropped[0]) == MAX_NACKS
    await publisher.close()


async def test_hostile_datagrams_on_the_publishers_socket_change_nothing(relay: MediaRelay) -> None:
    publisher = await Publisher.start(relay, STATION, audio=False)
    viewer = await Viewer.start(relay, STATION, audio=False)
    await viewer.wait_for(pictures=5)
    gatherer = _publisher_peer(relay, publisher).getTransceivers()[0].receiver.transport.transport.iceGatherer
    candidate = gatherer.getLocalCandidates()[0]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for datagram in (b"", b"\x80", b"\x80\x60" + b"\x00" * 40, _rtp(96, 5, 1, b"forged" * 30),
                         b"\xff" * 1500, b"\x17\xfe\xfd" + b"\x00" * 20):
            sock.sendto(datagram, (candidate.ip, candidate.port))
    before = len(viewer.pictures)
    await viewer.wait_for(pictures=before + 15)
    assert {kind for _, kind in viewer.pictures} == {"A"}
    assert _publisher_peer(relay, publisher).connectionState == "connected"
    await viewer.close()
    await publisher.close()


async def test_an_offer_giving_audio_and_video_one_payload_type_is_refused(relay: MediaRelay) -> None:
    from hub.media.seams_peers import new_peer_connection
    from tests.media.peers import PatternTrack, ToneTrack

    pc = new_peer_connection(())
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    prefer(pc, "video", "VP8")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    offer = await make_offer(pc)
    await pc.close()
    video_pt = next(line.split()[0].split(":")[1] for line in offer.splitlines() if "VP8/90000" in line)
    opus_pt = next(line.split()[0].split(":")[1] for line in offer.splitlines() if "opus/48000" in line)
    clashing = offer.replace(f"a=rtpmap:{opus_pt} ", f"a=rtpmap:{video_pt} ").replace(
        f"UDP/TLS/RTP/SAVPF {opus_pt}", f"UDP/TLS/RTP/SAVPF {video_pt}")

    with pytest.raises(ProtocolViolation):
        await relay.publish(STATION, clashing, owner="station:test", client_addr="127.0.0.1")
    assert relay.metrics()["sessions"] == 0


async def test_while_the_hubs_own_socket_overflows_gaps_are_given_up_not_nacked(
        relay: MediaRelay, monkeypatch: pytest.MonkeyPatch) -> None:
    # A loss the hub causes itself (its socket's buffer full: relay.check_overflow saw the
    # kernel's drop counter rise): NACKing it would have every publisher resend into the same
    # full buffer. The hole is given up and counted; once the socket keeps up, NACKs resume.
    from hub.media.seams_ingest import RENACK_S

    relay.own_loss.active = True
    publisher = await Publisher.start(relay, STATION, audio=False)
    sender = publisher.pc.getTransceivers()[0].sender
    dropped = drop_one_media_packet(sender, monkeypatch)
    asked = record_retransmissions(sender, monkeypatch, lambda asked, seq: True)
    await wait_until(lambda: relay.own_loss.withheld >= 1, message="the hole given up")
    assert relay.metrics()["nacks_withheld"] == relay.own_loss.withheld
    started = time.monotonic()
    await wait_until(lambda: time.monotonic() - started > 5 * RENACK_S, message="five re-NACK periods", every=0.05)
    assert dropped[0] not in asked
    relay.own_loss.active = False
    again = drop_one_media_packet(sender, monkeypatch, at=40)
    await wait_until(lambda: again and again[0] in asked, message="a later hole NACKed again")
    await publisher.close()
