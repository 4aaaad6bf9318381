"""One typed, frozen settings object, loaded from ``config.toml``.

Order of work (as in LiveKit's config): embedded defaults → strict decode of the TOML file
(an unknown key is an error naming it) → validation. The result is passed explicitly to
whatever needs it; nothing reads configuration from a global.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from hub.core.announce import public_mapping
from hub.core.proxies import TrustedProxies
from hub.core.turn import turn_url_problem
from hub.errors import ConfigError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
STATION_KINDS = ("opd", "kecamatan", "kelurahan", "desa")


@dataclass(frozen=True)
class HubSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""  # how browsers and other nodes reach this node; derived when empty
    data_dir: str = "var"
    backend: str = "memory"  # "memory" | "redis"
    redis_url: str = "redis://127.0.0.1:6379/0"
    node_id: str = ""  # derived from host:port when empty
    node_ttl_s: float = 10.0
    session_secret: str = ""  # signs operator cookies; generated and kept under data_dir if empty
    secure_cookies: bool = False  # set true when the hub is served over HTTPS
    checkpoint_s: float = 5.0
    demo_stations: int = 4  # `make run` starts this many test-pattern agents beside the hub (0: none)
    # Reverse proxies whose X-Forwarded-For/-Proto are believed (addresses or CIDRs). Empty:
    # nobody's, not even 127.0.0.1's (a proxy on the same host is listed explicitly).
    trusted_proxies: tuple[str, ...] = ()
    metrics_token: str = ""  # Bearer token a scraper may present for /metrics (else operators only)
    # `hub serve` freezes the survivors of full garbage collections (hub/gcpolicy.py) and thaws
    # when no station publishes, or once the Python heap holds this many blocks (and twice the last thaw's)
    gc_freeze: bool = True
    gc_thaw_blocks: int = 20_000_000


@dataclass(frozen=True)
class StationsSettings:
    registry: str = "data/jember_stations.csv"


@dataclass(frozen=True)
class PresenceSettings:
    heartbeat_s: float = 5.0
    timeout_s: float = 30.0
    hello_timeout_s: float = 10.0
    max_messages_per_s: float = 20.0  # per station socket, averaged over a burst
    burst: int = 40
    watch_history: int = 2048  # deltas kept for `?since=` resume
    watcher_backlog: int = 256  # frames queued for one slow watcher before it is resynced
    thumbnail_batch_s: float = 1.0  # new thumbnails are announced to watchers together, this often
    max_watchers: int = 20_000  # watch sockets on this node; beyond → 1013
    watchers_per_address: int = 100  # watch sockets per client address on this node; beyond → 4429
    watch_messages_per_s: float = 2.0  # what one watch socket may send (pings), sustained …
    watch_burst: int = 10  # … and at once; beyond → 4429


@dataclass(frozen=True)
class ScheduleOverride:
    workdays: tuple[str, ...] | None = None
    start: str | None = None
    end: str | None = None
    grace_minutes: int | None = None


@dataclass(frozen=True)
class ScheduleSettings:
    timezone: str = "Asia/Jakarta"
    workdays: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri")
    start: str = "08:00"
    end: str = "15:00"
    grace_minutes: int = 15
    full_coverage: float = 0.8  # live share of the window that counts as a full day (hadir)
    national_holidays: bool = True
    extra_holidays: tuple[str, ...] = ()  # ISO dates, e.g. "2026-12-24"
    kinds: dict[str, ScheduleOverride] = field(default_factory=dict)
    stations: dict[str, ScheduleOverride] = field(default_factory=dict)


@dataclass(frozen=True)
class MediaSettings:
    ice_servers: tuple[str, ...] = ()  # e.g. "stun:stun.example.org:3478"; empty: no STUN
    host_addresses: tuple[str, ...] = ()  # addresses to bind and announce; tests use "127.0.0.1"
    public_addresses: tuple[str, ...] = ()  # announced instead of host_addresses (1:1 NAT); empty: as bound
    udp_port: int = 7882  # one UDP port for every session's media; 0: per-session sockets
    udp_ports: str = ""  # with udp_port = 0: "40000-40100", each session's socket in this range; empty: ephemeral
    send_batch: bool = True  # on the shared port: a relayed packet to all its viewers in one sendmmsg (Linux)
    codecs: tuple[str, ...] = ("VP8", "H264", "opus")
    max_viewers_per_station: int = 100
    max_viewers_per_node: int = 1000
    max_sessions_per_address: int = 20
    # the media port dropped datagrams for 3 s in a row (the hub is not keeping up): new public
    # viewers get 503 "overloaded" until this long after (hub.media.overload); operators always
    # get in; 0: off
    shed_viewers_s: float = 10.0
    # new public viewers' joins spaced out, at most this many a second (hub.media.overload): an
    # offer waits for its turn up to public_join_wait_s, past that 503 "busy"; 0: no pacing
    public_joins_per_s: float = 20.0
    public_join_wait_s: float = 10.0
    max_sdp_bytes: int = 20_000
    thumbnail_s: float = 10.0
    viewer_grace_s: float = 60.0  # a publisher gone: its viewers wait this long for the next one
    stall_s: float = 3.0  # no RTP for this long: not live (reconnecting, media_stalled); no video: "audio"


@dataclass(frozen=True)
class TurnSettings:
    """TURN for offices whose network drops UDP (docs/operations.md "TURN"): coturn with
    ``use-auth-secret``; the hub mints each client's credentials (hub.core.turn)."""

    urls: tuple[str, ...] = ()  # e.g. "turn:turn.example.go.id:3478?transport=tcp"; empty: no TURN
    secret: str = ""  # coturn's static-auth-secret
    ttl_s: float = 3600.0  # how long minted credentials allow new allocations


@dataclass(frozen=True)
class AuthSettings:
    login_attempts: int = 5  # attempts per username and client address before a lock-out
    lockout_s: float = 300.0  # how long that lasts, and the window attempts are counted in
    user_attempts: int = 20  # attempts per username from all addresses before the back-off
    user_backoff_max_s: float = 60.0  # the back-off doubles per further attempt up to this
    session_hours: float = 12.0
    password_workers: int = 2  # threads hashing passwords (scrypt: 128 MiB and ~0.4 s each)
    password_queue: int = 8  # logins waiting for one of them; beyond → 503 + Retry-After


@dataclass(frozen=True)
class QuestionsSettings:
    """Citizens' questions on watch pages (docs/questions.md)."""

    enabled: bool = True
    difficulty: int = 16  # proof-of-work bits (docs/questions.md: 0.4 s of WebCrypto on a desktop)
    challenge_ttl_s: float = 300.0
    per_address_per_min: int = 6  # carriers put many phones behind one address: not too low
    per_device_per_min: int = 2
    slow_mode_s: float = 0.0  # default per station; operators change it per station
    duplicate_window_s: float = 600.0
    ban_address_s: float = 600.0  # a ban holds the address briefly: addresses are shared
    reserved_names: tuple[str, ...] = ("bupati", "wakil bupati", "admin", "administrator", "pendopo",
                                       "operator", "moderator", "pemkab", "camat", "kepala desa",
                                       "lurah")
    held_words: tuple[str, ...] = ()
    station_moderation: tuple[str, ...] = ()  # stations whose own token may moderate their questions
    max_pending: int = 500  # per station; beyond → 503 queue_full


@dataclass(frozen=True)
class RecordingSettings:
    """Recording every kegiatan by remux, and the day's thumbnails (docs/recordings.md)."""

    enabled: bool = True
    dir: str = "var/recordings"  # relative to the config file's folder
    kinds: tuple[str, ...] = ("opd", "kecamatan", "desa", "kelurahan")  # whose activities are recorded
    retention_days: float = 365.0
    max_bytes: int = 0  # total kept; 0 = no limit; beyond, the oldest are deleted
    min_free_bytes: int = 2_000_000_000  # below this free space recording stops (alarm)
    resume_s: float = 120.0  # a publisher or hub back within this continues the same recording
    jejak_minutes: float = 5.0  # thumbnail evidence interval; 0 = off


@dataclass(frozen=True)
class HlsSettings:
    """HLS and low-latency HLS by remux of public H.264 stations (docs/operations.md "HLS")."""

    enabled: bool = True
    part_s: float = 0.4  # LL-HLS part target: 6 frames at 15 fps, 4 at 10 (a 2 s segment in equal parts)
    segment_s: float = 2.0  # segment target; the publisher is asked for a keyframe at this cadence
    keep_segments: int = 6  # complete segments listed (and kept in memory) per station
    idle_s: float = 30.0  # packaging stops after this long without a request
    max_stations: int = 64  # stations packaged at once on this node; beyond → 503
    audio_bitrate: int = 48000  # AAC-LC from the publisher's Opus
    audio_channels: int = 1  # office microphones are mono (WebRTC's Opus is stereo all the same); 2: stereo
    remote_cache_bytes: int = 64_000_000  # parts fetched from the owning node, kept for other viewers here


@dataclass(frozen=True)
class Settings:
    hub: HubSettings = field(default_factory=HubSettings)
    stations: StationsSettings = field(default_factory=StationsSettings)
    presence: PresenceSettings = field(default_factory=PresenceSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    media: MediaSettings = field(default_factory=MediaSettings)
    turn: TurnSettings = field(default_factory=TurnSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    questions: QuestionsSettings = field(default_factory=QuestionsSettings)
    recording: RecordingSettings = field(default_factory=RecordingSettings)
    hls: HlsSettings = field(default_factory=HlsSettings)
    base_dir: str = "."  # the config file's folder: relative paths are resolved against it

    @property
    def data_path(self) -> Path:
        return self.resolve(self.hub.data_dir)

    @property
    def recording_path(self) -> Path:
        return self.resolve(self.recording.dir)

    @property
    def registry_path(self) -> Path:
        return self.resolve(self.stations.registry)

    def resolve(self, path: str) -> Path:
        candidate = Path(path)
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    @property
    def public_url(self) -> str:
        return self.hub.public_url or f"http://{self.hub.host}:{self.hub.port}"

    @property
    def node_id(self) -> str:
        return self.hub.node_id or f"{self.hub.host}:{self.hub.port}"

    def replace(self, **sections: Any) -> Settings:
        """A copy with whole sections or single keys replaced: ``replace(hub={"port": 0})``."""
        changes: dict[str, Any] = {}
        for name, value in sections.items():
            current = getattr(self, name)
            if isinstance(value, dict) and dataclasses.is_dataclass(current) and not isinstance(current, type):
                value = dataclasses.replace(current, **value)
            changes[name] = value
        return dataclasses.replace(self, **changes)


def default_config_path() -> Path:
    return Path(os.environ.get("JAGA_CONFIG", "config.toml"))


def load_settings(path: str | Path | None = None) -> Settings:
    """Read a TOML file into validated settings; a missing default file means all defaults."""
    explicit = path is not None
    config_path = Path(path) if path is not None else default_config_path()
    if not config_path.exists():
        if explicit:
            raise ConfigError(f"config file not found: {config_path}")
        return validate(Settings())
    try:
        raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    settings = settings_from_mapping(raw, base_dir=str(config_path.resolve().parent))
    return settings


def settings_from_mapping(raw: dict[str, Any], base_dir: str = ".") -> Settings:
    sections: dict[str, Any] = {"base_dir": base_dir}
    hints = get_type_hints(Settings)
    for name, value in raw.items():
        if name not in hints or name == "base_dir":
            raise ConfigError(f"unknown config section [{name}]")
        if not isinstance(value, dict):
            raise ConfigError(f"[{name}] must be a table")
        sections[name] = _decode(hints[name], value, name)
    return validate(Settings(**sections))


def _decode(cls: type, raw: dict[str, Any], where: str) -> Any:
    hints = get_type_hints(cls)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in hints:
            raise ConfigError(f"unknown config key {where}.{key}")
        values[key] = _coerce(hints[key], value, f"{where}.{key}")
    return cls(**values)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = get_origin(hint)
    args = get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):  # a section: the class, not an instance
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table")
        return _decode(hint, value, where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table")
        return {str(k): _coerce(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list")
        return tuple(_coerce(args[0], item, where) for item in value)
    if type(None) in args:  # Optional[X]
        inner = next(a for a in args if a is not type(None))
        return None if value is None else _coerce(inner, value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (str, int, float, bool) and (
        not isinstance(value, hint) or (hint is int and isinstance(value, bool))
    ):
        raise ConfigError(f"{where} must be {hint.__name__}, not {type(value).__name__}")
    return value


def parse_clock(text: str, where: str) -> dt.time:
    try:
        hours, minutes = text.split(":")
        return dt.time(int(hours), int(minutes))
    except ValueError:
        raise ConfigError(f"{where} must be HH:MM, not {text!r}") from None


def validate(settings: Settings) -> Settings:
    hub = settings.hub
    if hub.backend not in ("memory", "redis"):
        raise ConfigError(f'hub.backend must be "memory" or "redis", not {hub.backend!r}')
    if not 0 <= hub.port <= 65535:
        raise ConfigError(f"hub.port out of range: {hub.port}")
    for entry in hub.trusted_proxies:
        try:
            TrustedProxies([entry])
        except ValueError as exc:
            raise ConfigError(f"hub.trusted_proxies: {exc}") from None
    if hub.demo_stations < 0:
        raise ConfigError(f"hub.demo_stations must be 0 or more, not {hub.demo_stations}")
    if hub.gc_thaw_blocks < 1:
        raise ConfigError(f"hub.gc_thaw_blocks must be 1 or more, not {hub.gc_thaw_blocks}")
    presence = settings.presence
    if presence.heartbeat_s <= 0 or presence.timeout_s <= presence.heartbeat_s:
        raise ConfigError("presence.timeout_s must be greater than presence.heartbeat_s > 0")
    for key in ("max_watchers", "watchers_per_address", "watch_burst"):
        if getattr(presence, key) < 1:
            raise ConfigError(f"presence.{key} must be at least 1")
    if not 0 < presence.thumbnail_batch_s <= 10:
        raise ConfigError("presence.thumbnail_batch_s must be more than 0 and at most 10")
    if presence.watch_messages_per_s <= 0:
        raise ConfigError("presence.watch_messages_per_s must be greater than 0")
    _validate_schedule(settings.schedule)
    auth = settings.auth
    if auth.login_attempts < 1 or auth.password_workers < 1 or auth.password_queue < 0:
        raise ConfigError("auth.login_attempts and auth.password_workers must be at least 1, "
                          "auth.password_queue at least 0")
    if auth.user_attempts < 2 * auth.login_attempts:
        # One address may count up to 2 × login_attempts - 1 in a window (a lock-out straddling
        # two windows); below that, one guesser alone could slow the operator down everywhere.
        raise ConfigError("auth.user_attempts must be at least twice auth.login_attempts")
    _validate_questions(settings.questions)
    _validate_recording(settings.recording)
    _validate_turn(settings.turn)
    _validate_hls(settings.hls)
    media = settings.media
    if not 0 <= media.udp_port <= 65535:
        raise ConfigError(f"media.udp_port must be a port number (0: per-session ports), not {media.udp_port}")
    if media.udp_ports:
        low, _, high = media.udp_ports.partition("-")
        if not (low.isdigit() and high.isdigit() and 0 < int(low) <= int(high) <= 65535):
            raise ConfigError(f'media.udp_ports must look like "40000-40100", not {media.udp_ports!r}')
        if media.udp_port:
            raise ConfigError("media.udp_ports is for per-session ports: set media.udp_port = 0 to use it")
    if media.public_joins_per_s < 0 or media.public_join_wait_s < 0:
        raise ConfigError("media.public_joins_per_s and media.public_join_wait_s must be 0 or more")
    for server in media.ice_servers:
        if not server.startswith(("stun:", "turn:", "turns:")):
            raise ConfigError(f"media.ice_servers entry must be a stun:/turn: URL, not {server!r}")
    try:
        public_mapping(media.host_addresses, media.public_addresses)
    except ValueError as exc:
        raise ConfigError(f"media.public_addresses: {exc}") from None
    return settings


def _validate_turn(turn: TurnSettings) -> None:
    for url in turn.urls:
        problem = turn_url_problem(url)
        if problem:
            raise ConfigError(f"turn.urls: {problem}")
    if turn.urls and not turn.secret:
        raise ConfigError("turn.secret is required with turn.urls (coturn's static-auth-secret)")
    if turn.ttl_s <= 0:
        raise ConfigError("turn.ttl_s must be greater than 0")


def _validate_questions(questions: QuestionsSettings) -> None:
    if not 0 <= questions.difficulty <= 32:
        raise ConfigError("questions.difficulty must be between 0 and 32 bits")
    for key in ("per_address_per_min", "per_device_per_min", "max_pending"):
        if getattr(questions, key) < 1:
            raise ConfigError(f"questions.{key} must be at least 1")
    if questions.challenge_ttl_s <= 0:
        raise ConfigError("questions.challenge_ttl_s must be greater than 0")
    for key in ("slow_mode_s", "duplicate_window_s", "ban_address_s"):
        if getattr(questions, key) < 0:
            raise ConfigError(f"questions.{key} must be 0 or more")


def _validate_recording(recording: RecordingSettings) -> None:
    for kind in recording.kinds:
        if kind not in STATION_KINDS:
            raise ConfigError(f"recording.kinds: {kind!r} is not one of {', '.join(STATION_KINDS)}")
    if not recording.dir:
        raise ConfigError("recording.dir must not be empty")
    for key in ("retention_days", "max_bytes", "min_free_bytes", "resume_s", "jejak_minutes"):
        if getattr(recording, key) < 0:
            raise ConfigError(f"recording.{key} must be 0 or more")


def _validate_schedule(schedule: ScheduleSettings) -> None:
    try:
        import zoneinfo

        zoneinfo.ZoneInfo(schedule.timezone)
    except Exception:
        raise ConfigError(f"schedule.timezone unknown: {schedule.timezone!r}") from None
    overrides = [("schedule", ScheduleOverride(schedule.workdays, schedule.start, schedule.end))]
    for kind, override in schedule.kinds.items():
        if kind not in STATION_KINDS:
            raise ConfigError(f"schedule.kinds.{kind}: kind must be one of {', '.join(STATION_KINDS)}")
        overrides.append((f"schedule.kinds.{kind}", override))
    overrides += [(f"schedule.stations.{sid}", o) for sid, o in schedule.stations.items()]
    for where, override in overrides:
        for day in override.workdays or ():
            if day not in WEEKDAYS:
                raise ConfigError(f"{where}.workdays: {day!r} is not one of {', '.join(WEEKDAYS)}")
        start = parse_clock(override.start, f"{where}.start") if override.start else None
        end = parse_clock(override.end, f"{where}.end") if override.end else None
        if start and end and start >= end:
            raise ConfigError(f"{where}: start must be before end")
    for day in schedule.extra_holidays:
        try:
            dt.date.fromisoformat(day)
        except ValueError:
            raise ConfigError(f"schedule.extra_holidays: {day!r} is not a YYYY-MM-DD date") from None
    if not 0 < schedule.full_coverage <= 1:
        raise ConfigError("schedule.full_coverage must be in (0, 1]")


def _validate_hls(hls: HlsSettings) -> None:
    if not 0.1 <= hls.part_s <= hls.segment_s / 2:
        raise ConfigError("hls.part_s must be at least 0.1 and at most half of hls.segment_s")
    if not 1.0 <= hls.segment_s <= 10.0:
        raise ConfigError("hls.segment_s must be between 1 and 10 seconds")
    if hls.keep_segments < 3:
        raise ConfigError("hls.keep_segments must be at least 3 (players hold back three segments)")
    if hls.idle_s <= 0 or hls.max_stations < 0 or hls.remote_cache_bytes < 0:
        raise ConfigError("hls.idle_s must be positive, hls.max_stations and hls.remote_cache_bytes not negative")
    if not 16000 <= hls.audio_bitrate <= 320000:
        raise ConfigError("hls.audio_bitrate must be between 16000 and 320000")
    if hls.audio_channels not in (1, 2):
        raise ConfigError(f"hls.audio_channels must be 1 or 2, not {hls.audio_channels}")
