"""hub.core.turn: TURN REST credentials, the Link header and the welcome entries, and the
``[turn]`` settings that feed them."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from hub.core.turn import IceServer, issue, label, link_value, quoted, turn_credential, turn_url_problem, wire_entry
from hub.errors import ConfigError
from hub.settings import settings_from_mapping

SECRET = "north-jember"


@dataclass(frozen=True)
class Turn:
    urls: tuple[str, ...] = ("turn:turn.example.go.id:3478?transport=tcp",
                             "turns:turn.example.go.id:443?transport=tcp")
    secret: str = SECRET
    ttl_s: float = 3600.0


def test_credential_matches_a_known_vector() -> None:
    # Computed independently:
    # printf '%s' "1700000000:35.09.01.2001" | openssl dgst -sha1 -hmac north-jember -binary | base64
    assert turn_credential(SECRET, "35.09.01.2001", 1_699_996_400.7, 3600) == (
        "1700000000:35.09.01.2001", "yZiRxgHXgR8L2xyzJjFG+HV5BHY=")
    assert turn_credential(SECRET, "viewer", 1_700_000_000, 3600) == (
        "1700003600:viewer", "k8HDrd+mFm3t0WVRgR0jaLRuI/A=")


def test_expiry_is_now_plus_ttl_and_may_be_in_the_past() -> None:
    assert turn_credential(SECRET, "x", 1000.0, 60)[0] == "1060:x"
    assert turn_credential(SECRET, "x", 1000.0, -60)[0] == "940:x"


def test_the_name_is_a_safe_label() -> None:
    assert label('a"b\\c:d e\r\n') == "a_b_c_d_e__"
    assert label("") == "_"
    assert len(label("x" * 500)) == 64
    assert turn_credential(SECRET, "35.09.01", 0, 10)[0] == "10:35.09.01"


def test_issue_keeps_stun_plain_and_mints_one_credential_for_every_turn_url() -> None:
    servers = issue("35.09.01", 1_700_000_000, ["stun:stun.example.go.id:3478"], Turn())
    assert servers[0] == IceServer("stun:stun.example.go.id:3478")
    username, credential = turn_credential(SECRET, "35.09.01", 1_700_000_000, 3600)
    assert servers[1:] == [IceServer(url, username, credential) for url in Turn().urls]
    assert issue("x", 0, ["stun:a"], Turn(urls=())) == [IceServer("stun:a")]


def test_link_value_is_rfc_9725_with_quoted_parameters() -> None:
    assert link_value(IceServer("stun:stun.example.go.id")) == '<stun:stun.example.go.id>; rel="ice-server"'
    assert link_value(IceServer("turn:h:3478?transport=tcp", "1700000000:viewer", "k8HD+/A=")) == (
        '<turn:h:3478?transport=tcp>; rel="ice-server"; username="1700000000:viewer"; '
        'credential="k8HD+/A="; credential-type="password"')
    assert quoted('say "hi" \\o/') == r'"say \"hi\" \\o/"'
    with pytest.raises(ValueError):
        quoted("line\nbreak")
    with pytest.raises(ValueError):
        link_value(IceServer("turn:h>; rel=x"))


def test_wire_entry_is_a_string_or_an_rtc_ice_server() -> None:
    assert wire_entry(IceServer("stun:a")) == "stun:a"
    assert wire_entry(IceServer("turn:a", "1:x", "c")) == {"urls": "turn:a", "username": "1:x", "credential": "c"}


@pytest.mark.parametrize("url", ["turn:turn.example.go.id:3478?transport=tcp", "turns:turn.example.go.id:443",
                                 "turn:10.0.0.1", "turn:[2001:db8::1]:3478?transport=udp",
                                 "turns:turn.example.go.id:443?transport=tcp"])
def test_turn_urls_accepted(url: str) -> None:
    assert turn_url_problem(url) == ""


@pytest.mark.parametrize("url", ["stun:a:3478", "turn:", "turn:h:0", "turn:h:70000", "turn:h?transport=sctp",
                                 "turns:h:443?transport=udp", "turn://h:3478", "turn:h:3478 ", "turn:h;x"])
def test_turn_urls_refused(url: str) -> None:
    assert turn_url_problem(url) != ""


def test_settings_validate_the_turn_section() -> None:
    settings = settings_from_mapping({"turn": {"urls": ["turn:t.example:3478?transport=tcp"], "secret": "s",
                                               "ttl_s": 600}})
    assert settings.turn.urls == ("turn:t.example:3478?transport=tcp",) and settings.turn.ttl_s == 600.0
    assert settings_from_mapping({}).turn.urls == ()
    with pytest.raises(ConfigError, match="turn.secret is required"):
        settings_from_mapping({"turn": {"urls": ["turn:t.example"]}})
    with pytest.raises(ConfigError, match="turn.urls"):
        settings_from_mapping({"turn": {"urls": ["stun:t.example"], "secret": "s"}})
    with pytest.raises(ConfigError, match="turn.ttl_s"):
        settings_from_mapping({"turn": {"ttl_s": 0}})
    with pytest.raises(ConfigError, match="unknown config key turn.password"):
        settings_from_mapping({"turn": {"password": "s"}})
