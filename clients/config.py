"""``station.toml``: one frozen settings object for the agent, with command-line overrides.

Order (as the hub's settings): embedded defaults → strict decode of the file (an unknown key
is an error naming it) → overrides from the command line → validation. Relative paths
(token file, log file, a source file) are resolved against the config file's folder, so a
Windows service started from ``C:\\Windows\\System32`` still finds them.

Example::

    hub = "https://jaga.jemberkab.go.id"
    ca_file = ""                 # the hub's private CA (PEM); "" = the system's CAs
    station = "35.09.01.2001"
    token_file = "token.txt"
    source = "camera"            # test | camera | screen | a video file
    always_on = false
    log_file = "jaga-station.log"
    control_port = 47110         # 127.0.0.1 only: `jaga-station activity start "..."`
    questions_port = 47111       # 127.0.0.1 only: the citizens' questions page; 0 = off

    [video]                      # defaults suit a 1 Mbps uplink
    width = 640
    height = 360
    fps = 15
    bitrate_kbps = 500           # the best level; lower ones on a weak link (adaptive)
    codec = "H264"               # or "VP8" (WebRTC only: the hub's HLS remuxes H.264 only)
    adaptive = true              # false: always this picture, the encoder following REMB

    [audio]
    bitrate_kbps = 32            # Opus
    packet_ms = 60               # sound per packet: 20, 40 or 60

    [devices]                    # "" = the platform's default device
    camera = ""
    microphone = ""
    speaker = ""                 # talk-back output; "none" disables it

    [network]
    ice_servers = []             # no STUN unless listed
    host_addresses = []          # ICE host candidates; [] = every interface but loopback
"""

from __future__ import annotations

import dataclasses
import os
import ssl
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_origin, get_type_hints
from urllib.parse import urlsplit

DEFAULT_CONTROL_PORT = 47110
DEFAULT_QUESTIONS_PORT = 47111
SOURCES = ("test", "camera", "screen")


class StationConfigError(Exception):
    pass


@dataclass(frozen=True)
class VideoConfig:
    width: int = 640
    height: int = 360
    fps: int = 15
    bitrate_kbps: int = 500
    codec: str = "H264"  # "H264" | "VP8"; the hub's HLS packages H.264 only, a VP8 station is WebRTC-only
    adaptive: bool = True  # quality levels on weak links (clients/quality.py); false: always this picture


@dataclass(frozen=True)
class AudioConfig:
    enabled: bool = True
    tone_hz: int = 1000  # the test source's beep
    bitrate_kbps: int = 32  # Opus; aiortc's own 96 kbps would fill a 150 kbps uplink alone
    # sound per packet: 20, 40 or 60 ms. 60: a third of the packets of 20 (the hub's cost is per
    # packet; ≈ 13 kbps less header overhead on the uplink) for 40 ms more delay
    packet_ms: int = 60


@dataclass(frozen=True)
class DevicesConfig:
    camera: str = ""  # "" → /dev/video0 (v4l2), first dshow camera must be named on Windows
    microphone: str = ""  # "" → "default" (alsa / pulse)
    speaker: str = ""  # talk-back output; "" → platform default, "none" → off
    camera_retry_s: float = 30.0  # retry a missing camera this often


@dataclass(frozen=True)
class NetworkConfig:
    ice_servers: tuple[str, ...] = ()
    host_addresses: tuple[str, ...] = ()
    backoff_base_s: float = 2.0
    backoff_cap_s: float = 60.0
    stable_s: float = 30.0
    auth_retry_s: float = 600.0
    connect_timeout_s: float = 10.0
    media_connect_timeout_s: float = 20.0


@dataclass(frozen=True)
class StationConfig:
    hub: str = ""
    ca_file: str = ""  # PEM CA certificate(s) the hub's TLS certificate must chain to; "" → the system's CAs
    station: str = ""
    token_file: str = "token.txt"
    source: str = "camera"
    always_on: bool = False
    media: bool = True  # false: presence only (heartbeats, announcements), no WHIP
    thumbnail_s: float = 10.0
    log_file: str = ""  # "" → console only
    log_max_bytes: int = 5_000_000
    log_backups: int = 5
    status_s: float = 5.0  # status line refresh on a console
    control_port: int = DEFAULT_CONTROL_PORT  # 0 → no control socket
    questions_port: int = DEFAULT_QUESTIONS_PORT  # the questions page on 127.0.0.1; 0 → off
    video: VideoConfig = field(default_factory=VideoConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    devices: DevicesConfig = field(default_factory=DevicesConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    base_dir: str = "."

    def resolve(self, path: str) -> Path:
        candidate = Path(path).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    @property
    def token_path(self) -> Path:
        return self.resolve(self.token_file)

    def tls_context(self) -> ssl.SSLContext | None:
        """How ``https://``/``wss://`` to the hub is verified: a context trusting ``ca_file``
        only, or None (the libraries' default: the system's CAs) when it is unset. Read anew
        each time, so a renewed CA file counts from the next connection; StationConfigError
        when it cannot be read."""
        return load_ca(self.resolve(self.ca_file)) if self.ca_file else None

    @property
    def ws_url(self) -> str:
        parts = urlsplit(self.hub.rstrip("/"))
        scheme = "wss" if parts.scheme == "https" else "ws"
        return f"{scheme}://{parts.netloc}{parts.path}/ws/station"

    def http_url(self, path: str) -> str:
        return f"{self.hub.rstrip('/')}{path}"

    def read_token(self) -> str:
        """The token file's first non-empty line; StationConfigError says what to do if absent."""
        path = self.token_path
        try:
            text = path.read_text(encoding="utf-8-sig")
        except OSError as exc:
            raise StationConfigError(f"cannot read token file {path}: {exc.strerror or exc}") from None
        token = next((line.strip() for line in text.splitlines() if line.strip()), "")
        if not token:
            raise StationConfigError(f"token file {path} is empty")
        return token

    def replace(self, **changes: Any) -> StationConfig:
        return dataclasses.replace(self, **changes)


def load_ca(path: Path) -> ssl.SSLContext:
    """A client context that verifies servers (certificate chain and host name) against the
    CA certificates in the PEM file ``path`` and nothing else."""
    try:
        return ssl.create_default_context(cafile=str(path))
    except ssl.SSLError as exc:  # before OSError: SSLError is one
        raise StationConfigError(f"ca_file {path} holds no usable PEM certificate ({exc.reason or exc})") from None
    except OSError as exc:
        raise StationConfigError(f"cannot read ca_file {path}: {exc.strerror or exc}") from None


def default_config_path() -> Path:
    return Path(os.environ.get("JAGA_STATION_CONFIG", "station.toml"))


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> StationConfig:
    """Read ``station.toml`` (a missing *default* file means all defaults), apply overrides."""
    explicit = path is not None
    config_path = Path(path) if path is not None else default_config_path()
    raw: dict[str, Any] = {}
    base_dir = "."
    if config_path.exists():
        try:
            raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise StationConfigError(f"{config_path}: {exc}") from None
        base_dir = str(config_path.resolve().parent)
    elif explicit:
        raise StationConfigError(f"config file not found: {config_path}")
    config = config_from_mapping(raw, base_dir)
    if overrides:
        config = validate(config.replace(**{k: v for k, v in overrides.items() if v is not None}))
    return config


def config_from_mapping(raw: dict[str, Any], base_dir: str = ".") -> StationConfig:
    values = _decode(StationConfig, raw, "")
    return validate(StationConfig(**values, base_dir=base_dir))


def _decode(cls: type, raw: dict[str, Any], where: str) -> dict[str, Any]:
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{where}{key}"
        if key not in hints or key == "base_dir":
            raise StationConfigError(f"unknown config key {name}")
        hint = hints[key]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a section: the class, not an instance
            if not isinstance(value, dict):
                raise StationConfigError(f"[{name}] must be a table")
            values[key] = hint(**_decode(hint, value, f"{name}."))
        else:
            values[key] = _coerce(hint, value, name)
    return values


def _coerce(hint: Any, value: Any, where: str) -> Any:
    if get_origin(hint) is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise StationConfigError(f"{where} must be a list of strings")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise StationConfigError(f"{where} must be {hint.__name__}, not {type(value).__name__}")
    return value


def validate(config: StationConfig) -> StationConfig:
    if config.hub:
        parts = urlsplit(config.hub)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise StationConfigError(f'hub must be an http:// or https:// URL, not {config.hub!r}')
    if config.ca_file:
        if config.hub and urlsplit(config.hub).scheme != "https":
            raise StationConfigError(f"ca_file is set but hub is not https:// ({config.hub}): "
                                     "the CA verifies the hub's TLS certificate")
        config.tls_context()  # the file must be there and hold a certificate now, not at the first connection
    video = config.video
    if video.codec.upper() not in ("VP8", "H264"):
        raise StationConfigError(f'video.codec must be "VP8" or "H264", not {video.codec!r}')
    if not (16 <= video.width <= 1920 and 16 <= video.height <= 1080) or video.width % 2 or video.height % 2:
        raise StationConfigError("video.width/height must be even and at most 1920x1080")
    if not 1 <= video.fps <= 30:
        raise StationConfigError("video.fps must be 1..30")
    if not 100 <= video.bitrate_kbps <= 4000:
        raise StationConfigError("video.bitrate_kbps must be 100..4000")
    if not 6 <= config.audio.bitrate_kbps <= 128:
        raise StationConfigError("audio.bitrate_kbps must be 6..128")
    if config.audio.packet_ms not in (20, 40, 60):
        raise StationConfigError("audio.packet_ms must be 20, 40 or 60")
    if config.thumbnail_s <= 0:
        raise StationConfigError("thumbnail_s must be > 0")
    if not 0 <= config.control_port <= 65535:
        raise StationConfigError("control_port out of range")
    if not 0 <= config.questions_port <= 65535:
        raise StationConfigError("questions_port out of range")
    if config.questions_port and config.questions_port == config.control_port:
        raise StationConfigError("questions_port and control_port must differ")
    net = config.network
    for server in net.ice_servers:
        if not server.startswith(("stun:", "turn:", "turns:")):
            raise StationConfigError(f"network.ice_servers entry must be a stun:/turn: URL, not {server!r}")
    if net.backoff_base_s <= 0 or net.backoff_cap_s < net.backoff_base_s:
        raise StationConfigError("network.backoff_cap_s must be >= backoff_base_s > 0")
    return config


def require_identity(config: StationConfig) -> None:
    """The agent and ``check`` need a hub and a station id; say which is missing."""
    missing = [name for name in ("hub", "station") if not getattr(config, name)]
    if missing:
        raise StationConfigError(f"missing {' and '.join(missing)}: set it in station.toml or pass --"
                                 + " --".join(missing))


def source_kind(source: str) -> str:
    """``test``, ``camera``, ``screen`` or ``file`` (anything else is a path)."""
    return source if source in SOURCES else "file"
