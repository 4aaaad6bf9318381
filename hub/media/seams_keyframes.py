"""Encoded frames and keyframes: the aiortc internals the keyframe policy and thumbnails use.

aiortc is built to decode what it receives and encode what it sends; a forwarding relay
must keep frames encoded and still carry keyframe requests both ways. Each seam is one
small function, and ``tests/media/test_seams_keyframes.py`` pins the internals it relies
on against the locked aiortc, so an upgrade fails loudly in one test file instead of
quietly in production:

1. ``take_encoded_frames``: the receiver reassembles RTP into ``JitterFrame`` objects and
   hands them to a decoder thread through ``RTCRtpReceiver.__decoder_queue`` (``put`` from
   ``_handle_rtp_packet``; ``decoder_worker`` stops on ``None``). We swap that queue for a
   sink that passes each encoded frame to a callback on the event loop, so nothing is
   decoded and the decoder thread exits at once instead of idling. (With the ingest fast
   path no packet reaches a hub receiver's jitter buffer; the benchmarks' viewers use it
   to count frames without decoding.)
2. ``request_keyframe``: ``RTCRtpReceiver._send_rtcp_pli(ssrc)`` sends a PLI to the
   publisher, for every SSRC ``getSynchronizationSources`` heard in the last 10 s.
3. ``on_keyframe_request``: a viewer's PLI/FIR reaches ``RTCRtpSender._send_keyframe``
   (called from ``_handle_rtcp_packet``), which only sets a flag for aiortc's own encoder;
   with no encoder behind the sender the request would be dropped. We shadow it per
   sender instance.
12. ``depayload``: ``aiortc.codecs.depayload``, which picks its depayloader by the codec's
    case-sensitive name ("VP8", "H264"), to rebuild one keyframe for a thumbnail.

Consumers: ``peers`` (1, 3), ``relay`` (2), ``station_stream`` and ``recorder`` (12).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc.codecs import depayload as aiortc_depayload
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

__all__ = ["FrameSink", "depayload", "on_keyframe_request", "request_keyframe", "take_encoded_frames"]

# Encoded-frame callback: (codec mime type, e.g. "video/VP8", clock rate, data, timestamp).
# The timestamp is in clock-rate units, counted from the publisher's first frame.
FrameSink = Callable[[str, int, bytes, int], None]


# --- 1. taking encoded frames instead of decoding them ----------------------------------


class _EncodedFrameSink:
    """Stands in for the receiver's ``queue.Queue`` between jitter buffer and decoder.

    ``get`` is only called by aiortc's decoder thread: answering ``None`` at once tells the
    thread to stop, so no thread idles per publisher. ``put`` is called on the event loop by
    ``_handle_rtp_packet`` with ``(codec, JitterFrame)``, and with ``None`` on shutdown.
    """

    def __init__(self, on_frame: FrameSink) -> None:
        self._on_frame: FrameSink | None = on_frame

    def get(self, *_: object, **__: object) -> None:
        return None

    def put(self, task: Any, *_: object, **__: object) -> None:
        if task is None:
            self._on_frame = None  # the receiver is stopping: drop the reference cycle
            return
        codec, encoded_frame = task
        if self._on_frame is not None:
            self._on_frame(codec.mimeType, codec.clockRate, encoded_frame.data, encoded_frame.timestamp)


def take_encoded_frames(receiver: RTCRtpReceiver, on_frame: FrameSink) -> None:
    """Route the receiver's reassembled frames to ``on_frame`` instead of a decoder.

    Call after ``setRemoteDescription`` created the receiver and before the connection
    starts it (``receive()`` runs only once ICE and DTLS are up, after
    ``setLocalDescription``). The receiver still runs its jitter buffer, NACKs, RTX
    unwrapping and loss-triggered PLIs.
    """
    # ``self.__decoder_queue`` is stored under its class-mangled name, which type checkers
    # do not model: hence the instance dictionary.
    state = vars(receiver)
    if state.get("_RTCRtpReceiver__decoder_thread") is not None:
        raise RuntimeError("receiver already started: too late to take its frames")
    state["_RTCRtpReceiver__decoder_queue"] = _EncodedFrameSink(on_frame)


# --- 2. asking the publisher for a keyframe ---------------------------------------------


async def request_keyframe(receiver: RTCRtpReceiver) -> bool:
    """Send a PLI for every SSRC the receiver heard from recently; False if none yet.

    A PLI for an RTX SSRC is ignored by senders, so no need to tell them apart here. With
    no SSRC heard yet there is nothing to ask: a publisher's first frame is a keyframe.
    """
    sources = receiver.getSynchronizationSources()
    for source in sources:
        await receiver._send_rtcp_pli(source.source)
    return bool(sources)


# --- 3. catching a viewer's PLI / FIR ---------------------------------------------------


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call ``callback`` whenever the viewer behind ``sender`` sends a PLI or FIR."""
    # _handle_rtcp_packet calls self._send_keyframe() on PLI / FIR
    sender._send_keyframe = callback  # type: ignore[method-assign]  # shadowed per instance


# --- 12. rebuilding an encoded frame from RTP payloads ----------------------------------


_DEPAYLOAD_CODECS: dict[str, RTCRtpCodecParameters] = {}  # per mime type: the recorder calls this per packet


def depayload(mime_type: str, payload: bytes) -> bytes:
    """One RTP payload's share of the encoded frame (VP8 descriptor / H.264 FU-A removed)."""
    codec = _DEPAYLOAD_CODECS.get(mime_type)
    if codec is None:
        kind, _, subtype = mime_type.partition("/")
        # aiortc picks the depayloader by the codec's name, which is case-sensitive ("VP8")
        codec = _DEPAYLOAD_CODECS[mime_type] = RTCRtpCodecParameters(mimeType=f"{kind}/{subtype.upper()}",
                                                                     clockRate=90000)
    return aiortc_depayload(codec, payload)
