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
     records it (``RateControl.estimate_bps``) once the agent has set a target, else clamps
     it to ``cap_bps`` (the behaviour without quality levels).
   - The agent's target: aiortc's setter clamps to 250 kbps (VP8) / 500 kbps (H.264), so the
     proxy writes the encoders' private ``__target_bitrate`` (name-mangled), which ``encode``
     reads. aiortc's H.264 encoder assumes 30 fps (``codec.framerate``, ``MAX_FRAME_RATE``)
     and x264 spends ``bit_rate / 30`` per frame: at 10 fps it sent a third of its target,
     so its target is scaled by 30 / fps.
   - Keyframes: ``request_keyframe`` makes the next ``encode`` a forced keyframe (the first
     picture after audio only must be one: the encoder kept its state across the pause).
   - Audio: an Opus encoder created inside the block gets ``audio_bps`` (aiortc's is fixed
     at 96 kbps, too much for a 150 kbps uplink) on its ``codec``, before its first frame
     opens it.
3. ``new_peer_connection``: always passes the ICE servers explicitly; aiortc falls back to
   Google's STUN server when the list is left out.

Seams 2 and 3 are exercised by ``tests/clients/test_config_and_media.py``; the aiortc internals
seam 2 relies on are pinned by ``tests/clients/test_rtc_seams.py``.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import aiortc.rtcrtpsender
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.h264 import MAX_FRAME_RATE as H264_ASSUMED_FPS
from aiortc.codecs.h264 import H264Encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from jaga.ice_hosts import announced_host_addresses as host_addresses

__all__ = ["RateControl", "host_addresses", "new_peer_connection", "prefer_codec", "rate_control"]

_control: contextvars.ContextVar[RateControl | None] = contextvars.ContextVar("jaga_station_rate_control",
                                                                       default=None)


# --- 2. rate control ----------------------------------------------------------------------

class RateControl:
    """One session's encoder rate. Before :meth:`set_target` the video encoder follows REMB
    up to ``cap_bps``; after it, it sends the target whatever REMB says, and REMB is only
    recorded (``estimate_bps``, ``estimates`` counts them) for the agent's controller.
    Methods are called on the event loop; ``encode`` runs in aiortc's worker thread and only
    reads and swaps single attributes."""

    def __init__(self, cap_bps: int, audio_bps: int = 0) -> None:
        self.cap_bps = int(cap_bps)
        self.audio_bps = int(audio_bps)
        self.estimate_bps: int | None = None
        self.estimates = 0
        self.target_bps: int | None = None
        self.fps = 0
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


class _ControlledEncoder:
    """Proxies an aiortc video encoder for a :class:`RateControl` (see seam 2 above)."""

    def __init__(self, inner: Any, control: RateControl) -> None:
        self._inner = inner
        self._control = control
        control.attach(self)
        self.apply()

    def apply(self) -> None:
        control = self._control
        if control.target_bps is not None:
            _set_encoder_rate(self._inner, control.target_bps, control.fps)
        else:
            self._inner.target_bitrate = min(self._inner.target_bitrate, control.cap_bps)

    @property
    def target_bitrate(self) -> int:
        return int(self._inner.target_bitrate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:  # the sender, on each REMB
        control = self._control
        control.estimate_bps = int(bitrate)
        control.estimates += 1
        if control.target_bps is None:
            self._inner.target_bitrate = min(bitrate, control.cap_bps)

    def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
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
        if mime == "audio/opus" and control.audio_bps and isinstance(encoder, OpusEncoder):
            if not encoder.codec.is_open:  # aiortc opens it at the first frame
                encoder.codec.bit_rate = control.audio_bps
        return encoder


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
