"""hub.media.consent: a consent check answered with the bytes aioice would send, or left to aioice."""

from __future__ import annotations

import struct

import pytest
from aioice import stun

from hub.media.consent import answer_check
from tests.kit import corruptions

USERNAME = "hubufrag:peerufrag"  # ours first: the peer sends "<our ufrag>:<its ufrag>"
KEY = b"the-hubs-ice-password-22"
PEER = ("127.0.0.1", 50_123)


def request(*, controlling: bool = True, nominate: bool = False, username: str = USERNAME, key: bytes = KEY,
            extra: dict[str, object] | None = None, fingerprint: bool = True) -> bytes:
    """A check as aioice's ``build_request`` makes one (a browser's looks the same)."""
    message = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    message.attributes["USERNAME"] = username
    message.attributes["PRIORITY"] = 1_853_824_767
    message.attributes["ICE-CONTROLLING" if controlling else "ICE-CONTROLLED"] = 0x1122_3344_5566_7788
    if nominate:
        message.attributes["USE-CANDIDATE"] = None
    message.attributes.update(extra or {})
    if fingerprint:
        message.add_message_integrity(key)
        return bytes(message)
    message.attributes["MESSAGE-INTEGRITY"] = stun.message_integrity(bytes(message), key)
    return bytes(message)


def aioices_answer(data: bytes, address: tuple[str, int]) -> bytes:
    """What ``Connection.request_received`` sends back (pinned in test_seams_ice)."""
    message = stun.parse_message(data)
    response = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                            transaction_id=message.transaction_id)
    response.attributes["XOR-MAPPED-ADDRESS"] = address
    response.add_message_integrity(KEY)
    return bytes(response)


@pytest.mark.parametrize("address", [PEER, ("10.1.2.3", 1), ("::1", 9), ("fe80::1:2ff:fe03:405", 65_535)])
def test_a_consent_check_is_answered_with_aioices_bytes(address: tuple[str, int]) -> None:
    data = request()
    answer = answer_check(data, address, USERNAME.encode(), KEY, controlling=False)
    assert answer == aioices_answer(data, address)
    parsed = stun.parse_message(answer)  # and aioice, on the peer's side, takes it
    assert parsed.message_class == stun.Class.RESPONSE and parsed.attributes["XOR-MAPPED-ADDRESS"] == address
    assert parsed.check_message_integrity(KEY)


def test_checks_without_a_fingerprint_or_with_a_browsers_extra_attribute_are_answered() -> None:
    plain = request(fingerprint=False)
    assert answer_check(plain, PEER, USERNAME.encode(), KEY, controlling=False) == aioices_answer(plain, PEER)
    # GOOG-NETWORK-INFO (0xC057): comprehension-optional, unknown to aioice, ignored by both
    message = stun.parse_message(request())
    body = bytes(message)[20:]
    body = body[:body.index(struct.pack("!HH", 0x0008, 20))]  # up to MESSAGE-INTEGRITY
    goog = struct.pack("!HH", 0xC057, 4) + b"\x00\x01\x03\xe7"
    unsigned = struct.pack("!HHI12s", 0x0001, len(body) + len(goog), stun.COOKIE, message.transaction_id) + body + goog
    signed = unsigned + struct.pack("!HH", 0x0008, 20) + stun.message_integrity(unsigned, KEY)
    signed = signed[:2] + struct.pack("!H", len(signed) - 20) + signed[4:]
    assert answer_check(signed, PEER, USERNAME.encode(), KEY, controlling=False) == aioices_answer(signed, PEER)


@pytest.mark.parametrize("data, why", [
    (request(nominate=True), "a nomination: aioice must see USE-CANDIDATE"),
    (request(controlling=False), "a role conflict: both controlled"),
    (request(username="hubufrag:someoneelse"), "a USERNAME not ours"),
    (request(key=b"wrong-password"), "MESSAGE-INTEGRITY fails"),
    (request()[:-1] + bytes([request()[-1] ^ 1]), "FINGERPRINT fails"),
    (request()[:-8], "truncated: the header's length no longer matches"),
    (request() + b"\x00\x00\x00\x00", "trailing bytes"),
    (request(extra={"SOFTWARE": "x"}), "an attribute aioice knows and this module does not read"),
    (b"\x01\x01" + request()[2:], "a response, not a request"),
    (b"\x00\x03" + request()[2:], "another method (Allocate)"),
    (request()[:4] + b"\x00\x00\x00\x00" + request()[8:], "no magic cookie"),
    (b"\x00\x01\x00", "shorter than a header"),
], ids=lambda value: value if isinstance(value, str) else "")
def test_anything_else_is_left_to_aioice(data: bytes, why: str) -> None:
    assert answer_check(data, PEER, USERNAME.encode(), KEY, controlling=False) is None, why


def test_we_controlling_answer_a_controlled_peer_and_leave_a_controlling_one_to_aioice() -> None:
    assert answer_check(request(controlling=False), PEER, USERNAME.encode(), KEY, controlling=True) is not None
    assert answer_check(request(controlling=True), PEER, USERNAME.encode(), KEY, controlling=True) is None


def aioice_answers(data: bytes) -> bool:
    """Would ``Connection.request_received`` send a success response (we are controlled)?"""
    try:
        message = stun.parse_message(data)
    except (ValueError, struct.error, UnicodeDecodeError):
        return False
    attributes = message.attributes
    return (message.message_method == stun.Method.BINDING and message.message_class == stun.Class.REQUEST
            and "MESSAGE-INTEGRITY" in attributes and attributes.get("USERNAME") == USERNAME
            and message.check_message_integrity(KEY) and "ICE-CONTROLLED" not in attributes)


def test_a_corrupted_check_is_never_answered_where_aioice_would_refuse_it() -> None:
    # Bad input from a peer: answered only where aioice would answer, with the same bytes.
    sources = [request(), request(fingerprint=False), request(controlling=False)]
    answered = sum(check_against_aioice(data) for data in corruptions(sources, seed=21, per_source=2000))
    assert answered > 2  # the two untouched checks, and changes both ignore (FINGERPRINT turned into an unknown type)


def check_against_aioice(data: bytes) -> int:
    answer = answer_check(data, PEER, USERNAME.encode(), KEY, controlling=False)
    if answer is None:
        return 0
    assert aioice_answers(data), data.hex()
    assert answer == aioices_answer(data, PEER)
    return 1
