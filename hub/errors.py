"""The hub's one error hierarchy.

    JagaError
    ├── ConfigError            bad configuration or registry (raised at start-up or by the CLI)
    ├── RegistryError          a station CSV that does not validate (carries the bad lines)
    ├── LedgerUnavailable      the attendance ledger cannot write (disk full, Redis gone)
    └── ClientError            the peer broke a rule; carries a code, an HTTP status and a
        │                      WebSocket close code so each edge can answer in its own terms
        ├── ProtocolViolation  4400 / 400
        ├── NotAuthenticated   4401 / 401
        ├── Forbidden          4403 / 403
        ├── NotFound           404
        ├── Conflict           409
        ├── TooLarge           1009 / 413
        ├── UnsupportedMediaType  415 (WHIP/WHEP without application/sdp)
        ├── RateLimited        4429 / 429
        └── Unavailable        503 (capacity; ``retry_after`` seconds)

Library errors (msgpack, json, aiortc, sqlite3, redis) are translated into these at the edge
that meets them; nothing above the edges sees a library exception. ``JagaError``,
``ClientError`` and ``ProtocolViolation`` are defined in :mod:`jaga.errors` (the wire codec,
which the station agent shares, raises them) and are the same classes here.
"""

from __future__ import annotations

from jaga.errors import ClientError, JagaError, ProtocolViolation

__all__ = ["ClientError", "ConfigError", "Conflict", "Forbidden", "JagaError", "LedgerUnavailable", "NotAuthenticated",
           "NotFound", "ProtocolViolation", "RateLimited", "RegistryError", "TooLarge", "Unavailable",
           "UnsupportedMediaType"]


class ConfigError(JagaError):
    pass


class RegistryError(JagaError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class LedgerUnavailable(JagaError):
    pass


class NotAuthenticated(ClientError):
    code = "not_authenticated"
    http_status = 401
    close_code = 4401


class Forbidden(ClientError):
    code = "forbidden"
    http_status = 403
    close_code = 4403


class NotFound(ClientError):
    code = "not_found"
    http_status = 404


class Conflict(ClientError):
    code = "conflict"
    http_status = 409


class TooLarge(ClientError):
    code = "too_large"
    http_status = 413
    close_code = 1009


class UnsupportedMediaType(ClientError):
    code = "unsupported_media_type"
    http_status = 415


class RateLimited(ClientError):
    code = "rate_limited"
    http_status = 429
    close_code = 4429

    def __init__(self, message: str, retry_after: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class ClientGone(ClientError):
    """The client closed its connection before it was answered (a WHEP offer waiting for its
    turn): nothing more is done for it, and the answer reaches no one (499, nginx's name)."""

    code = "client_gone"
    http_status = 499


class Unavailable(ClientError):
    code = "unavailable"
    http_status = 503

    def __init__(self, message: str, retry_after: float = 5.0, code: str | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after
