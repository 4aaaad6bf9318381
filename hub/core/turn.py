"""The ICE servers the hub hands out: STUN as configured, TURN with short-lived credentials.

Theory of operation
-------------------
Offices whose network drops UDP cannot reach the hub's media ports; they reach it through a
TURN server (coturn) over TCP or TLS. The hub tells each client which TURN servers to use and
with which credentials, in two places: the ``Link: <url>; rel="ice-server"`` headers of its
WHIP/WHEP answers and OPTIONS responses (RFC 9725 §4.6; :func:`link_value`) and the station's
``welcome.ice_servers`` (docs/protocol.md; :func:`wire_entry`).

Credentials follow the TURN REST convention that coturn's ``use-auth-secret`` checks: the hub
and coturn share a secret (``turn.secret`` here, ``static-auth-secret`` there), and for each
client the hub mints ::

    username   = "<expiry, Unix seconds>:<name>"
    credential = base64(HMAC-SHA1(secret, username))

coturn recomputes the credential from the username and refuses it once the expiry is past.
Nothing is stored, revoked or shared between hub nodes: any node mints for any coturn that
holds the secret. ``name`` is only a label for coturn's log (a station's id, ``viewer`` …),
reduced to ``[A-Za-z0-9._-]``. The expiry matters when an allocation is made: coturn keeps
an allocation made in time, and refreshes it, past the expiry (coturn 4.6.1, tests/turn).

Pure: no I/O; the caller passes the clock's ``now``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

NAME_LIMIT = 64  # coturn logs the username; a label needs no more
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
# RFC 7065: turn:host[:port][?transport=udp|tcp], turns: over TLS (transport=tcp). IPv6 hosts in [].
_TURN_URL = re.compile(r"(?P<scheme>turns?):(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
                       r"(?::(?P<port>\d{1,5}))?(?:\?transport=(?P<transport>udp|tcp))?")


class TurnConfig(Protocol):
    """What :func:`issue` reads from the ``[turn]`` settings."""

    @property
    def urls(self) -> tuple[str, ...]: ...

    @property
    def secret(self) -> str: ...

    @property
    def ttl_s(self) -> float: ...


@dataclass(frozen=True)
class IceServer:
    """One ICE server URL, with the credentials to use it (TURN) or without (STUN)."""

    url: str
    username: str = ""
    credential: str = ""


def turn_url_problem(url: str) -> str:
    """Why ``url`` is not a TURN URL the hub can hand out ("" when it is one)."""
    match = _TURN_URL.fullmatch(url)
    if match is None:
        return f"{url!r} is not a turn:/turns: URL (turn:HOST[:PORT][?transport=udp|tcp])"
    if match["port"] is not None and not 0 < int(match["port"]) <= 65535:
        return f"{url!r}: port out of range"
    if match["scheme"] == "turns" and match["transport"] == "udp":
        return f"{url!r}: turns: is TURN over TLS (transport=tcp); TURN over DTLS is not supported by the clients"
    return ""


def label(name: str) -> str:
    """``name`` as it goes into a username: safe characters only, at most ``NAME_LIMIT``."""
    return _UNSAFE.sub("_", name)[:NAME_LIMIT] or "_"


def turn_credential(secret: str, name: str, now: float, ttl_s: float) -> tuple[str, str]:
    """(username, credential) valid until ``now + ttl_s`` (a negative ``ttl_s`` mints expired ones)."""
    username = f"{int(now + ttl_s)}:{label(name)}"
    digest = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")


def issue(name: str, now: float, stun_urls: Sequence[str], turn: TurnConfig) -> list[IceServer]:
    """The ICE servers for one client: ``stun_urls`` as they are (``media.ice_servers``), then
    every ``turn.urls`` entry with one freshly minted credential (the same for all of them)."""
    servers = [IceServer(url) for url in stun_urls]
    if turn.urls:
        username, credential = turn_credential(turn.secret, name, now, turn.ttl_s)
        servers += [IceServer(url, username, credential) for url in turn.urls]
    return servers


def quoted(text: str) -> str:
    """An RFC 9110 quoted-string: ``"`` and ``\\`` escaped; control characters refused."""
    if any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in text):
        raise ValueError(f"control character in a header parameter: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def link_value(server: IceServer) -> str:
    """One ``Link`` header value (RFC 9725 §4.6), e.g. ``<turn:h:3478?transport=tcp>;
    rel="ice-server"; username="…"; credential="…"; credential-type="password"``."""
    if any(c in server.url for c in "<>\r\n"):
        raise ValueError(f"not a URL for a Link header: {server.url!r}")
    value = f'<{server.url}>; rel="ice-server"'
    if server.username:
        value += (f"; username={quoted(server.username)}; credential={quoted(server.credential)}"
                  '; credential-type="password"')
    return value


def wire_entry(server: IceServer) -> str | dict[str, str]:
    """A ``welcome.ice_servers`` entry: the URL alone, or ``{urls, username, credential}``
    (the W3C ``RTCIceServer`` shape) when it has credentials."""
    if not server.username:
        return server.url
    return {"urls": server.url, "username": server.username, "credential": server.credential}
