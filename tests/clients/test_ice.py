"""clients.ice: the hub's ICE servers (welcome, Link headers) merged with the station's own,
in the order aiortc needs, and refreshed when their TURN credentials expire."""

from __future__ import annotations

from pathlib import Path

from aiortc import RTCIceServer
from hypothesis import given
from hypothesis import strategies as st

from clients.ice import HubIceServers, IceServer, arrange, from_welcome, parse_links
from hub.core import turn
from tests.clients.helpers import agent_config
from tests.kit import hub_settings, start_hub, stop_hub

TCP = "turn:turn.example.go.id:3478?transport=tcp"
TLS = "turns:turn.example.go.id:443?transport=tcp"


def test_welcome_entries_strings_and_credential_objects() -> None:
    entries = ["stun:s:3478", {"urls": TCP, "username": "1700000000:35.09.01", "credential": "c"},
               {"urls": [TLS, "turn:t2"], "username": "u", "credential": "c2"}]
    assert from_welcome(entries) == [IceServer("stun:s:3478"), IceServer(TCP, "1700000000:35.09.01", "c"),
                                     IceServer(TLS, "u", "c2"), IceServer("turn:t2", "u", "c2")]


def test_malformed_welcome_entries_are_skipped() -> None:
    assert from_welcome(None) == [] and from_welcome("stun:a") == []
    entries = [42, "http://x", {"urls": 5}, {"urls": []}, {"urls": TCP, "username": 1}, {}, "stun:ok"]
    assert from_welcome(entries) == [IceServer("stun:ok")]


def test_links_as_the_hub_writes_them() -> None:
    values = ['<stun:s:3478>; rel="ice-server"',
              '<turn:t:3478?transport=tcp>; rel="ice-server"; username="1700000000:viewer"; '
              'credential="k8HD+/A="; credential-type="password"']
    assert parse_links(values) == [IceServer("stun:s:3478"),
                                   IceServer("turn:t:3478?transport=tcp", "1700000000:viewer", "k8HD+/A=")]
    assert parse_links([", ".join(values)]) == parse_links(values)  # one field, comma-joined


def test_links_with_quoted_commas_and_escapes_other_rels_and_junk() -> None:
    value = ('<https://hub/x>; rel="next", <turn:a>; rel=ice-server; username="a, <b>"; credential="q\\"x", '
             '<turn:b>; rel="ice-server"; credential-type="oauth"; username="u", '
             'garbage, <turn:c> rel="ice-server", <ftp:d>; rel="ice-server", '
             '<turn:e>; REL="other ice-server"')
    assert parse_links([value]) == [IceServer("turn:a", "a, <b>", 'q"x'), IceServer("turn:e")]
    assert parse_links([]) == [] and parse_links([""]) == []


@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40),
       st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40))
def test_what_the_hub_writes_the_agent_reads_back(username: str, credential: str) -> None:
    server = turn.IceServer(TCP, username or "u", credential)
    parsed = parse_links([turn.link_value(server), turn.link_value(turn.IceServer("stun:s"))])
    assert parsed == [IceServer(TCP, username or "u", credential), IceServer("stun:s")]


def urls(servers: list[RTCIceServer]) -> list[str]:
    return [str(server.urls) for server in servers]


def test_arrange_puts_own_stun_first_and_the_hubs_turn_first_turned_by_attempt() -> None:
    hubs = [IceServer("stun:hub"), IceServer(TCP, "u", "c"), IceServer(TLS, "u", "c")]
    own = ["stun:office", "turn:office-turn", "stun:hub"]
    assert urls(arrange(own, hubs, 0)) == ["stun:office", "stun:hub", TCP, TLS, "turn:office-turn"]
    assert urls(arrange(own, hubs, 1)) == ["stun:office", "stun:hub", TLS, TCP, "turn:office-turn"]
    assert urls(arrange(own, hubs, 2)) == urls(arrange(own, hubs, 0))
    first_turn = arrange([], hubs, 0)[1]
    assert (first_turn.username, first_turn.credential) == ("u", "c")
    assert urls(arrange(["stun:office"], [], 3)) == ["stun:office"]


def test_expiry_is_read_from_the_username() -> None:
    assert IceServer(TCP, "1700000000:35.09.01", "c").expires_at == 1_700_000_000
    assert IceServer(TCP, "someone", "c").expires_at is None
    assert IceServer("stun:s").expires_at is None
    servers = HubIceServers()
    servers.welcome([{"urls": TCP, "username": "1000:x", "credential": "c"}])
    assert not servers.expiring(900) and servers.expiring(941) and servers.expiring(2000)


async def test_expired_credentials_are_replaced_from_options_before_a_session(tmp_path: Path) -> None:
    running = await start_hub(hub_settings(tmp_path, turn={"urls": [TCP], "secret": "s", "ttl_s": 600}))
    try:
        config = agent_config(tmp_path, running, "35.09.01", "unused")
        servers = HubIceServers()
        welcome = [{"urls": TCP, "username": "1000:35.09.01", "credential": "old"}]
        servers.welcome(welcome)
        assert await servers.current(config, 100.0) == from_welcome(welcome)  # still valid: no request
        now = running.hub.clock()
        fresh = await servers.current(config, now)  # expired: OPTIONS /whip/35.09.01 answers fresh ones
        assert [server.url for server in fresh] == [TCP]
        assert fresh[0].username is not None and fresh[0].username.endswith(":publisher")
        assert fresh[0].expires_at is not None and abs(fresh[0].expires_at - (now + 600)) <= 2
        assert (fresh[0].username, fresh[0].credential) == turn.turn_credential("s", "publisher",
                                                                                fresh[0].expires_at - 600, 600)
        assert servers.servers == fresh  # kept until the next welcome
        servers.welcome(welcome)
        assert servers.servers == from_welcome(welcome)
    finally:
        await stop_hub(running)


async def test_without_an_answer_the_old_credentials_are_used(tmp_path: Path) -> None:
    config = agent_config(tmp_path, "http://127.0.0.1:9", "35.09.01", "unused")
    servers = HubIceServers()
    servers.welcome([{"urls": TCP, "username": "1000:35.09.01", "credential": "old"}])
    assert await servers.current(config, 5000.0) == [IceServer(TCP, "1000:35.09.01", "old")]
