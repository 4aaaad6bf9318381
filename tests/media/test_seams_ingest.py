"""Pins the aiortc / aioice internals ``hub.media.seams_ingest`` relies on (seams 10 and 11).

If one of these fails after an upgrade, re-read the named function and adapt the seam (and
docs/media.md) first: otherwise publishers' packets may silently stop reaching viewers, or
the publisher may stop getting receiver reports, NACKs or REMB and degrade its stream.
"""

from __future__ import annotations

import asyncio.selector_events
import inspect
import re
from collections.abc import Callable

import aioice.ice
import aiortc.clock
import aiortc.rate
import aiortc.rtcdtlstransport
from aiortc import RTCRtpReceiver, rtcrtpreceiver

from hub.media import bitrate
from hub.media import seams_ingest as seams
from hub.media.seams_peers import new_peer_connection
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
    # the stand-in packet only has to carry what these two read
    stats_add = source(rtcrtpreceiver.StreamStatistics.add)
    nack_add = source(rtcrtpreceiver.NackGenerator.add)
    for code in (stats_add, nack_add):
        fields = set(re.findall(r"\bpacket\.(\w+)", code))
        assert fields <= {"sequence_number", "timestamp"}, fields
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


def test_bitrate_estimator_parts_we_drive() -> None:
    # Seam 11 (_speed_up, RembEstimate): the estimator's parts we call once per packet group,
    # what its add does with them (RembEstimate does the same; test_bitrate.py compares the
    # results), the constants RembEstimate copies, and the min-frame-period step, reached
    # through an instance attribute on a history list that is never replaced.
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
    assert "self.update_min_frame_period(" in source(aiortc.rate.OveruseEstimator.update)
    assert source(aiortc.rate.OveruseEstimator).count("self.ts_delta_hist =") == 0
    assert aiortc.rate.MIN_FRAME_PERIOD_HISTORY_LENGTH == 60


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
