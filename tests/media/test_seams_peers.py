"""Pins what ``hub.media.seams_peers`` relies on: seam 5 and the public aiortc behaviour the
relay builds on (no STUN unless configured, the only H.264 aiortc can forward), and that in
``hub.media`` only the ``seams_*`` modules import aiortc, aioice or pylibsrtp.
"""

from __future__ import annotations

import ast
import gc
import inspect
import weakref
from collections.abc import Callable
from pathlib import Path

import aiortc.rtcdtlstransport
from aiortc import RTCPeerConnection, RTCRtpReceiver, RTCRtpSender, rtcicetransport
from aiortc.codecs import CODECS

from hub.media import MediaRelay
from hub.media import seams_peers as seams
from tests.locked import check_locked
from tests.media.conftest import RecordedEvents, media_settings
from tests.media.peers import Publisher, Viewer

MEDIA = Path(__file__).resolve().parents[2] / "hub" / "media"
UPSTREAM = {"aiortc", "aioice", "pylibsrtp"}


def source(obj: Callable[..., object]) -> str:
    return inspect.getsource(obj)


STATION = "35.09.01"


def test_installed_aiortc_and_aioice_are_the_locked_ones() -> None:
    check_locked("aiortc", "aioice")


def test_only_the_seam_modules_import_aiortc_aioice_or_pylibsrtp() -> None:
    importers = set()
    for path in MEDIA.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            if any(name.partition(".")[0] in UPSTREAM for name in names):
                importers.add(path.name)
    assert importers == {"seams_egress.py", "seams_ice.py", "seams_ingest.py", "seams_keyframes.py", "seams_peers.py",
                         "seams_udp.py"}


def test_close_can_start_a_sender_late_and_stopping_again_is_safe() -> None:
    # Seam 5: the connect task is never awaited, checks for close only on entry, and starts
    # senders and receivers after awaiting ICE and DTLS; close() stops the transceivers
    # *before* it awaits the transports' shutdown, so a sender can start after its stop.
    connect = source(vars(RTCPeerConnection)["_RTCPeerConnection__connect"])
    assert connect.count("if self.__isClosed:") == 1
    assert connect.index("await dtlsTransport.start(") < connect.index("await transceiver.sender.send(")
    assert "asyncio.ensure_future(self.__connect())" in source(RTCPeerConnection.setLocalDescription)
    close = source(RTCPeerConnection.close)
    assert close.index("await transceiver.stop()") < close.index("await transceiver.receiver.transport.stop()")
    # stopping again is harmless: stop() only re-runs its unregister, which discards
    assert "if self.__started:" in source(RTCRtpSender.stop) and "if self.__started:" in source(RTCRtpReceiver.stop)
    router = aiortc.rtcdtlstransport.RtpRouter
    assert "self.receivers.discard(receiver)" in source(router.unregister_receiver)
    assert "self.__discard(self.senders, sender)" in source(router.unregister_sender)


async def test_close_peer_connection_closes_everything_and_may_be_repeated() -> None:
    pc = seams.new_peer_connection(())
    pc.addTransceiver("video", direction="sendonly")
    pc.addTransceiver("audio", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    await seams.close_peer_connection(pc)
    await seams.close_peer_connection(pc)
    assert pc.connectionState == "closed"


async def test_a_closed_viewer_session_is_freed_by_reference_counting_alone() -> None:
    """With the collector off (as good as frozen, hub.gcpolicy), a hub-side peer connection
    that served a viewer is gone as soon as the session ends: nothing waits for a full
    collection (before: ≈ 1.4 MB per viewer that came and went)."""
    relay = MediaRelay(media_settings(), RecordedEvents())
    publisher = await Publisher.start(relay, STATION, audio=True)
    viewer = await Viewer.start(relay, STATION, audio=True)
    gc.disable()
    try:
        await viewer.wait_for(pictures=3)
        served = weakref.ref(relay._sessions[viewer.session_id].pc)
        await relay.end(viewer.session_id)
        assert served() is None
    finally:
        gc.enable()
        await viewer.close()
        await publisher.close()
        await relay.close()


async def test_empty_ice_server_list_means_no_stun() -> None:
    # aiortc only falls back to Google's STUN when iceServers is None.
    init = source(rtcicetransport.RTCIceGatherer.__init__)
    assert "if iceServers is None:" in init
    pc = seams.new_peer_connection(())
    transceiver = pc.addTransceiver("video")
    connection = transceiver.receiver.transport.transport.iceGatherer._connection
    assert connection.stun_server is None and connection.turn_server is None
    await pc.close()


def test_h264_is_offered_only_as_packetization_mode_1() -> None:
    h264 = [c for c in CODECS["video"] if c.name == "H264"]
    assert h264 and all(c.parameters.get("packetization-mode") == "1" for c in h264)
    assert {c.parameters["profile-level-id"] for c in h264} == {"42001f", "42e01f"}
    assert all(seams.supported_codec("video", c) is c for c in h264)


async def test_negotiated_media_reads_codec_rtx_and_mid_of_an_answer() -> None:
    pc = seams.new_peer_connection(())
    transceiver = pc.addTransceiver("video", direction="sendonly")
    vp8 = next(c for c in CODECS["video"] if c.name == "VP8")
    rtx = seams.rtx_capability("video")
    assert rtx is not None
    transceiver.setCodecPreferences([seams.capability_for(vp8), rtx])
    await pc.setLocalDescription(await pc.createOffer())
    media = seams.negotiated_media(pc.localDescription.sdp)["video"]
    assert (media.mime_type, media.clock_rate, media.mid) == ("video/vp8", 90000, transceiver.mid)
    assert media.rtx_payload_type is not None and media.mid_extension_id is not None
    await pc.close()
