"""The station agent's reaches into aiortc / aioice beyond their plain public API.

1. ``host_addresses``: which host addresses ICE gathers on. That seam is shared with the
   hub: it is ``jaga.ice_hosts.announced_host_addresses`` (wraps aioice's module function
   ``get_host_addresses`` once per process; the addresses apply only inside the block and
   the tasks it starts), named here as the agent calls it. Wrap ``setLocalDescription``
   in it: aiortc gathers there. Pinned by ``tests/jaga/test_ice_hosts.py``.
2. ``bitrate_cap``: aiortc's encoders follow the receiver's REMB estimate up to 1.5 Mbps
   (VP8) or 3 Mbps (H.264). A village uplink of 1 Mbps needs a hard ceiling. aiortc builds
   the encoder lazily in ``RTCRtpSender`` through the name ``get_encoder`` in
   ``aiortc.rtcrtpsender``'s namespace; our wrapper clamps ``target_bitrate`` when a cap is
   set in the calling context. The sender's tasks are created inside
   ``setRemoteDescription``, so wrap that call.
3. ``new_peer_connection``: always passes the configured ICE servers explicitly; aiortc
   falls back to Google's STUN server when the list is left out.

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
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from jaga.ice_hosts import announced_host_addresses as host_addresses

__all__ = ["bitrate_cap", "host_addresses", "new_peer_connection", "prefer_codec"]

_cap_bps: contextvars.ContextVar[int] = contextvars.ContextVar("jaga_station_bitrate_cap", default=0)


# --- 2. bitrate cap -----------------------------------------------------------------------

class _CappedEncoder:
    """Proxies an aiortc encoder; ``target_bitrate`` never exceeds the cap."""

    def __init__(self, inner: Any, cap_bps: int) -> None:
        self._inner = inner
        self._cap = cap_bps
        inner.target_bitrate = min(inner.target_bitrate, cap_bps)

    @property
    def target_bitrate(self) -> int:
        return int(self._inner.target_bitrate)

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        self._inner.target_bitrate = min(bitrate, self._cap)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class _CappingGetEncoder:
    """Stands in for ``aiortc.rtcrtpsender.get_encoder``: video encoders created while a cap
    is set in the calling context come wrapped in ``_CappedEncoder``."""

    def __init__(self, wrapped: Callable[[RTCRtpCodecParameters], Any]) -> None:
        self.wrapped = wrapped

    def __call__(self, codec: RTCRtpCodecParameters) -> Any:
        encoder = self.wrapped(codec)
        cap = _cap_bps.get()
        if cap and hasattr(encoder, "target_bitrate") and codec.mimeType.lower().startswith("video/"):
            return _CappedEncoder(encoder, cap)
        return encoder


def _install_encoder_wrapper() -> None:
    # The sender looks the name up in its own module, which imports it from aiortc.codecs
    # without re-exporting it: reached through the module's namespace.
    namespace = vars(aiortc.rtcrtpsender)
    current = namespace["get_encoder"]
    if not isinstance(current, _CappingGetEncoder):
        namespace["get_encoder"] = _CappingGetEncoder(current)


@contextlib.contextmanager
def bitrate_cap(bps: int) -> Iterator[None]:
    """Video encoders created by tasks started inside this block stay at or under ``bps``."""
    _install_encoder_wrapper()
    token = _cap_bps.set(int(bps))
    try:
        yield
    finally:
        _cap_bps.reset(token)


# --- 3. peer connections and codecs -------------------------------------------------------

def new_peer_connection(ice_servers: Sequence[str]) -> RTCPeerConnection:
    """A peer connection with exactly the configured ICE servers (empty: no STUN at all)."""
    return RTCPeerConnection(RTCConfiguration(iceServers=[RTCIceServer(urls=url) for url in ice_servers]))


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
