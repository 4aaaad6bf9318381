"""Talk-back: while the Pendopo talks (``talk.start`` … ``talk.stop``), play its audio.

The Pendopo wall publishes as station ``pendopo`` over WHIP; the agent views it over WHEP
(audio only) with its own station token, and plays the Opus audio that aiortc decodes on
an output device through PyAV (``alsa``/``pulse`` on Linux, ``audiotoolbox`` on macOS).
PyAV has no audio *output* device on Windows builds; there, and wherever the device does
not open, the agent logs it once per talk and still keeps the WHEP session, so the hub sees
the station listening.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

import av
from aiortc import RTCIceServer
from aiortc.mediastreams import MediaStreamError

from clients import publisher
from clients.config import StationConfig

log = logging.getLogger("jaga.station.talk")

PENDOPO = "pendopo"


def output_spec(speaker: str) -> tuple[str, str] | None:
    """(format, device) for PyAV's output muxer, or None when there is none to use."""
    if speaker == "none":
        return None
    if ":" in speaker and speaker.split(":", 1)[0] in ("alsa", "pulse", "audiotoolbox"):
        fmt, device = speaker.split(":", 1)
        return fmt, device
    if sys.platform.startswith("linux"):
        return "alsa", speaker or "default"
    if sys.platform == "darwin":
        return "audiotoolbox", speaker or "0"
    return None


class AudioOut:
    """A PyAV output device fed with decoded frames (s16, stereo, 48 kHz)."""

    def __init__(self, fmt: str, device: str) -> None:
        self.container = av.open(device, "w", format=fmt)
        self.stream = self.container.add_stream("pcm_s16le", rate=48000, layout="stereo")
        self.resampler = av.AudioResampler(format="s16", layout="stereo", rate=48000)
        try:
            self.container.start_encoding()  # opens the device now, so a missing one fails here
        except BaseException:
            self.container.close()
            raise

    def write(self, frame: av.AudioFrame) -> None:
        frame.pts = None
        for out in self.resampler.resample(frame):
            for packet in self.stream.encode(out):
                self.container.mux(packet)

    def close(self) -> None:
        try:
            self.container.close()
        except Exception:
            log.debug("closing the audio output failed", exc_info=True)


async def play_pendopo(config: StationConfig, token: str, ice_servers: Sequence[str | RTCIceServer] | None = None
                       ) -> None:
    """Run until cancelled (``talk.stop``) or the Pendopo stops publishing. ``ice_servers``:
    the session's (clients/ice.py: the hub's TURN too); default ``network.ice_servers``."""
    session, tracks = await publisher.view(config, PENDOPO, token, ("audio",), ice_servers)
    out: AudioOut | None = None
    try:
        spec = output_spec(config.devices.speaker)
        if spec is None:
            log.warning("talk-back: no audio output on this platform/config (devices.speaker=%r); the "
                        "Pendopo's voice is received but not played", config.devices.speaker)
        else:
            try:
                out = await asyncio.to_thread(AudioOut, *spec)
                log.info("talk-back: playing the Pendopo on %s:%s", *spec)
            except Exception as exc:
                log.warning("talk-back: audio output %s:%s did not open (%s); the Pendopo's voice is "
                            "received but not played", spec[0], spec[1], exc)
        track: Any = tracks.get("audio")
        if track is None:
            log.warning("talk-back: the Pendopo sends no audio")
            await session.ended.wait()
            return
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                log.info("talk-back: the Pendopo stopped sending")
                return
            if out is not None:
                try:
                    out.write(frame)
                except Exception as exc:
                    log.warning("talk-back: audio output failed (%s); not playing any more", exc)
                    out.close()
                    out = None
    finally:
        if out is not None:
            out.close()
        await session.close()
