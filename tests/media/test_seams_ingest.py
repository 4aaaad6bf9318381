"""Pins the aiortc / aioice internals ``hub.media.seams_ingest`` relies on (seams 10 and 11).

If one of these fails after an upgrade, re-read the named function and adapt the seam (and
docs/media.md) first: otherwise publishers' packets may silently stop reaching viewers, or
the publisher may stop getting receiver reports, NACKs or REMB and degrade its stream.
"""

from __future__ import annotations

import asyncio.selector_events
import inspect
import re
import time
from collections.abc import Callable
from typing import Any
from unittest import mock

import aioice.ice
import aiortc.clock
import aiortc.rate
import aiortc.rtcdtlstransport
import aiortc.rtp
import pytest
from aiortc import RTCRtpReceiver, rtcrtpreceiver
from aiortc.rtcrtpreceiver import NackGenerator, StreamStatistics
from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.media import bitrate
from hub.media import seams_ingest as seams
from hub.media.seams_egress import NACK_HANDLER, REPORT_HANDLER
from hub.media.seams_peers import new_peer_connection
from tests.kit import timeout, wait_until
from tests.locked import check_locked


def source(obj: Callable[..., object]) -> str:
    return inspect.getsource(obj)


def test_installed_aiortc_aioice_and_pylibsrtp_are_the_locked_ones() -> None:
    check_locked("aiortc", "aioice", "pylibsrtp")


def test_srtp_arrives_through_connection_data_received_and_the_dtls_rx_session() -> None:
    # Seam 10: asyncio calls the protocol's datagram_received (an instance lookup), which
    # hands every non-STUN datagram to Connection.data_received (also looked up on the
    # instance, so shadowing works); the DTLS reader unprotects SRTP with self._rx_srtp.
    transport = vars(asyncio.selector_events)["_SelectorDatagramTransport"]  # what a UDP endpoint gets
    read_ready = source(transport._read_ready)
    assert "self._protocol.datagram_received(data, addr)" in read_ready
    received = source(aioice.ice.StunProtocol.datagram_received)
    assert "self.receiver.data_received(data, self.local_candidate.component)" in received
    assert "self._queue.put_nowait((data, component))" in source(aioice.ice.Connection.data_received)
    assert "self._protocols += host_protocols" in source(aioice.ice.Connection)  # gathered sockets
    recv_next = source(aiortc.rtcdtlstransport.RTCDtlsTransport._recv_next)
    assert "data = self._rx_srtp.unprotect(data)" in recv_next
    assert "first_byte > 127 and first_byte < 192 and self._rx_srtp" in recv_next
    assert "first_byte = data[0]" in recv_next  # an empty datagram would raise here: dropped before


def test_receiver_bookkeeping_matches_handle_rtp_packet() -> None:
    # Seam 11: the per-packet duties we take over, with the private names we reach.
    handle = source(RTCRtpReceiver._handle_rtp_packet)
    # send_through_aiortc hands it packets already written, too
    assert "await self.transport._send_rtp(bytes(packet))" in source(RTCRtpReceiver._send_rtcp)
    for duty in (
        "self.__remote_bitrate_estimator.add(",
        "fci=pack_remb_fci(*remb)",
        "ssrc=self.__rtcp_ssrc",
        "self.__active_ssrc[packet.ssrc] = clock.current_datetime()",
        "self.__remote_streams[packet.ssrc] = StreamStatistics(codec.clockRate)",
        "self.__remote_streams[packet.ssrc].add(packet)",
        "self.__nack_generator.add(packet)",
        "sorted(self.__nack_generator.missing)",
        "if not self._enabled:",
    ):
        assert duty in handle, duty
    # what _add_to_statistics and _note_received write out (test_*_match_aiortcs below compare them)
    stats_add = source(rtcrtpreceiver.StreamStatistics.add)
    nack_add = source(rtcrtpreceiver.NackGenerator.add)
    for code in (stats_add, nack_add):
        fields = set(re.findall(r"\bpacket\.(\w+)", code))
        assert fields <= {"sequence_number", "timestamp"}, fields
    assert set(re.findall(r"\bself\.(\w+) *[+-]?=", stats_add)) == {
        "packets_received", "base_seq", "cycles", "max_seq", "_jitter_q4", "_last_arrival", "_last_timestamp"}
    assert set(re.findall(r"\bself\.(\w+)", nack_add)) == {"max_seq", "missing", "truncate"}
    assert "self.truncate()" in nack_add
    nack_generator_source = source(rtcrtpreceiver.NackGenerator.truncate)
    assert "RTP_HISTORY_SIZE" in nack_generator_source and aiortc.rtp.RTP_HISTORY_SIZE == 128
    assert "self.receivers.add(receiver)" in source(aiortc.rtcdtlstransport.RtpRouter.register_receiver)
    receive = source(RTCRtpReceiver.receive)
    assert "self.__transport._register_rtp_receiver(self, parameters)" in receive
    assert list(inspect.signature(RTCRtpReceiver._send_rtcp_nack).parameters) == ["self", "media_ssrc", "lost"]
    estimator = inspect.signature(aiortc.rate.RemoteBitrateEstimator.add).parameters
    assert set(estimator) == {"self", "abs_send_time", "arrival_time_ms", "payload_size", "ssrc"}  # by keyword
    assert "NTP_EPOCH" in source(aiortc.clock.current_ms)


async def test_receiver_bookkeeping_reaches_a_fresh_receivers_state() -> None:
    pc = new_peer_connection(())
    transceiver = pc.addTransceiver("video", direction="recvonly")
    book = seams.ReceiverBookkeeping(transceiver.receiver, 90000)
    assert not book.accepting()  # not started: aiortc would not route to it
    book.count(1234, 1, 0, 100, None)
    book.note_media(1234, 1)
    assert [s.source for s in transceiver.receiver.getSynchronizationSources()] == [1234]
    await pc.close()


# One packet: (sequence-number step: in order, a gap, reordered or repeated, a jump past half
# the space; timestamp step; µs of arrival since the previous packet).
PACKET_STEPS = st.lists(
    st.tuples(st.one_of(st.integers(1, 3), st.integers(-6, 0), st.integers(4, 300), st.integers(32700, 32840),
                        st.integers(-65535, 65535)),
              st.one_of(st.just(0), st.integers(1, 9000), st.integers(-9000, -1), st.integers(0, 2**32 - 1)),
              st.integers(0, 200_000)),
    max_size=250)


@settings(max_examples=300)
@given(PACKET_STEPS, st.integers(0, 65535), st.integers(0, 2**32 - 1))
def test_statistics_and_nack_bookkeeping_match_aiortcs(
        steps: list[tuple[int, int, int]], first_seq: int, first_ts: int) -> None:
    # Seam 11 written out: every field of aiortc's StreamStatistics and NackGenerator, and
    # whether a gap opened, after every packet, fed the same packets at the same times.
    theirs, ours = StreamStatistics(90000), StreamStatistics(90000)
    their_nacks, our_nacks = NackGenerator(), NackGenerator()
    seq, ts, now_us = first_seq, first_ts, 1_700_000_000_000_000
    with mock.patch("time.time", lambda: now_us / 1e6):
        for seq_step, ts_step, arrival_step in [(0, 0, 0), *steps]:
            seq, ts, now_us = (seq + seq_step) & 0xFFFF, (ts + ts_step) & 0xFFFFFFFF, now_us + arrival_step
            packet = RtpPacket(sequence_number=seq, timestamp=ts)
            theirs.add(packet)
            seams._add_to_statistics(ours, seq, ts)
            assert vars(ours) == vars(theirs)
            opened = their_nacks.add(packet)
            assert seams._note_received(our_nacks, seq) == opened
            assert (our_nacks.max_seq, our_nacks.missing) == (their_nacks.max_seq, their_nacks.missing)
    assert (ours.fraction_lost, ours.packets_lost, ours.jitter) == (theirs.fraction_lost, theirs.packets_lost,
                                                                     theirs.jitter)


class CountingSet(set[int]):
    """A set that counts the elements put into it."""

    added = 0

    def add(self, element: int) -> None:
        self.added += 1
        super().add(element)

    def update(self, *others: Any) -> None:
        for other in others:
            for element in other:
                self.add(element)


def test_a_jump_past_the_history_adds_only_what_aiortc_keeps_tracking() -> None:
    # aiortc's generator adds every packet of a gap, then drops all but the last 128: a
    # publisher whose sequence numbers jump by 32,767 (hostile, or broken) cost 11 ms of the
    # event loop per packet that way (measured: docs/benchmarks.md, section 4).
    theirs, ours = NackGenerator(), NackGenerator()
    theirs.missing, ours.missing = CountingSet(), CountingSet()
    for seq in (65000, 65001, 64999, (65001 + 32767) & 0xFFFF, 5, (5 + 32767) & 0xFFFF, 7):
        assert seams._note_received(ours, seq) == theirs.add(RtpPacket(sequence_number=seq))
        assert (ours.max_seq, ours.missing) == (theirs.max_seq, theirs.missing)
    assert len(ours.missing) == 128  # the history
    assert theirs.missing.added > 30_000 and ours.missing.added <= 3 * 128


def test_bitrate_estimator_parts_we_drive() -> None:
    # Seam 11 (_speed_up, RembEstimate): the estimator's parts we call once per packet group,
    # what its add does with them (RembEstimate does the same, with its own Kalman filter;
    # test_bitrate.py compares the results), and the constants RembEstimate and OveruseFilter copy.
    estimator = aiortc.rate.RemoteBitrateEstimator()
    assert {"estimator", "detector", "rate_control", "ssrcs"} <= set(vars(estimator))
    add = source(aiortc.rate.RemoteBitrateEstimator.add)
    for step in ("self.ssrcs[ssrc] = arrival_time_ms", "self.incoming_bitrate.rate(arrival_time_ms)",
                 "self.inter_arrival.compute_deltas(", "self.estimator.update(", "self.detector.detect(",
                 "self.rate_control.feedback_interval()", "self.rate_control.update(",
                 "return target_bitrate, list(self.ssrcs.keys())"):
        assert step in add
    assert "return 500" in source(aiortc.rate.AimdRateControl.feedback_interval)  # read once per estimate
    assert source(aiortc.rate.OveruseDetector.state).strip().endswith("return self.hypothesis")
    assert (bitrate.BURST_DELTA_THRESHOLD_MS, bitrate.INTER_ARRIVAL_SHIFT, bitrate.TIMESTAMP_TO_MS) == (
        aiortc.rate.BURST_DELTA_THRESHOLD_MS, aiortc.rate.INTER_ARRIVAL_SHIFT, aiortc.rate.TIMESTAMP_TO_MS)
    assert bitrate.TIMESTAMP_GROUP_LENGTH == estimator.inter_arrival.group_length
    assert aiortc.rate.MIN_FRAME_PERIOD_HISTORY_LENGTH == bitrate.MIN_FRAME_PERIOD_HISTORY
    assert aiortc.rate.DELTA_COUNTER_MAX == bitrate.DELTA_COUNTER_MAX
    usage = aiortc.rate.BandwidthUsage
    assert (usage.NORMAL.value, usage.UNDERUSING.value, usage.OVERUSING.value) == (
        bitrate.NORMAL, bitrate.UNDERUSING, bitrate.OVERUSING)
    assert aiortc.rate.OveruseEstimator().process_noise == [bitrate.PROCESS_NOISE_SLOPE, bitrate.PROCESS_NOISE_OFFSET]


def test_srtcp_is_unprotected_with_the_rx_session_and_handled_by_handle_rtcp_data() -> None:
    # Seam 17: what _recv_next does with an SRTCP datagram, which divert_srtp does at once.
    recv_next = source(aiortc.rtcdtlstransport.RTCDtlsTransport._recv_next)
    assert "if is_rtcp(data):" in recv_next
    unprotect_then_handle = r"data = self\._rx_srtp\.unprotect_rtcp\(data\)\s+await self\._handle_rtcp_data\(data\)"
    assert re.search(unprotect_then_handle, recv_next)
    handle = source(aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data)
    assert list(inspect.signature(aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data).parameters) == [
        "self", "data"]
    # it awaits nothing but the recipients' handlers (ours, or aiortc's, which do not suspend for RTCP)
    assert re.findall(r"await ([\w.]+)\(", handle) == ["recipient._handle_rtcp_packet"]


async def test_run_now_finishes_a_coroutine_that_never_suspends_before_returning() -> None:
    done: list[int] = []

    async def handler() -> None:
        done.append(1)

    seams.run_now(handler())
    assert done == [1]


async def test_run_now_hands_a_suspended_coroutine_to_a_task_that_resumes_it_as_awaited() -> None:
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()
    got: list[object] = []

    async def handler() -> None:
        got.append(await first)
        try:
            await second
        except asyncio.CancelledError:
            got.append("cancelled")
            raise

    seams.run_now(handler())
    assert got == [] and len(seams._running) == 1
    first.set_result("value")
    for _ in range(5):
        await asyncio.sleep(0)
    assert got == ["value"]
    (task,) = seams._running
    task.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    assert got == ["value", "cancelled"] and task.cancelled() and not seams._running


def test_srtp_before_the_keys_is_kept_and_forwarded_first_once_they_exist() -> None:
    # Left in aioice's queue, such packets reached aiortc's receive path after the handshake.
    import os
    import struct
    from types import SimpleNamespace

    import pylibsrtp

    key = os.urandom(30)
    sender = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
    queued: list[bytes] = []
    connection = SimpleNamespace(_protocols=[], data_received=lambda data, component: queued.append(data))
    dtls = SimpleNamespace(_rx_srtp=None, transport=SimpleNamespace(_connection=connection))
    forwarded: list[bytes] = []
    seams.divert_srtp(dtls, forwarded.append)  # type: ignore[arg-type]  # the fields it reads

    def rtp(seq: int) -> bytes:
        return struct.pack("!BBHII", 0x80, 96, seq, 0, 1234) + b"payload"

    for seq in range(1, 4):
        connection.data_received(sender.protect(rtp(seq)), 1)  # before DTLS made the keys
    connection.data_received(b"\x16\xfe\xfd" + b"\x00" * 20, 1)  # DTLS still goes to aiortc
    assert forwarded == [] and len(queued) == 1
    dtls._rx_srtp = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND))
    connection.data_received(sender.protect(rtp(4)), 1)
    assert forwarded == [rtp(1), rtp(2), rtp(3), rtp(4)] and len(queued) == 1


# --- seam 19: a viewer's RTCP dispatched by us ----------------------------------------------


def test_what_aiortc_does_with_a_viewers_rtcp_which_viewer_rtcp_does_itself() -> None:
    router = aiortc.rtcdtlstransport.RtpRouter
    assert "self.senders: dict[int, RtpSender] = {}" in source(router.__init__)
    assert "self.senders[ssrc] = sender" in source(router.register_sender)
    route = source(router.route_rtcp)
    assert "add_recipient(self.senders.get(report.ssrc))" in route  # RR / SR blocks, by their SSRC
    assert "add_recipient(self.senders.get(packet.media_ssrc))" in route  # NACK, PLI, FIR, by media SSRC
    assert "RtcpSdesPacket" not in route  # SDES reaches no one
    handle = source(aiortc.RTCRtpSender._handle_rtcp_packet)
    assert "filter(lambda x: x.ssrc == self._ssrc, packet.reports)" in handle  # stats and RTT only
    assert "for seq in packet.lost:\n                await self._retransmit(seq)" in handle
    assert "RTCP_PSFB_PLI" in handle and "self._send_keyframe()" in handle
    assert "self.__encoder.target_bitrate = bitrate" in handle  # REMB: an encoder, which a relay's senders lack
    assert "packets = RtcpPacket.parse(data)" in source(aiortc.rtcdtlstransport.RTCDtlsTransport._handle_rtcp_data)


class RecordingSender:
    """A sender as the relay sets one up: its handlers record what reaches them."""

    def __init__(self, calls: list[tuple[Any, ...]], ssrc: int, handlers: bool = True) -> None:
        self._ssrc, self.calls = ssrc, calls
        if handlers:
            setattr(self, NACK_HANDLER, lambda lost: calls.append(("nack", ssrc, list(lost))))
            setattr(self, REPORT_HANDLER, lambda block: calls.append(("report", ssrc, block.highest_sequence)))

    def _send_keyframe(self) -> None:
        self.calls.append(("keyframe", self._ssrc))

    async def _handle_rtcp_packet(self, packet: Any) -> None:
        self.calls.append(("aiortc", self._ssrc, type(packet).__name__))


def viewer_with(senders: list[RecordingSender]) -> tuple[Callable[[bytes], None], Any]:
    from types import SimpleNamespace

    router = aiortc.rtcdtlstransport.RtpRouter()
    for sender in senders:
        router.register_sender(sender, sender._ssrc)
    return seams.viewer_rtcp(SimpleNamespace(_rtp_router=router)), router  # type: ignore[arg-type]


@pytest.mark.parametrize("with_bye", [True, False], ids=["aiortc-parses", "read-by-us"])
def test_a_viewers_rtcp_reaches_our_handlers_as_aiortc_would_route_it(with_bye: bool) -> None:
    # Without the BYE the compound is receiver feedback only: hub.media.rtcp reads it, not
    # aiortc; what reaches the handlers must not differ.
    from aiortc.rtp import (
        RTCP_PSFB_APP,
        RTCP_PSFB_FIR,
        RTCP_PSFB_PLI,
        RTCP_RTPFB_NACK,
        AnyRtcpPacket,
        RtcpByePacket,
        RtcpPsfbPacket,
        RtcpReceiverInfo,
        RtcpRrPacket,
        RtcpRtpfbPacket,
        RtcpSdesPacket,
        pack_remb_fci,
    )

    calls: list[tuple[Any, ...]] = []
    video, audio, bare = RecordingSender(calls, 1111), RecordingSender(calls, 2222), RecordingSender(calls, 3333, False)
    handle, router = viewer_with([video, audio, bare])

    def block(ssrc: int, highest: int) -> RtcpReceiverInfo:
        return RtcpReceiverInfo(ssrc=ssrc, fraction_lost=0, packets_lost=0, highest_sequence=highest, jitter=0,
                                lsr=0, dlsr=0)

    nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=1111)
    nack.lost = [100, 101, 117, 300]
    bare_nack = RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=9, media_ssrc=3333)
    bare_nack.lost = [5]
    compound: list[AnyRtcpPacket] = [
        RtcpRrPacket(ssrc=9, reports=[block(1111, 70000), block(2222, 80000), block(4444, 1), block(3333, 2)]),
        RtcpSdesPacket(chunks=[]),
        nack, bare_nack,
        RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=1111),
        RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=9, media_ssrc=2222),
        RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=9, media_ssrc=4444),  # no such sender
        RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=9, media_ssrc=0, fci=pack_remb_fci(300_000, [1111])),
        RtcpByePacket(sources=[9]),
    ]
    handle(b"".join(bytes(packet) for packet in compound[:None if with_bye else -1]))
    assert calls == [
        ("report", 1111, 70000), ("report", 2222, 80000),  # 4444: no sender; 3333: no handler of ours
        ("nack", 1111, [100, 101, 117, 300]),  # one call for the whole NACK packet
        ("aiortc", 3333, "RtcpRtpfbPacket"),  # a sender without our handler: aiortc's own path
        ("keyframe", 1111), ("keyframe", 2222),
    ]  # SDES and a BYE for no receiver of ours reach no one, as through aiortc's router
    # aiortc's router sends each to the same senders; of them, aiortc's handler would only have
    # updated statistics for 3333's report block and retuned an encoder 1111 lacks for the REMB
    assert [{r._ssrc for r in router.route_rtcp(packet)} for packet in compound] == [
        {1111, 2222, 3333}, set(), {1111}, {3333}, {1111}, {2222}, set(), {1111}, set()]


def test_an_sr_reaches_its_receiver_once_and_our_sender_handler_once() -> None:
    from aiortc.rtp import RtcpReceiverInfo, RtcpSenderInfo, RtcpSrPacket

    calls: list[tuple[Any, ...]] = []
    handle, router = viewer_with([RecordingSender(calls, 1111)])
    router.ssrc_table[9] = RecordingSender(calls, 9, handlers=False)  # a receiver of what the viewer sends (talk-back)
    info = RtcpSenderInfo(ntp_timestamp=1, rtp_timestamp=2, packet_count=3, octet_count=4)
    block = RtcpReceiverInfo(ssrc=1111, fraction_lost=0, packets_lost=0, highest_sequence=7, jitter=0, lsr=0, dlsr=0)
    handle(bytes(RtcpSrPacket(ssrc=9, sender_info=info, reports=[block])))
    # aiortc's router hands it to both, and the sender's shadowed handler would report the block twice
    assert {r._ssrc for r in router.route_rtcp(RtcpSrPacket(ssrc=9, sender_info=info, reports=[block]))} == {9, 1111}
    assert calls == [("report", 1111, 7), ("aiortc", 9, "RtcpSrPacket")]


def test_a_malformed_compound_is_dropped_whole_as_aiortc_drops_it() -> None:
    calls: list[tuple[Any, ...]] = []
    handle, _ = viewer_with([RecordingSender(calls, 1111)])
    from aiortc.rtp import RtcpReceiverInfo, RtcpRrPacket

    good = bytes(RtcpRrPacket(ssrc=9, reports=[RtcpReceiverInfo(ssrc=1111, fraction_lost=0, packets_lost=0,
                                                                 highest_sequence=5, jitter=0, lsr=0, dlsr=0)]))
    for bad in (good[:-4], b"\x40" + good[1:], good + b"\x81\xc9\x00\x07", b"\x80"):
        handle(bad)
    assert calls == []
    handle(good)
    assert calls == [("report", 1111, 5)]


# --- seam 18: receiver reports on the hub's beat -----------------------------------------


def test_receivers_rtcp_loop_is_a_task_of_an_instance_lookup_that_stop_waits_for() -> None:
    # Seam 18: receive() starts self._run_rtcp() (shadowable per instance); stop() waits for
    # the two events our parked loop sets; the RR is built from the private state we read.
    assert "self.__rtcp_task = asyncio.ensure_future(self._run_rtcp())" in source(RTCRtpReceiver.receive)
    stop = source(RTCRtpReceiver.stop)
    assert "await self.__rtcp_started.wait()" in stop and "await self.__rtcp_exited.wait()" in stop
    run_rtcp = source(RTCRtpReceiver._run_rtcp)
    for step in ("self.__rtcp_started.set()", "self.__rtcp_exited.set()", "await asyncio.sleep(0.5 + random.random())",
                 "for ssrc, stream in self.__remote_streams.items():", "lsr = self.__lsr[ssrc]",
                 "delay = time.time() - self.__lsr_time[ssrc]", "highest_sequence=stream.max_seq",
                 "RtcpRrPacket(ssrc=self.__rtcp_ssrc, reports=reports)", "await self._send_rtcp(packet)"):
        assert step in run_rtcp, step


def _receiver_that_heard(pc: Any, packets: list[tuple[int, int, int]], last_sr: dict[int, tuple[int, float]]) -> Any:
    """A receiver whose statistics saw ``packets`` (ssrc, seq, timestamp) and whose last SRs
    were ``last_sr`` (ssrc → (lsr, when)), ready to report to RTCP SSRC 4321."""
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    book = seams.ReceiverBookkeeping(receiver, 90000)
    for ssrc, seq, ts in packets:
        book.count(ssrc, seq, ts, 1000, None)
    for ssrc, (lsr, when) in last_sr.items():
        vars(receiver)["_RTCRtpReceiver__lsr"][ssrc] = lsr
        vars(receiver)["_RTCRtpReceiver__lsr_time"][ssrc] = when
    receiver._set_rtcp_ssrc(4321)
    return receiver


async def test_receiver_report_is_the_one_aiortcs_loop_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two receivers with the same history (loss on one source, an SR heard from it, no
    # wrap): the report aiortc's own loop sends from one is, byte for byte, the one we
    # build from the other.
    packets = [(1111, seq, seq // 3 * 3000) for seq in (1, 2, 3, 5, 6, 9, 10)] + [(2222, 7, 100), (2222, 8, 100)]
    last_sr = {1111: (0x12345678, 1000.0)}
    monkeypatch.setattr(time, "time", lambda: 1002.5)  # DLSR: 2.5 s
    pc = new_peer_connection(())
    ours, theirs = _receiver_that_heard(pc, packets, last_sr), _receiver_that_heard(pc, packets, last_sr)
    sent: list[bytes] = []

    async def capture(packet: Any) -> None:
        sent.append(bytes(packet))
        raise asyncio.CancelledError  # ends aiortc's loop after its first report

    async def no_wait(delay: float) -> None:
        return None

    theirs._send_rtcp = capture
    monkeypatch.setattr(asyncio, "sleep", no_wait)
    await theirs._run_rtcp()
    monkeypatch.undo()
    monkeypatch.setattr(time, "time", lambda: 1002.5)
    packet = seams.receiver_report(ours)
    assert packet is not None and sent == [bytes(packet)]
    block = packet.reports[0]
    assert (block.ssrc, block.packets_lost, block.highest_sequence, block.lsr, block.dlsr) == (
        1111, 3, 10, 0x12345678, int(2.5 * 65536))
    await pc.close()


async def test_the_highest_sequence_number_reported_is_the_extended_one() -> None:
    pc = new_peer_connection(())
    wrapped = _receiver_that_heard(pc, [(1111, seq, seq) for seq in (65534, 65535, 0, 1)], {})
    packet = seams.receiver_report(wrapped)
    assert packet is not None and packet.reports[0].highest_sequence == (1 << 16) + 1  # aiortc: 1
    await pc.close()


async def test_no_report_before_a_source_was_heard() -> None:
    pc = new_peer_connection(())
    assert seams.receiver_report(_receiver_that_heard(pc, [], {})) is None  # as aiortc: no empty RR
    await pc.close()


async def test_a_parked_loop_joins_the_timer_until_stop_cancels_it() -> None:
    pc = new_peer_connection(())
    receiver = _receiver_that_heard(pc, [(1111, 1, 0)], {})
    reports = seams.ReceiverReports(period_s=0.05)
    seams.report_on_beat(receiver, reports)
    state = vars(receiver)
    task = asyncio.ensure_future(receiver._run_rtcp())  # what receive() does once DTLS is up
    await asyncio.wait_for(state["_RTCRtpReceiver__rtcp_started"].wait(), timeout(5))
    assert len(reports) == 1
    sent: list[float] = []

    async def capture(packet: Any) -> None:
        sent.append(asyncio.get_running_loop().time())

    receiver._send_rtcp = capture
    await wait_until(lambda: len(sent) >= 2, message="two reports on the timer")
    for at in sent:  # on the beat: multiples of the period on the loop's clock (never early)
        assert 0 <= at / 0.05 - round(at / 0.05) < 0.5
    task.cancel()
    await asyncio.wait_for(state["_RTCRtpReceiver__rtcp_exited"].wait(), timeout(5))
    assert len(reports) == 0 and task.done() and not task.cancelled()  # it ends as aiortc's loop ends
    reports.close()
    await pc.close()


async def test_one_failing_report_does_not_stop_the_others() -> None:
    pc = new_peer_connection(())
    failing, working = (_receiver_that_heard(pc, [(1111, 1, 0)], {}) for _ in range(2))
    reports = seams.ReceiverReports(period_s=0.05)
    sent: list[bytes] = []

    def broken(packet: Any) -> None:
        raise RuntimeError("socket gone")

    reports._start(failing, broken)
    reports._start(working, lambda packet: sent.append(bytes(packet)))
    await wait_until(lambda: len(sent) >= 2, message="the working receiver's reports")
    reports.close()
    await pc.close()


async def test_too_late_once_the_receiver_runs_its_own_loop() -> None:
    pc = new_peer_connection(())
    receiver = pc.addTransceiver("video", direction="recvonly").receiver
    vars(receiver)["_RTCRtpReceiver__rtcp_task"] = asyncio.get_running_loop().create_future()
    with pytest.raises(RuntimeError, match="too late"):
        seams.report_on_beat(receiver, seams.ReceiverReports())
    await pc.close()
