"""``jaga-station check``: what works on this PC and what to fix, as one table.

Each check is a small coroutine returning a :class:`Row` (``ok``, ``warn``, ``fail`` or
``skip``). The token check is a real ``hello``: it proves the hub accepts this station's
token and gives the clock skew (the hub's ``server_time`` against the midpoint of the round
trip). The agent does not need to be stopped: the check's connection replaces the running
agent's for a moment (it reconnects by itself), which the table says.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import av
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake
from websockets.typing import Subprotocol

from clients import __version__, talkback, whip
from clients.config import StationConfig, StationConfigError, source_kind
from clients.hours import OfficeHours, ServerClock
from clients.presence import WS_MAX_SIZE
from clients.quality import ladder
from clients.sources import DeviceSpec, audio_spec, open_player, video_spec
from jaga import wire

SKEW_WARN_S = 60.0


@dataclass(frozen=True)
class Row:
    name: str
    status: str  # ok | warn | fail | skip
    detail: str
    fix: str = ""


def render_table(rows: list[Row]) -> str:
    marks = {"ok": "OK", "warn": "WARN", "fail": "FAIL", "skip": "-"}
    width = max(len(r.name) for r in rows)
    lines = [f"{'check'.ljust(width)}  {'result':6}  detail", f"{'-' * width}  {'-' * 6}  {'-' * 40}"]
    for row in rows:
        lines.append(f"{row.name.ljust(width)}  {marks[row.status]:6}  {row.detail}")
        if row.fix:
            lines.append(f"{''.ljust(width)}  {'':6}  → {row.fix}")
    return "\n".join(lines)


async def check_device(name: str, spec: DeviceSpec | None, kind: str, why_skip: str) -> Row:
    if spec is None:
        return Row(name, "skip", why_skip)

    def probe() -> str:
        player = open_player(spec, kind)
        track = getattr(player, kind)
        try:
            return spec.describe()
        finally:
            track.stop()

    try:
        described = await asyncio.wait_for(asyncio.to_thread(probe), 10)
        return Row(name, "ok", described)
    except Exception as exc:
        fix = ("plug in the camera, or set [devices] camera in station.toml" if kind == "video"
               else "plug in a microphone, or set [devices] microphone")
        return Row(name, "fail", f"{spec.describe()}: {exc}"[:160], fix)


async def check_hub(config: StationConfig) -> Row:
    started = time.monotonic()
    try:
        status, _ = await whip.get(config.http_url("/healthz"), timeout=config.network.connect_timeout_s,
                                   context=config.tls_context())
    except whip.Unreachable as exc:
        return Row("hub reachable", "fail", str(exc)[:160], "check the network and the hub URL in station.toml")
    except StationConfigError as exc:  # ca_file unreadable since the config was loaded
        return Row("hub reachable", "fail", str(exc)[:160], "check ca_file in station.toml")
    took = (time.monotonic() - started) * 1000
    if status != 200:
        return Row("hub reachable", "warn", f"/healthz answered {status} ({took:.0f} ms)")
    return Row("hub reachable", "ok", f"{config.hub} ({took:.0f} ms)")


async def check_token(config: StationConfig) -> tuple[list[Row], dict[str, Any] | None]:
    try:
        token = config.read_token()
    except StationConfigError as exc:
        return [Row("token", "fail", str(exc), f"put the token from `jaga-hub stations token {config.station}` there"),
                Row("clock", "skip", "needs a working token")], None
    timeout = config.network.connect_timeout_s
    code: int | None = None
    reply: dict[str, Any] | None = None
    try:
        tls = config.tls_context()  # the agent's own trust (ca_file), as its presence socket uses it
    except StationConfigError as exc:
        return [Row("token", "fail", str(exc)[:160], "check ca_file in station.toml"),
                Row("clock", "skip", "needs the hub")], None
    tls_options: dict[str, Any] = {"ssl": tls} if tls is not None else {}  # ws:// refuses any ssl=
    try:
        async with connect(config.ws_url, subprotocols=[Subprotocol(wire.MSGPACK)], open_timeout=timeout,
                           max_size=WS_MAX_SIZE, user_agent_header=f"jaga-station/{__version__} check",
                           **tls_options) as ws:
            sent_at = time.time()
            await ws.send(wire.encode_msgpack({"t": "hello", "station": config.station, "token": token,
                                               "agent": "jaga-station check", "version": __version__}))
            reply = wire.decode_msgpack(await asyncio.wait_for(ws.recv(), timeout))
            received_at = time.time()
            if reply.get("t") != "welcome":
                await asyncio.wait_for(ws.wait_closed(), timeout)
                code = ws.close_code
    except ConnectionClosed as exc:
        code = exc.rcvd.code if exc.rcvd else None
    except (TimeoutError, OSError, InvalidHandshake) as exc:
        return [Row("token", "fail", f"{config.ws_url}: {exc}"[:160], "check the hub URL and network"),
                Row("clock", "skip", "")], None
    if reply is None or reply.get("t") != "welcome":
        if code == 4401:
            return [Row("token", "fail", f"rejected for station {config.station} (4401)",
                        f"ask the Pendopo admin for a new token and write it into {config.token_path}"),
                    Row("clock", "skip", "needs a working token")], None
        return [Row("token", "fail", f"connection closed ({code})"), Row("clock", "skip", "")], None
    clock = ServerClock()
    skew = -clock.update(float(reply["server_time"]), sent_at, received_at)
    rows = [Row("token", "ok", f"accepted for {config.station} (hello → welcome)")]
    if abs(skew) > SKEW_WARN_S:
        rows.append(Row("clock", "warn", f"this PC is {skew:+.0f} s off the hub",
                        "sync the PC clock (the agent follows the hub's time anyway)"))
    else:
        rows.append(Row("clock", "ok", f"{skew:+.1f} s from the hub"))
    return rows, reply


def schedule_row(welcome: dict[str, Any] | None, always_on: bool) -> Row:
    if welcome is None:
        return Row("office hours", "skip", "needs a working token")
    try:
        hours = OfficeHours.from_welcome(welcome.get("schedule") or {})
    except ValueError as exc:
        return Row("office hours", "fail", str(exc))
    now = float(welcome["server_time"])
    on = "on air now" if hours.on_air(now) or always_on else "off air now"
    return Row("office hours", "ok", f"{hours.describe_today(now)} ({on}{', always on' if always_on else ''})")


def speaker_row(config: StationConfig) -> Row:
    spec = talkback.output_spec(config.devices.speaker)
    if spec is None:
        return Row("speaker", "warn", "no audio output for talk-back on this platform/config",
                   "the Pendopo's voice is received but not played")
    try:
        out = talkback.AudioOut(*spec)
        out.close()
        return Row("speaker", "ok", f"{spec[0]}:{spec[1]}")
    except Exception as exc:
        return Row("speaker", "warn", f"{spec[0]}:{spec[1]}: {exc}"[:160], "set [devices] speaker in station.toml")


async def run_checks(config: StationConfig) -> list[Row]:
    kind = source_kind(config.source)
    rows = [Row("config", "ok", f"station {config.station}, hub {config.hub}, source {config.source}")]
    rows.append(await check_hub(config))
    token_rows, welcome = await check_token(config)
    rows += token_rows
    rows.append(schedule_row(welcome, config.always_on))
    why = f"source is {config.source!r}"
    rows.append(await check_device("camera" if kind != "screen" else "screen", video_spec(config), "video", why))
    rows.append(await check_device("microphone", audio_spec(config), "audio", why if config.audio.enabled
                                   else "audio disabled"))
    rows.append(await asyncio.to_thread(speaker_row, config))
    rows.append(Row("video", "ok", f"{config.video.width}x{config.video.height}@{config.video.fps} "
                                   f"{config.video.codec} ≤{config.video.bitrate_kbps} kbps; PyAV {av.__version__}"))
    rows.append(quality_row(config))
    return rows


def quality_row(config: StationConfig) -> Row:
    """The levels a weak uplink steps down through (clients/quality.py)."""
    video = config.video
    if not video.adaptive:
        return Row("quality", "ok", "fixed: video.adaptive = false")
    lower = ladder(video.width, video.height, video.fps, video.bitrate_kbps * 1000)[1:]
    return Row("quality", "ok", "on a weak uplink: " + ", ".join(level.describe() for level in lower)
               + f"; Opus {config.audio.bitrate_kbps} kbps")


def exit_code(rows: list[Row]) -> int:
    return 1 if any(r.status == "fail" for r in rows) else 0
