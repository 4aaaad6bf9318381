"""Announced addresses apart from bound ones (a hub behind a 1:1 NAT): hub.core.announce."""

from __future__ import annotations

import pytest

from hub.core.announce import announce_public, public_mapping

ANSWER = "\r\n".join([
    "v=0",
    "o=- 3900000000 3900000000 IN IP4 0.0.0.0",
    "m=video 40001 UDP/TLS/RTP/SAVPF 96",
    "c=IN IP4 10.0.0.5",
    "a=candidate:a1 1 udp 2130706431 10.0.0.5 40001 typ host",
    "a=candidate:a2 1 udp 2130706431 10.0.1.5 40002 typ host",
    "a=candidate:a3 1 udp 1694498815 198.51.100.7 40001 typ srflx raddr 10.0.0.5 rport 40001",
    "a=end-of-candidates",
    "",
])


def test_host_candidates_and_connection_lines_carry_the_public_address() -> None:
    rewritten = announce_public(ANSWER, public_mapping(["10.0.0.5"], ["203.0.113.10"]))
    assert "c=IN IP4 203.0.113.10" in rewritten
    assert "a=candidate:a1 1 udp 2130706431 203.0.113.10 40001 typ host" in rewritten  # the port stays
    assert "10.0.1.5 40002 typ host" in rewritten  # not mapped: as it was
    assert "198.51.100.7 40001 typ srflx raddr 10.0.0.5" in rewritten  # only host candidates change
    assert "o=- 3900000000 3900000000 IN IP4 0.0.0.0" in rewritten
    assert announce_public(ANSWER, {}) == ANSWER


def test_one_public_address_for_all_or_one_for_each() -> None:
    assert public_mapping(["10.0.0.5", "10.0.1.5"], ["203.0.113.10"]) == {"10.0.0.5": "203.0.113.10",
                                                                         "10.0.1.5": "203.0.113.10"}
    assert public_mapping(["10.0.0.5", "10.0.1.5"], ["203.0.113.10", "203.0.113.11"])["10.0.1.5"] == "203.0.113.11"
    assert public_mapping(["10.0.0.5"], []) == {}


@pytest.mark.parametrize("bound, public, says", [
    ([], ["203.0.113.10"], "needs media.host_addresses"),
    (["10.0.0.5", "10.0.1.5", "10.0.2.5"], ["203.0.113.10", "203.0.113.11"], "one per"),
    (["10.0.0.5"], ["hub.example.go.id"], "does not appear to be an IPv4 or IPv6 address"),
])
def test_a_mapping_that_cannot_be_meant_is_refused(bound: list[str], public: list[str], says: str) -> None:
    with pytest.raises(ValueError, match=says):
        public_mapping(bound, public)
