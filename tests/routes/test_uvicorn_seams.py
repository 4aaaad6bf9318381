"""Pins every uvicorn / websockets internal that ``hub.routes.uvicorn_seams`` relies on.

If one of these fails after an upgrade, re-read ``WebSocketsSansIOProtocol`` in the new
uvicorn and adapt the seam (and its docstring) before anything else: the watch tests would
otherwise fail in confusing ways, or worse, pass while frames go out of order or compressed
connections get uncompressed frames.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State
from websockets.server import ServerProtocol

from hub.core import wsframe
from hub.routes import uvicorn_seams as seams
from tests.locked import check_locked


def source(obj: type | Callable[..., object]) -> str:
    return inspect.getsource(obj)


def test_versions_are_the_locked_ones() -> None:
    # The source checks below were last re-read against uvicorn 0.55.0 and websockets 17.4.
    check_locked("uvicorn", "websockets")


def test_send_frames_with_conn_and_writes_the_bytes_to_the_transport_at_once() -> None:
    # Seams 2 and 3: no buffer of uvicorn's own between conn and the transport.
    send = source(WebSocketsSansIOProtocol.send)
    assert "await self.writable.wait()" in send
    assert "self.conn.send_binary(bytes_data)" in send
    assert "self.conn.send_text(text_data.encode())" in send
    assert "output = self.conn.data_to_send()\n                    self.transport.write(b\"\".join(output))" in send
    assert "elif not self.close_sent and self.initial_response is None:" in send
    assert "self.writable.clear()" in source(WebSocketsSansIOProtocol.pause_writing)
    assert "self.writable.set()" in source(WebSocketsSansIOProtocol.resume_writing)
    # Nothing else sends data frames (pings/pongs/closes are whole control frames).
    assert "fin=False" not in source(WebSocketsSansIOProtocol)


def test_compression_is_an_extension_only_when_configured() -> None:
    # Seam 4: conn.extensions empty ⇔ no permessage-deflate on this connection.
    init = source(WebSocketsSansIOProtocol.__init__)
    assert "if self.config.ws_per_message_deflate:" in init
    assert "self.conn = ServerProtocol(\n            extensions=extensions," in init
    assert ServerProtocol().extensions == []


def test_close_sent_and_closing_transport_mark_the_end() -> None:
    # Seam 5.
    assert "self.close_sent = True" in source(WebSocketsSansIOProtocol.send)
    assert "self.close_sent = True" in source(WebSocketsSansIOProtocol.keepalive_timeout)
    assert "self.transport.close()" in source(WebSocketsSansIOProtocol.handle_close)
    assert "self.transport.close()" in source(WebSocketsSansIOProtocol.shutdown)
    init = source(WebSocketsSansIOProtocol.__init__)
    assert "self.close_sent = False" in init and "self.handshake_complete = False" in init


def test_handshake_complete_without_accept_is_told_apart() -> None:
    # `handshake_complete` is set on six paths: accept, and five that are no open connection
    # (lost connection, a rejected upgrade, an app's close or HTTP denial response, and since
    # uvicorn 0.55 an unparsable handshake). Those set `initial_response` or `close_sent`, or
    # close the transport, which direct_writer checks besides the flag.
    protocol_source = source(WebSocketsSansIOProtocol)
    assert protocol_source.count("self.handshake_complete = True") == 6
    denial = 'self.initial_response = (message["status"], headers, b"")\n                self.handshake_complete = True'
    assert denial in protocol_source
    denied = source(WebSocketsSansIOProtocol.handle_handshake_exception)
    assert "self.handshake_complete = True" in denied and "self.close_sent = True" in denied
    writer = source(seams.direct_writer)
    assert "protocol.close_sent" in writer and "protocol.initial_response is not None" in writer


def test_uvicorn_would_write_exactly_our_frames() -> None:
    # What uvicorn's send writes for a message, without extensions, is our pre-encoded frame.
    conn = ServerProtocol(state=State.OPEN)
    for payload in (b"", b"x" * 125, b"y" * 126, b"z" * 70_000):
        conn.send_binary(payload)
        assert b"".join(conn.data_to_send()) == wsframe.binary_frame(payload)
        conn.send_text(payload.decode().encode())
        assert b"".join(conn.data_to_send()) == wsframe.text_frame(payload.decode())


def test_no_fast_path_without_uvicorns_own_send() -> None:
    async def wrapped(message: dict[str, object]) -> None:  # e.g. another server's send
        pass

    assert seams.direct_writer({"type": "websocket", seams.SERVER_SEND: wrapped}) is None
    assert seams.direct_writer({"type": "websocket"}) is None
