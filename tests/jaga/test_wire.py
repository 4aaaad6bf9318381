"""The wire codec, and the examples in docs/protocol.md, which must stay true."""

from __future__ import annotations

import re
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.errors import ProtocolViolation
from jaga import wire

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def doc_examples() -> list[tuple[str, str, str]]:
    text = DOC.read_text()
    pattern = re.compile(r"### `([^`]+)`.*?```json\n(.*?)\n```.*?```\n(.*?)\n```", re.S)
    return pattern.findall(text)


def test_protocol_doc_examples_agree_in_both_encodings() -> None:
    examples = doc_examples()
    assert len(examples) >= 15
    for name, as_json, as_hex in examples:
        from_json = wire.decode_json(as_json)
        from_msgpack = wire.decode_msgpack(bytes.fromhex(as_hex.replace(" ", "")))
        assert from_json == from_msgpack, name
        assert from_json["t"] == name
        if name in wire.STATION_MESSAGES and "seq" not in from_json:  # not the watch event `thumb`
            wire.validate(from_json, wire.STATION_MESSAGES)


def test_roundtrip_keeps_bytes_in_both_encodings() -> None:
    message = {"t": "thumb", "jpeg": b"\xff\xd8\x00\x01"}
    for codec in wire.CODECS.values():
        assert codec.decode(codec.encode(message), wire.STATION_MESSAGES) == message


@pytest.mark.parametrize("frame, code", [
    (b"\xc1", "malformed"),
    (msgpack.packb([1, 2]), "malformed"),
    (msgpack.packb({"x": 1}), "malformed"),
    (msgpack.packb({"t": "nope"}), "unknown_type"),
    (msgpack.packb({"t": "hello", "station": "x"}), "missing_field"),
    (msgpack.packb({"t": "hello", "station": "x", "token": 5}), "bad_field"),
    (msgpack.packb({"t": "hb", "bitrate": True}), "bad_field"),
    (msgpack.packb({"t": "activity.start", "title": "x" * 501}), "bad_field"),
    ("text frame", "malformed"),
])
def test_msgpack_rejections_have_codes(frame: bytes | str, code: str) -> None:
    with pytest.raises(ProtocolViolation) as caught:
        wire.CODECS[wire.MSGPACK].decode(frame, wire.STATION_MESSAGES)
    assert caught.value.code == code


def test_json_rejects_bad_base64_and_binary_frames() -> None:
    codec = wire.CODECS[wire.JSON]
    with pytest.raises(ProtocolViolation) as caught:
        codec.decode('{"t":"thumb","jpeg":"%%%"}', wire.STATION_MESSAGES)
    assert caught.value.code == "bad_field"
    with pytest.raises(ProtocolViolation):
        codec.decode(b"{}", wire.STATION_MESSAGES)


def test_subprotocol_choice() -> None:
    assert wire.pick_subprotocol([]) == wire.MSGPACK
    assert wire.pick_subprotocol(["x", wire.JSON]) == wire.JSON
    assert wire.pick_subprotocol(["x"]) is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_escape_as_anything_but_protocol_violation(frame: bytes) -> None:
    try:
        wire.CODECS[wire.MSGPACK].decode(frame, wire.STATION_MESSAGES)
    except ProtocolViolation:
        pass


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_escapes_as_anything_but_protocol_violation(frame: str) -> None:
    try:
        wire.CODECS[wire.JSON].decode(frame, wire.STATION_MESSAGES)
    except ProtocolViolation:
        pass
