"""Every reach into aiortc / aioice beyond their plain public API, in one small module.

1. ``host_addresses``: aioice picks host candidates in ``aioice.ice.get_host_addresses``
   and always leaves 127.0.0.1 out. We wrap that function once; the wrapper answers with
   the configured addresses only inside the context that set them (a ``ContextVar``), and
   otherwise defers to whatever it wrapped (aioice's own, or the hub's wrapper when both run
   in one process, as in tests). Wrap ``setLocalDescription`` in it: aiortc gathers there.
2. ``bitrate_cap``: aiortc's encoders follow the receiver's REMB estimate up to 1.5 Mbps
   (VP8) or 3 Mbps (H.264). A village uplink of 1 Mbps needs a hard ceiling. aiortc builds
   the encoder lazily in ``RTCRtpSender`` through the module-level ``get_encoder``; our
   wrapper clamps ``target_bitrate`` when a cap is set in the calling context. The sender's
   tasks are created inside ``setRemoteDescription``, so wrap that call.
3. ``new_peer_connection``: always passes the configured ICE servers explicitly; aiortc
   falls back to Google's STUN server when the list is left out.

Pinned against aiortc 1.16 / aioice 0.13 (``tests/clients/test_config_and_media.py``).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import Iterator, Sequence
from typing import Any

import aioice.ice
import aiortc.rtcrtpsender
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCRtpSender

_addresses: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar("jaga_station_hosts", default=())
_cap_bps: contextvars.ContextVar[int] = contextvars.ContextVar("jaga_station_bitrate_cap", default=0)


# --- 1. host addresses --------------------------------------------------------------------

def _install_host_wrapper() -> None:
    current = aioice.ice.get_host_addresses
    if getattr(current, "jaga_station_wrapper", False):
        return

    @functools.wraps(current)  # keeps attributes other wrappers look for (the hub's, in tests)
    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        configured = _addresses.get()
        if configured:
            return [a for a in configured if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]
        return current(use_ipv4, use_ipv6)

    get_host_addresses.jaga_station_wrapper = True  # type: ignore[attr-defined]
    aioice.ice.get_host_addresses = get_host_addresses


@contextlib.contextmanager
def host_addresses(addresses: Sequence[str]) -> Iterator[None]:
    """Inside this block ICE gathers exactly ``addresses``; empty → aioice decides."""
    _install_host_wrapper()
    token = _addresses.set(tuple(addresses))
    try:
        yield
    finally:
        _addresses.reset(token)


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


def _install_encoder_wrapper() -> None:
    current = aiortc.rtcrtpsender.get_encoder
    if getattr(current, "jaga_station_wrapper", False):
        return

    def get_encoder(codec: Any) -> Any:
        encoder = current(codec)
        cap = _cap_bps.get()
        if cap and hasattr(encoder, "target_bitrate") and codec.mimeType.lower().startswith("video/"):
            return _CappedEncoder(encoder, cap)
        return encoder

    get_encoder.jaga_station_wrapper = True  # type: ignore[attr-defined]
    aiortc.rtcrtpsender.get_encoder = get_encoder  # type: ignore[assignment]


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


def prefer_codec(transceiver: Any, kind: str, mime: str) -> None:
    """Offer ``mime`` (e.g. "video/VP8") first, keeping RTX; others stay as fallbacks."""
    codecs = RTCRtpSender.getCapabilities(kind).codecs
    wanted = [c for c in codecs if c.mimeType.lower() == mime.lower()]
    if kind == "video" and mime.lower() == "video/h264":
        # aiortc packetizes only packetization-mode=1; offer those H.264 profiles only.
        wanted = [c for c in wanted if c.parameters.get("packetization-mode") == "1"] or wanted
    rest = [c for c in codecs if c not in wanted]
    if wanted:
        transceiver.setCodecPreferences(wanted + rest)
