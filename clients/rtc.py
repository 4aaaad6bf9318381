"""The station agent's reaches into aiortc / aioice beyond their plain public API.

1. ``host_addresses``: which host addresses ICE gathers on. That seam is shared with the
   hub: it is ``jaga.ice_hosts.announced_host_addresses`` (wraps aioice's module function
   ``get_host_addresses`` once per process; the addresses apply only inside the block and
   the tasks it starts), named here as the agent calls it. Wrap ``setLocalDescription``
   in it: aiortc gathers there. Pinned by ``tests/jaga/test_ice_hosts.py``.
2. ``rate_control``: the encoders' rate and keyframes, under the agent's control
   (:class:`RateControl`, one per media session). aiortc builds the encoder lazily in
   ``RTCRtpSender`` through the name ``get_encoder`` in ``aiortc.rtcrtpsender``'s namespace;
   our wrapper hands out a proxy (``_ControlledEncoder``) for video encoders created while a
   control is set in the calling context. The sender's tasks are created inside
   ``setRemoteDescription``, so wrap that call. What the proxy does:

   - REMB: the sender sets ``encoder.target_bitrate`` to the hub's estimate; the proxy only
     records it (``RateControl.estimate_bps``) once the agent has set a target, else keeps
     it between aiortc's floor and ``cap_bps``, the cap winning (without quality levels).
   - The agent's target: aiortc's setter clamps to 250 kbps (VP8) / 500 kbps (H.264), so the
     proxy writes the encoders' private ``__target_bitrate`` (name-mangled), which ``encode``
     reads. aiortc's H.264 encoder assumes 30 fps (``codec.framerate``, ``MAX_FRAME_RATE``)
     and x264 spends ``bit_rate / 30`` per frame: at 10 fps it sent a third of its target,
     so its target is scaled by 30 / fps (also when it follows REMB, ``fps`` from the config).
   - H.264's VBV: aiortc opens x264 with an average bitrate and no VBV, and x264's ABR then
     repays what a still picture saved: after 10 s of a still office, a busy picture went out
     at 1.9–2.0 Mbps for 3 s and above 1 Mbps for 8 s at a 500 kbps target (4× the target at
     every level; measured, docs/benchmarks.md "H.264 on the office PC"). The proxy opens
     the x264 context itself just before aiortc's ``encode`` would, with aiortc's own
     settings plus ``maxrate`` = the target and a one-second ``bufsize`` (libvpx's
     ``rc_buf_sz`` in aiortc's VP8), under aiortc's own rule for when to open one again (a
     new size, the target moved by more than 10 %), so aiortc keeps it. A new context starts
     with an IDR picture and its SPS/PPS in band (x264 repeats them before every IDR), so a
     new size or rate reaches the hub's packager with a new SPS.
   - Keyframes: ``request_keyframe`` makes the next ``encode`` a forced keyframe (the first
     picture after audio only must be one: the encoder kept its state across the pause).
   - Audio: an Opus encoder created inside the block gets ``audio_bps`` (aiortc's is fixed
     at 96 kbps, too much for a 150 kbps uplink) on its ``codec``, before its first frame
     opens it; and with ``audio_packet_ms`` 40 or 60, libopus's ``frame_duration`` and an
     ``AudioResampler`` of that many samples in place of aiortc's 20 ms one (the encoder's
     ``resampler``), so each RTP packet carries 40 or 60 ms: aiortc's sender skips the calls
     that return no packet and stamps each packet with its pts. A station then sends a third
     as many audio packets at 60 ms: each costs the hub a packet's work whatever its size (a
     Jember day on one core held with 60 ms and not with 20: docs/benchmarks.md, thirteenth
     step), and each carries ≈ 50 bytes of IP, UDP, RTP and SRTP (≈ 20 kbps of a village
     uplink at 20 ms, ≈ 7 at 60).
3. ``new_peer_connection``: always passes the ICE servers explicitly; aiortc falls back to
   Google's STUN server when the list is left out.
4. ``patient_consent``: the consent checks (RFC 7675) the agent sends the hub every ~5 s are
   sent again on STUN's doubling timeouts until the next one is due, where aioice sends each
   once and gives up after 0.5 s: six lost in a row close the session, and a hub running a
   second behind under load, or a village modem holding seconds of video in its buffer, lost
   all six. Shared with the hub: ``jaga.ice_consent`` (pinned by
   ``tests/jaga/test_ice_consent.py``). Call it after ``setLocalDescription``.

Seams 2 and 3 are exercised by ``tests/clients/test_config_and_media.py``; the aiortc internals
seam 2 relies on are pinned by ``tests/clients/test_rtc_seams.py``.
"""

from __future__ import annotations

import contextlib
import contextvars
import fractions
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiortc.rtcrtpsender
import av
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.h264 import MAX_FRAME_RATE as H264_ASSUMED_FPS
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import SAMPLE_RATE as OPUS_RATE
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from av.audio.resampler import AudioResampler

from jaga.ice_consent import patient_consent
from jaga.ice_hosts import announced_host_addresses as host_addresses

__all__ = ["RateControl", "host_addresses", "new_peer_connection", "patient_consent", "prefer_codec", "rate_control"]

OPUS_PACKET_MS = 20  # aiortc's: its OpusEncoder resamples into 960-sample (20 ms) frames

_control: contextvars.ContextVar[RateControl | None] = contextvars.ContextVar("jaga_station_rate_control",
                                                                       default=None)


# --- 2. rate control ----------------------------------------------------------------------

class RateControl:
    """One session's encoder rate. Before :meth:`set_target` the video encoder follows REMB
    up to ``cap_bps``; after it, it sends the target whatever REMB says, and REMB is only
    recorded (``estimate_bps``, ``estimates`` counts them) for the agent's controller.
    Methods are called on the event loop; ``encode`` runs in aiortc's worker thread and only
    reads and swaps single attributes."""

    def __init__(self, cap_bps: int, audio_bps: int = 0, fps: int = 0, audio_packet_ms: int = OPUS_PACKET_MS) -> None:
        self.cap_bps = int(cap_bps)
        self.audio_bps = int(audio_bps)
        self.audio_packet_ms = int(audio_packet_ms)  # Opus packet length: 20 (aiortc's), 40 or 60
        self.estimate_bps: int | None = None
        self.estimates = 0
        self.target_bps: int | None = None
        self.fps = int(fps)  # the frame rate sent (0: unknown, taken as aiortc's 30)
        self._keyframe = False
        self._encoder: _ControlledEncoder | None = None

    def set_target(self, bps: int, fps: int) -> None:
        """Send ``bps`` (clamped to ``cap_bps``) at ``fps`` frames per second from now on."""
        self.target_bps = min(int(bps), self.cap_bps)
        self.fps = int(fps)
        if self._encoder is not None:
            self._encoder.apply()

    def request_keyframe(self) -> None:
        """The next video frame encoded is a keyframe."""
        self._keyframe = True

    def take_keyframe(self) -> bool:
        wanted, self._keyframe = self._keyframe, False
        return wanted

    def attach(self, encoder: _ControlledEncoder) -> None:
        self._encoder = encoder  # one video sender per session, one encoder per sender run


def _set_encoder_rate(inner: Any, bps: int, fps: int) -> None:
    """Write aiortc's own value below its setter's floor: the private ``__target_bitrate``
    of ``Vp8Encoder`` / ``H264Encoder`` (pinned by tests/clients/test_rtc_seams.py)."""
    if isinstance(inner, H264Encoder) and fps > 0:
        bps = round(bps * H264_ASSUMED_FPS / fps)
    private = f"_{type(inner).__name__}__target_bitrate"
    if hasattr(inner, private):
        setattr(inner, private, int(bps))
    else:  # an encoder we do not know: its public setter, floor and all
        inner.target_bitrate = int(bps)


def _open_h264(inner: H264Encoder, frame: av.VideoFrame, fps: int) -> None:
    """Give ``inner`` the x264 context its ``encode`` would open for ``frame`` now, with a
    VBV: ``maxrate`` = the target, ``bufsize`` = one second at ``fps`` (seam 2). Nothing
    when aiortc would keep its context (same size, target within 10 %: its rule)."""
    bps = inner.target_bitrate
    codec = inner.codec
    opened_bps = codec.bit_rate if codec is not None else None
    if (codec is not None and opened_bps and (frame.width, frame.height) == (codec.width, codec.height)
            and abs(bps - opened_bps) / opened_bps <= 0.1):
        return
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height = frame.width, frame.height
    codec.bit_rate = bps
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(H264_ASSUMED_FPS, 1)
    codec.time_base = fractions.Fraction(1, H264_ASSUMED_FPS)
    # x264 counts time in frames of 1/30 s: a real second holds fps of them.
    bufsize = round(bps * (fps or H264_ASSUMED_FPS) / H264_ASSUMED_FPS)
    codec.options = {"level": "31", "tune": "zerolatency", "maxrate": str(bps), "bufsize": str(bufsize)}
    codec.profile = "Baseline"
    inner.buffer_data, inner.buffer_pts = b"", None
    inner.codec = codec


class _ControlledEncoder:
    """Proxies an aiortc video encoder for a :class:`RateControl` (see seam 2 above)."""

    def __init__(self, inner: Any, control: RateControl) -> None:
        self._inner = inner
        self._control = control
        self._followed_bps = int(inner.target_bitrate)  # aiortc's start value, until a REMB
        control.attach(self)
        self.apply()

    def apply(self) -> None:
        control = self._control
        if control.target_bps is not None:
            _set_encoder_rate(self._inner, control.target_bps, control.fps)
        else:
            self._follow(self._followed_bps)

    def _follow(self, bps: int) -> None:
        """No target of the agent's: ``bps`` (REMB) kept within aiortc's floor and ceiling (its
        setter), then the cap, which wins over the floor (500 kbps for H.264)."""
        self._followed_bps = int(bps)
        self._inner.target_bitrate = int(bps)
        _set_encoder_rate(self._inner, min(self._inner.target_bitrate, self._control.cap_bps), self._control.fps)

    @property
    def target_bitrate(self) -> int:
        return int(self._inner.target_bitrate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:  # the sender, on each REMB
        control = self._control
        control.estimate_bps = int(bitrate)
        control.estimates += 1
        if control.target_bps is None:
            self._follow(bitrate)

    def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
        if isinstance(self._inner, H264Encoder) and isinstance(frame, av.VideoFrame):
            _open_h264(self._inner, frame, self._control.fps)
        return self._inner.encode(frame, self._control.take_keyframe() or force_keyframe)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _ControllingGetEncoder:
    """Stands in for ``aiortc.rtcrtpsender.get_encoder``: encoders created while a
    :class:`RateControl` is set in the calling context come under its control."""

    def __init__(self, wrapped: Callable[[RTCRtpCodecParameters], Any]) -> None:
        self.wrapped = wrapped

    def __call__(self, codec: RTCRtpCodecParameters) -> Any:
        encoder = self.wrapped(codec)
        control = _control.get()
        if control is None:
            return encoder
        mime = codec.mimeType.lower()
        if mime.startswith("video/") and hasattr(encoder, "target_bitrate"):
            return _ControlledEncoder(encoder, control)
        if mime == "audio/opus" and isinstance(encoder, OpusEncoder) and not encoder.codec.is_open:
            # aiortc opens the codec at the first frame: until then its settings can change
            if control.audio_bps:
                encoder.codec.bit_rate = control.audio_bps
            if control.audio_packet_ms != OPUS_PACKET_MS:
                _set_opus_packet_ms(encoder, control.audio_packet_ms)
        return encoder


def _set_opus_packet_ms(encoder: OpusEncoder, packet_ms: int) -> None:
    """Make a fresh aiortc Opus encoder put ``packet_ms`` of sound in each packet (seam 2)."""
    encoder.codec.options = {**encoder.codec.options, "frame_duration": str(packet_ms)}
    encoder.resampler = AudioResampler(format="s16", layout="stereo", rate=OPUS_RATE,
                                       frame_size=OPUS_RATE * packet_ms // 1000)


def _install_encoder_wrapper() -> None:
    # The sender looks the name up in its own module, which imports it from aiortc.codecs
    # without re-exporting it: reached through the module's namespace.
    namespace = vars(aiortc.rtcrtpsender)
    current = namespace["get_encoder"]
    if not isinstance(current, _ControllingGetEncoder):
        namespace["get_encoder"] = _ControllingGetEncoder(current)


@contextlib.contextmanager
def rate_control(control: RateControl) -> Iterator[None]:
    """Encoders created by tasks started inside this block are under ``control``."""
    _install_encoder_wrapper()
    token = _control.set(control)
    try:
        yield
    finally:
        _control.reset(token)


# --- 3. peer connections and codecs -------------------------------------------------------

def new_peer_connection(ice_servers: Sequence[str | RTCIceServer]) -> RTCPeerConnection:
    """A peer connection with exactly these ICE servers (empty: no STUN at all): URLs, or
    ``RTCIceServer`` s with TURN credentials (clients/ice.py chooses and orders them)."""
    servers = [server if isinstance(server, RTCIceServer) else RTCIceServer(urls=server) for server in ice_servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=servers))


def prefer_codec(transceiver: RTCRtpTransceiver, kind: str, mime: str) -> None:
    """Offer ``mime`` (e.g. "video/VP8") first, keeping RTX; others stay as fallbacks."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    wanted = [c for c in codecs if c.mimeType.lower() == mime.lower()]
    if kind == "video" and mime.lower() == "video/h264":
        # aiortc packetizes only packetization-mode=1; offer those H.264 profiles only.
        wanted = [c for c in wanted if c.parameters.get("packetization-mode") == "1"] or wanted
    rest = [c for c in codecs if c not in wanted]
    if wanted:
        transceiver.setCodecPreferences(wanted + rest)
