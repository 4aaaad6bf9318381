"""Proof of work: signed challenges, nonces, expiry."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.core import proof
from hub.errors import ProtocolViolation

SECRET = b"s" * 32
STATION = "35.09.01.2001"


def refused(token: str, nonce: str, station: str = STATION, now: float = 10.0, difficulty: int = 8) -> str:
    with pytest.raises(ProtocolViolation) as caught:
        proof.verify(SECRET, token, nonce, station, now, difficulty)
    assert caught.value.code == "proof"
    return caught.value.message


def test_leading_zero_bits() -> None:
    assert proof.leading_zero_bits(b"\x80") == 0
    assert proof.leading_zero_bits(b"\x01") == 7
    assert proof.leading_zero_bits(b"\x00\x00\x10") == 19
    assert proof.leading_zero_bits(b"\x00\x00") == 16


@given(st.binary(min_size=1, max_size=32))
def test_leading_zero_bits_agrees_with_the_integer(digest: bytes) -> None:
    value = int.from_bytes(digest, "big")
    assert proof.leading_zero_bits(digest) == len(digest) * 8 - value.bit_length()


def test_a_solved_challenge_verifies_and_returns_its_expiry() -> None:
    token = proof.issue(SECRET, STATION, now=0.0, ttl_s=300.0, difficulty=8)
    nonce = proof.solve(token, 8)
    assert proof.leading_zero_bits(hashlib.sha256(f"{token}:{nonce}".encode()).digest()) >= 8
    assert proof.verify(SECRET, token, nonce, STATION, 10.0, 8) == pytest.approx(300.0)


def test_every_check_refuses_with_code_proof() -> None:
    token = proof.issue(SECRET, STATION, now=0.0, ttl_s=300.0, difficulty=8)
    nonce = proof.solve(token, 8)
    assert "another station" in refused(token, nonce, station="35.09.01.2002")
    assert "expired" in refused(token, nonce, now=300.0)
    other = proof.issue(b"x" * 32, STATION, 0.0, 300.0, 8)
    assert "not issued" in refused(other, proof.solve(other, 8))
    body, _, signature = token.partition(".")
    assert "not issued" in refused(body + "A." + signature, nonce)  # the body was changed
    assert "decimal" in refused(token, "abc")
    assert "decimal" in refused(token, "")
    assert "decimal" in refused(token, "1" * 21)
    assert "malformed" in refused("x" * 300, nonce)
    assert refused("no-dot", nonce)


def test_unsolved_nonce_is_refused() -> None:
    token = proof.issue(SECRET, STATION, 0.0, 300.0, 16)
    bad = next(str(n) for n in range(1000) if proof.leading_zero_bits(proof.work(token, str(n))) < 16)
    assert "not done" in refused(token, bad, difficulty=16)


def test_difficulty_zero_takes_any_nonce() -> None:
    token = proof.issue(SECRET, STATION, 0.0, 300.0, 0)
    assert proof.verify(SECRET, token, "0", STATION, 1.0, 0) == pytest.approx(300.0)


def test_station_with_a_bar_in_its_id_still_round_trips() -> None:
    token = proof.issue(SECRET, "a|b", 0.0, 60.0, 0)
    assert proof.verify(SECRET, token, "1", "a|b", 1.0, 0) == pytest.approx(60.0)


@settings(max_examples=200)
@given(st.text(max_size=300), st.text(max_size=30))
def test_garbage_is_always_a_protocol_violation(token: str, nonce: str) -> None:
    with pytest.raises(ProtocolViolation):
        proof.verify(SECRET, token, nonce, STATION, 10.0, 8)
