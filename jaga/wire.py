"""The WebSocket wire codec: one message set, two encodings.

A message is a map with a type key ``t``. ``jaga.v1.msgpack`` carries it as a binary frame
(bytes stay bytes); ``jaga.v1.json`` as a text frame (bytes become base64 strings). The
codec only turns frames into validated dicts and back: it knows nothing of sockets, so the
hub, the station agent and the tests share it.

Validation is by table: every message type names its fields, their types and whether they
are required. A frame that does not decode, a type nobody knows, a missing or mistyped
field each raise :class:`~jaga.errors.ProtocolViolation` with a distinct code, so the edge
can answer with ``error {code, message}`` and keep the connection.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack

from jaga.errors import ProtocolViolation

MSGPACK = "jaga.v1.msgpack"
JSON = "jaga.v1.json"
SUBPROTOCOLS = (MSGPACK, JSON)

MAX_FRAME = 64 * 1024
MAX_THUMB_FRAME = 256 * 1024
MAX_TEXT = 500  # announcements, activity titles

# type name → {field: (python type(s), required)}
STATION_MESSAGES: dict[str, dict[str, tuple[Any, bool]]] = {
    "hello": {"station": (str, True), "token": (str, True), "agent": (str, False), "version": (str, False)},
    "hb": {"camera": (str, False), "bitrate": ((int, float), False), "quality": (str, False)},
    "activity.start": {"title": (str, True)},
    "activity.stop": {},
    "thumb": {"jpeg": (bytes, True)},
    "ping": {},
}
WATCH_MESSAGES: dict[str, dict[str, tuple[Any, bool]]] = {
    "ping": {},
}
BYTES_FIELDS = {"jpeg"}


@dataclass(frozen=True)
class Codec:
    """Encode and decode for one subprotocol; ``binary`` says which frame type it uses."""

    name: str
    binary: bool
    encode: Callable[[dict[str, Any]], bytes | str]
    decode_raw: Callable[[bytes | str], Any]

    def decode(self, frame: bytes | str, schema: dict[str, dict[str, tuple[Any, bool]]]) -> dict[str, Any]:
        return validate(self.decode_raw(frame), schema)


def encode_msgpack(message: dict[str, Any]) -> bytes:
    packed: bytes = msgpack.packb(message, use_bin_type=True)  # msgpack ships no type hints
    return packed


def decode_msgpack(frame: bytes | str) -> Any:
    if not isinstance(frame, (bytes, bytearray)):
        raise ProtocolViolation("msgpack subprotocol takes binary frames", code="malformed")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException, TypeError) as exc:
        raise ProtocolViolation(f"frame is not valid msgpack: {exc}", code="malformed") from None


def encode_json(message: dict[str, Any]) -> str:
    return json.dumps(_bytes_to_base64(message), separators=(",", ":"), ensure_ascii=False)


def decode_json(frame: bytes | str) -> Any:
    if not isinstance(frame, str):
        raise ProtocolViolation("json subprotocol takes text frames", code="malformed")
    try:
        message = json.loads(frame)
    except (ValueError, RecursionError) as exc:
        raise ProtocolViolation(f"frame is not valid JSON: {exc}", code="malformed") from None
    if isinstance(message, dict):
        for key in BYTES_FIELDS & message.keys():
            message[key] = _base64_field(key, message[key])
    return message


def _bytes_to_base64(message: dict[str, Any]) -> dict[str, Any]:
    if not any(isinstance(v, (bytes, bytearray)) for v in message.values()):
        return message
    return {k: base64.b64encode(v).decode() if isinstance(v, (bytes, bytearray)) else v for k, v in message.items()}


def _base64_field(key: str, value: Any) -> Any:
    if not isinstance(value, str):
        return value  # validate() reports the wrong type
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolViolation(f"field {key!r} is not valid base64", code="bad_field") from None


CODECS = {
    MSGPACK: Codec(MSGPACK, True, encode_msgpack, decode_msgpack),
    JSON: Codec(JSON, False, encode_json, decode_json),
}


def pick_subprotocol(offered: list[str], default: str = MSGPACK) -> str | None:
    """The first subprotocol we speak among those offered; ``default`` when none was offered."""
    if not offered:
        return default
    return next((p for p in offered if p in CODECS), None)


def validate(message: Any, schema: dict[str, dict[str, tuple[Any, bool]]]) -> dict[str, Any]:
    if not isinstance(message, dict):
        raise ProtocolViolation("a message must be a map with a type key 't'", code="malformed")
    kind = message.get("t")
    if not isinstance(kind, str):
        raise ProtocolViolation("message has no type key 't'", code="malformed")
    fields = schema.get(kind)
    if fields is None:
        raise ProtocolViolation(f"unknown message type {kind[:40]!r}", code="unknown_type")
    for name, (types, required) in fields.items():
        value = message.get(name)
        if value is None:
            if required:
                raise ProtocolViolation(f"{kind}: missing field {name!r}", code="missing_field")
            continue
        if not isinstance(value, types) or isinstance(value, bool) and types is not bool:
            raise ProtocolViolation(f"{kind}: field {name!r} has the wrong type", code="bad_field")
        if isinstance(value, str) and len(value) > MAX_TEXT and name != "token":
            raise ProtocolViolation(f"{kind}: field {name!r} is longer than {MAX_TEXT}", code="bad_field")
    return message


# Messages the hub sends; built here so every edge encodes the same shape.


def error(code: str, message: str) -> dict[str, Any]:
    return {"t": "error", "code": code, "message": message}


def welcome(station: str, server_time: float, heartbeat_s: float, schedule: dict[str, Any],
            ice_servers: list[str | dict[str, str]]) -> dict[str, Any]:
    """``ice_servers``: STUN/TURN URLs as strings, and TURN servers with credentials as
    ``{"urls", "username", "credential"}`` (the W3C ``RTCIceServer`` shape; docs/protocol.md)."""
    return {"t": "welcome", "station": station, "server_time": server_time, "heartbeat_s": heartbeat_s,
            "schedule": schedule, "ice_servers": ice_servers}


def announce(text: str, sender: str) -> dict[str, Any]:
    return {"t": "announce", "text": text, "from": sender}


def question(view: dict[str, Any]) -> dict[str, Any]:
    """A citizen's question changed (docs/questions.md "Events"). ``view`` is its public view
    ``{id, text, name, votes, state, asked_at, activity}`` for public watchers and the station's
    agent, its moderator view (also ``station, held, decided_by, decided_at``) for operators."""
    return {"t": "question", "q": view}
