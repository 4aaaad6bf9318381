"""Proof of work for asking a question: a signed challenge and a nonce that is costly to find.

Theory of operation
-------------------
The hub issues ``token = base64url(station|expires|random) + "." + base64url(hmac)`` signed
with the session secret, so any node can check a token any node issued, and keeps no state
for it until it is used. A page finds a decimal ``nonce`` such that
``sha256(token + ":" + nonce)`` starts with ``difficulty`` zero bits: 2^difficulty hashes on
average, a fraction of a second of WebCrypto on a phone, and the same for every question a
script wants to post. Checking costs the hub one HMAC and one hash.

:func:`verify` checks the signature, the station, the expiry and the work, and returns the
expiry so the caller can remember the token as used until then (single use is the caller's:
it needs memory shared across requests, see :class:`hub.core.question_limits.UsedTokens`).
Every failure is ``ProtocolViolation`` with code ``proof``; the message says which check
failed (for logs and for an honest page), never anything secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from jaga.errors import ProtocolViolation

MAX_TOKEN = 256  # a real token is about 90 characters
MAX_NONCE = 20  # decimal digits: 2^64 tries is far beyond any difficulty we set


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64encode(hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest())


def issue(secret: bytes, station: str, now: float, ttl_s: float, difficulty: int) -> str:
    """A challenge for ``station`` valid until ``now + ttl_s``. ``difficulty`` is not in the
    token: the hub checks against its configured value when the answer comes back."""
    del difficulty  # kept in the signature for the contract; the check uses the configured value
    body = _b64encode(f"{station}|{now + ttl_s:.3f}|{secrets.token_urlsafe(12)}".encode())
    return f"{body}.{_sign(secret, body)}"


def leading_zero_bits(digest: bytes) -> int:
    bits = 0
    for byte in digest:
        if byte == 0:
            bits += 8
            continue
        return bits + 8 - byte.bit_length()
    return bits


def work(token: str, nonce: str) -> bytes:
    return hashlib.sha256(f"{token}:{nonce}".encode("ascii")).digest()


def solve(token: str, difficulty: int, start: int = 0) -> str:
    """The first nonce from ``start`` that does the work (what the page does; tests use it)."""
    nonce = start
    while leading_zero_bits(work(token, str(nonce))) < difficulty:
        nonce += 1
    return str(nonce)


def verify(secret: bytes, token: str, nonce: str, station: str, now: float, difficulty: int) -> float:
    """The token's expiry, if ``nonce`` proves the work for a valid, current token of
    ``station``; else ``ProtocolViolation`` code ``proof``."""
    if not isinstance(token, str) or not isinstance(nonce, str):
        raise ProtocolViolation("proof needs a token and a nonce", code="proof")
    if len(token) > MAX_TOKEN or not token.isascii():
        raise ProtocolViolation("proof token malformed", code="proof")
    if not (0 < len(nonce) <= MAX_NONCE and nonce.isascii() and nonce.isdigit()):
        raise ProtocolViolation("proof nonce must be a decimal number", code="proof")
    body, dot, signature = token.partition(".")
    if not dot or not hmac.compare_digest(signature, _sign(secret, body)):
        raise ProtocolViolation("proof token not issued by this hub", code="proof")
    try:
        token_station, expires_text, _ = _b64decode(body).decode("utf-8").rsplit("|", 2)
        expires = float(expires_text)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ProtocolViolation("proof token malformed", code="proof") from None
    if token_station != station:
        raise ProtocolViolation("proof token is for another station", code="proof")
    if now >= expires:
        raise ProtocolViolation("proof token expired", code="proof")
    if leading_zero_bits(work(token, nonce)) < difficulty:
        raise ProtocolViolation("proof of work not done", code="proof")
    return expires
