"""The pure rules behind the proxy, origin and watch-cap edges: who the client is behind
trusted proxies, what counts as the hub's own origin, how many watch sockets are admitted."""

from __future__ import annotations

from typing import Any

import pytest

from hub.core.origin import origin_of, same_origin
from hub.core.proxies import TrustedProxies, forwarded_for, parse_address
from hub.core.watch_admission import Refusal, WatchAdmission
from hub.errors import ConfigError
from hub.settings import settings_from_mapping

PROXIES = TrustedProxies(["10.0.0.0/24", "192.0.2.7", "2001:db8::/32"])


@pytest.mark.parametrize(("peer", "header", "client"), [
    # An untrusted peer: the header is ignored, whatever it says.
    ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
    ("203.0.113.9", [], "203.0.113.9"),
    # A trusted proxy: the right-most address that is not itself a trusted proxy.
    ("10.0.0.5", ["198.51.100.1"], "198.51.100.1"),
    ("10.0.0.5", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),  # the client's own claim on the left
    ("10.0.0.5", ["6.6.6.6", "198.51.100.1, 192.0.2.7"], "198.51.100.1"),  # two proxies, two lines
    ("10.0.0.5", ["198.51.100.1:5555"], "198.51.100.1"),  # with a port
    ("10.0.0.5", ["[2001:db9::1]:443"], "2001:db9::1"),
    ("2001:db8::1", ["2001:db9::2"], "2001:db9::2"),
    ("::ffff:10.0.0.5", ["198.51.100.1"], "198.51.100.1"),  # a dual-stack socket's spelling
    # No header, or nothing but proxies: the farthest proxy (a proxy's own request).
    ("10.0.0.5", [], "10.0.0.5"),
    ("10.0.0.5", ["10.0.0.6, 192.0.2.7"], "10.0.0.6"),
    # Garbage written by a trusted hop: that hop, never a name the sender chose.
    ("10.0.0.5", ["unknown"], "10.0.0.5"),
    ("10.0.0.5", ["6.6.6.6, evil, 192.0.2.7"], "192.0.2.7"),
])
def test_client_address(peer: str, header: list[str], client: str) -> None:
    assert PROXIES.client_address(peer, forwarded_for(header)) == client


def test_nobody_is_trusted_by_default() -> None:
    nobody = TrustedProxies([])
    assert not nobody
    assert nobody.client_address("127.0.0.1", ["198.51.100.1"]) == "127.0.0.1"
    assert nobody.scheme("127.0.0.1", ["https"], "http") == "http"


def test_scheme_only_from_a_trusted_peer() -> None:
    assert PROXIES.scheme("10.0.0.5", ["https"], "http") == "https"
    assert PROXIES.scheme("10.0.0.5", ["http", "https"], "http") == "https"  # the right-most
    assert PROXIES.scheme("10.0.0.5", ["gopher"], "http") == "http"
    assert PROXIES.scheme("203.0.113.9", ["https"], "http") == "http"


def test_bad_entries_are_named() -> None:
    with pytest.raises(ValueError, match="'10.0.0.300'"):
        TrustedProxies(["10.0.0.1", "10.0.0.300"])
    assert parse_address("not an address") is None


@pytest.mark.parametrize(("origin", "allowed"), [
    ("https://jaga.example.go.id", True),  # public_url
    ("https://JAGA.example.go.id:443", True),
    ("http://127.0.0.1:8080", True),  # scheme + Host of the request
    ("http://127.0.0.1:8081", False),
    ("https://127.0.0.1:8080", False),
    ("https://evil.example", False),
    ("null", False),
    ("", False),
])
def test_same_origin(origin: str, allowed: bool) -> None:
    assert same_origin(origin, scheme="ws", host="127.0.0.1:8080",
                       public_url="https://jaga.example.go.id") is allowed


def test_origin_of() -> None:
    assert origin_of("http://[::1]:80/wall") == "http://[::1]"
    assert origin_of("ftp://x") is None
    assert origin_of("http://x:99999") is None


def test_watch_admission() -> None:
    admission = WatchAdmission(max_total=3, per_address=2)
    assert admission.admit("a") is None
    assert admission.admit("a") is None
    assert admission.admit("a") is Refusal.ADDRESS_FULL  # refused: nothing counted
    assert admission.admit("b") is None
    assert admission.admit("c") is Refusal.NODE_FULL
    admission.release("a")
    assert admission.admit("c") is None
    for address in ("a", "b", "c"):
        admission.release(address)
    assert admission.total == 0 and not admission.open


@pytest.mark.parametrize(("raw", "message"), [
    ({"hub": {"trusted_proxies": ["10.0.0.1", "10.0.0.0/33"]}}, r"hub\.trusted_proxies: '10\.0\.0\.0/33' is not"),
    ({"hub": {"trusted_proxies": "10.0.0.1"}}, r"hub\.trusted_proxies must be a list"),
    ({"hub": {"demo_stations": -1}}, r"hub\.demo_stations must be 0 or more"),
    ({"presence": {"watchers_per_address": 0}}, r"presence\.watchers_per_address must be at least 1"),
    ({"presence": {"watch_messages_per_s": 0}}, r"presence\.watch_messages_per_s must be greater than 0"),
])
def test_bad_settings_are_named(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from_mapping(raw)


def test_trusted_proxies_are_read() -> None:
    settings = settings_from_mapping({"hub": {"trusted_proxies": ["10.0.0.9", "2001:db8::/64"]}})
    assert TrustedProxies(settings.hub.trusted_proxies).trusts("2001:db8::5")
    assert settings_from_mapping({}).hub.trusted_proxies == ()  # nobody by default
