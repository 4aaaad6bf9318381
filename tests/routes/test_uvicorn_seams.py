"""Pins every uvicorn / websockets internal that ``hub.routes.uvicorn_seams`` relies on.

If one of these fails after an upgrade, re-read ``WebSocketsSansIOProtocol`` in the new
uvicorn and adapt the seam (and its docstring) before anything else: the watch tests would
otherwise fail in confusing ways, or worse, pass while frames go out of order or compressed
connections get uncompressed frames.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import re
import weakref
from collections.abc import Callable
from typing import Any

from starlette.types import Message, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.uri import parse_uri

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


def test_queue_and_writable_are_used_only_through_what_the_slim_versions_offer() -> None:
    # Seams 6 and 7: ReceiveQueue and WritableFlag stand in for asyncio.Queue and asyncio.Event.
    protocol_source = source(WebSocketsSansIOProtocol)
    assert set(re.findall(r"self\.queue\.(\w+)", protocol_source)) == {"put_nowait", "get", "empty"}
    assert set(re.findall(r"self\.writable\.(\w+)", protocol_source)) == {"wait", "set", "clear"}
    assert protocol_source.count("self.queue: asyncio.Queue[ASGIReceiveEvent] = asyncio.Queue()") == 1
    assert len(re.findall(r"self\.(queue|writable)\b(?!\.)", protocol_source)) == 2  # only assigned in __init__
    # One reader: only receive() gets.
    assert source(WebSocketsSansIOProtocol.receive).count("await self.queue.get()") == 1
    assert protocol_source.count("self.queue.get()") == 1


def test_request_and_response_are_read_only_until_accept() -> None:
    # Seam 8: after the accept message (handshake_complete), nothing reads them.
    protocol_source = source(WebSocketsSansIOProtocol)
    assert len(re.findall(r"self\.request\b", protocol_source)) == 1  # set in handle_connect, never read
    send = source(WebSocketsSansIOProtocol.send)
    assert len(re.findall(r"self\.response\b", send)) == 3
    assert "if not self.handshake_complete and self.initial_response is None:" in send
    assert send.index("self.response") > send.index('if message["type"] == "websocket.accept":')
    assert send.index("self.response") < send.index('elif message["type"] == "websocket.close":')
    assert len(re.findall(r"self\.response\b", protocol_source)) == 3 + 3  # handle_connect's and send's


def test_server_parser_only_delegates_once_the_request_is_parsed() -> None:
    # Seam 9: ServerProtocol.parse keeps `request` and then only runs Protocol.parse; that one
    # waits for each frame in reader.at_eof() and handles no BaseException (closing it is silent).
    server_parse = source(ServerProtocol.parse)
    assert "request = yield from Request.parse(" in server_parse
    assert server_parse.rstrip().endswith("yield from super().parse()")
    parse = source(Protocol.parse)
    assert "while True:\n                if (yield from self.reader.at_eof()):" in parse
    assert "finally" not in parse and "BaseException" not in parse and "GeneratorExit" not in parse
    assert "except:" not in parse


def handshaken() -> tuple[ClientProtocol, ServerProtocol, weakref.ref[Any]]:
    client = ClientProtocol(parse_uri("ws://127.0.0.1/ws/watch"))
    server = ServerProtocol()
    client.send_request(client.connect())
    server.receive_data(b"".join(client.data_to_send()))
    (request,) = server.events_received()
    assert isinstance(request, Request)
    server.send_response(server.accept(request))
    client.receive_data(b"".join(server.data_to_send()))
    client.events_received()
    held = weakref.ref(request)
    del request
    return client, server, held


def test_forget_handshake_frees_the_request_and_parses_on() -> None:
    client, server, request = handshaken()
    gc.collect()
    assert request() is not None  # the parser's local
    assert seams.forget_handshake(server)
    gc.collect()
    assert request() is None
    for payload in (b"hi", b"x" * 70_000):
        client.send_binary(payload)
        server.receive_data(b"".join(client.data_to_send()))
        assert server.events_received() == [Frame(Opcode.BINARY, payload)]
    client.send_close(1000)
    server.receive_data(b"".join(client.data_to_send()))
    assert server.close_rcvd is not None and server.close_rcvd.code == 1000


def test_forget_handshake_leaves_a_half_read_frame_alone() -> None:
    client, server, _ = handshaken()
    client.send_binary(b"payload")
    frame = b"".join(client.data_to_send())
    server.receive_data(frame[:1])  # in the buffer
    assert not seams.forget_handshake(server)
    server.receive_data(frame[1:6])  # header and mask read, the payload awaited: buffer empty
    assert not server.reader.buffer and not seams.forget_handshake(server)
    server.receive_data(frame[6:])
    assert server.events_received() == [Frame(Opcode.BINARY, b"payload")]
    assert seams.forget_handshake(server)  # between frames again
    assert not seams.forget_handshake(server)  # already done: nothing left to forget


async def test_receive_queue_hands_messages_to_its_reader_in_order() -> None:
    queue = seams.ReceiveQueue([{"n": 0}])
    assert not queue.empty()
    assert await queue.get() == {"n": 0} and queue.empty()
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)  # the reader is waiting
    assert not reader.done()
    queue.put_nowait({"n": 1})
    queue.put_nowait({"n": 2})
    assert await asyncio.wait_for(reader, 5) == {"n": 1}
    assert await queue.get() == {"n": 2} and queue.empty()
    waiting = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    waiting.cancel()  # a cancelled reader leaves the queue usable
    await asyncio.gather(waiting, return_exceptions=True)
    queue.put_nowait({"n": 3})
    assert await queue.get() == {"n": 3}


async def test_writable_flag_blocks_writers_while_cleared() -> None:
    flag = seams.WritableFlag(True)
    assert flag.is_set() and await flag.wait()
    flag.clear()
    writers = [asyncio.ensure_future(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in writers) and not flag.is_set()
    flag.set()
    assert await asyncio.wait_for(asyncio.gather(*writers), 5) == [True, True]


async def test_keep_server_send_runs_a_handed_off_loop_after_the_app_returned() -> None:
    order: list[str] = []

    async def loop() -> None:
        order.append("loop")

    async def endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        assert seams.hand_off(scope, loop)
        assert not seams.hand_off(scope, loop)  # one hand-off per connection
        order.append("returned")

    async def server_send(message: Message) -> None:
        pass

    async def server_receive() -> Message:
        return {"type": "websocket.connect"}

    scope: dict[str, Any] = {"type": "websocket"}
    await seams.KeepServerSend(endpoint)(scope, server_receive, server_send)
    assert order == ["returned", "loop"] and scope[seams.SERVER_SEND] is server_send
    assert not seams.hand_off({"type": "websocket"}, loop)  # no KeepServerSend: the caller runs it
    assert not seams.slim({"type": "websocket"})  # not uvicorn's own send: left alone
