"""The root of Jaga's error hierarchy, and the errors the wire codec raises.

They live here, not in :mod:`hub.errors`, because the station agent shares the codec and must
not import the hub. :mod:`hub.errors` draws the whole tree and builds the rest on these.
"""

from __future__ import annotations


class JagaError(Exception):
    pass


class ClientError(JagaError):
    """The peer broke a rule; carries a code, an HTTP status and a WebSocket close code so
    each edge can answer in its own terms."""

    code = "bad_request"
    http_status = 400
    close_code = 4400

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class ProtocolViolation(ClientError):
    code = "protocol"
