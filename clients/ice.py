"""The ICE servers of the agent's peer connections: its own ``network.ice_servers`` and the hub's.

The hub lists its ICE servers in every ``welcome`` (docs/protocol.md): STUN URLs as strings,
TURN servers as ``{"urls", "username", "credential"}`` with a credential minted for this
station, valid for new allocations until the expiry its username starts with
(``"<expiry>:<station>"``: coturn's TURN REST scheme, hub/core/turn.py). So an office whose
network drops UDP needs no TURN settings: the hub's are used (docs/station.md).

aiortc 1.16 uses one STUN and one TURN server per peer connection, the first usable one of
each in its list (``aiortc.rtcicetransport.connection_kwargs``), so the order is chosen here
(:func:`arrange`):

- STUN: the station's own ``network.ice_servers`` first, then the hub's;
- TURN: the hub's (they carry credentials) in the hub's order, turned by one per failed
  attempt in a row, so that a TURN URL this office cannot reach (``turns:…:443`` where only
  3478 passes, or the other way round) is not the only one ever tried; then the station's
  own, which carry none.

Expiry: a credential needs to be valid only when the allocation is made (coturn keeps an
allocation made in time). Each welcome brings fresh ones; when those of the newest welcome
expire within ``MARGIN_S`` by the hub's clock (a WebSocket that stayed up for hours, then a
WHIP re-publish), :meth:`HubIceServers.current` asks ``OPTIONS /whip/{station}`` instead, whose
``Link`` headers carry fresh ones (RFC 9725 §4.6; parsed by :func:`parse_links`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiortc import RTCIceServer

from clients import whip
from clients.config import StationConfig

log = logging.getLogger("jaga.station.ice")

MARGIN_S = 60.0  # credentials that expire sooner than this are refreshed before a session
_EXPIRY = re.compile(r"(\d{1,12}):")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(rf'\s*;\s*({_TOKEN})\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*))?\s*')


@dataclass(frozen=True)
class IceServer:
    """One URL of the hub's, with the credential to use it (TURN) or without (STUN)."""

    url: str
    username: str | None = None
    credential: str | None = None

    @property
    def is_turn(self) -> bool:
        return self.url.startswith(("turn:", "turns:"))

    @property
    def expires_at(self) -> float | None:
        """The hub's-clock time the credential stops opening allocations; None: unknown/never."""
        match = _EXPIRY.match(self.username or "")
        return float(match.group(1)) if match and self.credential is not None else None

    def to_aiortc(self) -> RTCIceServer:
        return RTCIceServer(urls=self.url, username=self.username, credential=self.credential)


def _is_ice_url(value: object) -> bool:
    return isinstance(value, str) and value.startswith(("stun:", "stuns:", "turn:", "turns:"))


def from_welcome(entries: object) -> list[IceServer]:
    """``welcome.ice_servers`` as servers, one per URL; a malformed entry is skipped (logged)."""
    servers: list[IceServer] = []
    for entry in entries if isinstance(entries, list) else []:
        if _is_ice_url(entry):
            servers.append(IceServer(str(entry)))
            continue
        if isinstance(entry, dict):
            urls = entry.get("urls")
            username, credential = entry.get("username"), entry.get("credential")
            url_list = urls if isinstance(urls, list) else [urls]
            if (all(_is_ice_url(url) for url in url_list) and url_list
                    and isinstance(username, str | None) and isinstance(credential, str | None)):
                servers += [IceServer(str(url), username, credential) for url in url_list]
                continue
        log.warning("ignoring an ICE server the hub sent that is not one: %.100r", entry)
    return servers


def _split_links(value: str) -> list[str]:
    """A ``Link`` field value split at the commas between links (not inside ``<>`` or quotes)."""
    parts: list[str] = []
    current: list[str] = []
    in_url = in_quotes = escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif in_quotes:
            escaped = char == "\\"
            in_quotes = char != '"'
        elif in_url:
            in_url = char != ">"
        elif char == "<":
            in_url = True
        elif char == '"':
            in_quotes = True
        elif char == ",":
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return re.sub(r"\\(.)", r"\1", value[1:-1])
    return value


def parse_links(values: Iterable[str]) -> list[IceServer]:
    """The ``rel="ice-server"`` links of ``Link`` header values (RFC 8288; RFC 9725 §4.6 adds
    ``username``, ``credential``, ``credential-type``); malformed links are skipped."""
    servers: list[IceServer] = []
    for value in values:
        for link in _split_links(value):
            match = re.fullmatch(r"<([^<>\s]*)>(.*)", link, flags=re.DOTALL)
            if match is None:
                continue
            params: dict[str, str] = {}
            rest, position = match.group(2), 0
            while position < len(rest):
                param = _PARAM.match(rest, position)
                if param is None or param.end() == position:
                    break
                params.setdefault(param.group(1).lower(), _unquote(param.group(2) or ""))
                position = param.end()
            if position < len(rest) or "ice-server" not in params.get("rel", "").lower().split():
                continue
            if params.get("credential-type", "password") != "password" or not _is_ice_url(match.group(1)):
                continue
            servers.append(IceServer(match.group(1), params.get("username"), params.get("credential")))
    return servers


def arrange(own: Sequence[str], hubs: Sequence[IceServer], attempt: int = 0) -> list[RTCIceServer]:
    """The list for aiortc (module docstring): STUN own then the hub's; TURN the hub's, turned
    by ``attempt``, then own. Each URL once."""
    stun = [IceServer(url) for url in own if not url.startswith(("turn:", "turns:"))]
    stun += [server for server in hubs if not server.is_turn]
    turn = [server for server in hubs if server.is_turn]
    if turn:
        shift = attempt % len(turn)
        turn = turn[shift:] + turn[:shift]
    turn += [IceServer(url) for url in own if url.startswith(("turn:", "turns:"))]
    seen: set[str] = set()
    ordered = []
    for server in stun + turn:
        if server.url not in seen:
            seen.add(server.url)
            ordered.append(server.to_aiortc())
    return ordered


class HubIceServers:
    """The hub's ICE servers as the newest welcome (or OPTIONS) gave them."""

    def __init__(self) -> None:
        self.servers: list[IceServer] = []

    def welcome(self, entries: Any) -> None:
        """A welcome's ``ice_servers``; its credentials replace every earlier one."""
        self.servers = from_welcome(entries)

    def expiring(self, server_now: float) -> bool:
        """Whether a TURN credential expires within ``MARGIN_S`` of ``server_now`` (the hub's clock)."""
        return any(s.expires_at is not None and s.expires_at - MARGIN_S <= server_now for s in self.servers)

    async def current(self, config: StationConfig, server_now: float) -> list[IceServer]:
        """The servers for a session starting now: the newest welcome's, or fresh ones from
        ``OPTIONS /whip/{station}`` when those expire (then kept until the next welcome).
        Should the hub not answer, the old ones are used (the allocation may fail; the
        session's retry comes back here)."""
        if self.expiring(server_now):
            url = config.http_url(f"/whip/{config.station}")
            try:
                fresh = parse_links(await whip.options_links(url, config.network.connect_timeout_s,
                                                             context=config.tls_context()))
            except whip.MediaHttpError as exc:
                log.warning("TURN credentials expired and no fresh ones from %s: %s", url, exc)
            else:
                if any(server.is_turn for server in fresh):
                    self.servers = fresh
        return list(self.servers)
