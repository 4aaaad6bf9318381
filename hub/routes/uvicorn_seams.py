"""Every reach into uvicorn's WebSocket internals, in one place: the watch fan-out's fast path.

The fan-out writes one pre-encoded frame (:mod:`hub.core.wsframe`) straight to each watcher's
asyncio transport instead of calling the ASGI ``send`` per watcher, which re-frames the same
payload per connection and awaits an event. That is only correct while uvicorn's own ``send``
would have written exactly those bytes at once. What this relies on, in uvicorn's
``websockets-sansio`` implementation (``WebSocketsSansIOProtocol``, verified against the
version in ``tests/routes/test_uvicorn_seams.py``, which pins each point):

1. The server's ``send`` is the bound method ``protocol.send``; :class:`KeepServerSend`, the
   outermost middleware, records it in the scope, since Starlette's exception middleware
   hands the endpoint a wrapper instead.
2. ``send`` of a ``websocket.send`` message frames it with ``conn`` (a websockets
   ``ServerProtocol``: unmasked, whole message, no other state kept) and writes
   ``b"".join(conn.data_to_send())`` to ``protocol.transport`` at once, with no buffer of its
   own, so a direct ``transport.write`` keeps the order of everything written either way.
3. It first awaits ``protocol.writable``, cleared by ``pause_writing`` (the transport's
   buffer over its high-water mark) and set by ``resume_writing``.
4. ``conn.extensions`` lists the negotiated extensions; empty means no permessage-deflate,
   so frames are the same bytes on every connection.
5. ``protocol.close_sent`` is set once a close frame went out (by the app, a protocol error
   or the keepalive); a peer's close or a lost connection closes the transport.

When any of that does not hold (another ws implementation, a wrapped ``send``, compression,
closing), :func:`direct_writer` returns None or :meth:`DirectWriter.write` returns False, and
the watcher uses the ordinary ASGI ``send``.
"""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import State

SERVER_SEND = "jaga.server_send"  # scope key: the server's own send callable
# A frame is written directly only while the socket's buffer holds at most this much: the
# default low-water mark of asyncio and uvloop transports (64 KiB / 4). At or under it the
# transport is never paused, so a direct write happens exactly when uvicorn's send would
# have written at once; over it the ASGI send decides (write, or block → drain, backlog).
WRITE_BUFFER_LIMIT = 16 * 1024


class KeepServerSend:
    """ASGI middleware (outermost): records the server's ``send`` for WebSocket scopes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            scope[SERVER_SEND] = send
        await self.app(scope, receive, send)


class DirectWriter:
    """Writes complete frames to one accepted uvicorn WebSocket connection's transport."""

    __slots__ = ("_protocol", "_transport", "limit")

    def __init__(self, protocol: WebSocketsSansIOProtocol, limit: int = WRITE_BUFFER_LIMIT) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self.limit = limit

    def write(self, frame: bytes) -> bool:
        """Write ``frame`` (from :mod:`hub.core.wsframe`) now; False when the caller must
        use the ASGI ``send`` instead (closing, or the socket is not keeping up)."""
        protocol = self._protocol
        transport = self._transport
        if (protocol.close_sent or transport.is_closing() or not protocol.writable.is_set()
                or transport.get_write_buffer_size() > self.limit):
            return False
        transport.write(frame)
        return True


def direct_writer(scope: Scope, limit: int = WRITE_BUFFER_LIMIT) -> DirectWriter | None:
    """A writer for this accepted WebSocket, or None where the fast path does not apply.

    Call after ``websocket.accept`` (the extensions are negotiated by then).
    """
    send: Any = scope.get(SERVER_SEND)
    protocol = getattr(send, "__self__", None)
    if type(protocol) is not WebSocketsSansIOProtocol or getattr(send, "__func__", None) is not \
            WebSocketsSansIOProtocol.send:
        return None  # another server or ws implementation, or a wrapped send
    if not protocol.handshake_complete or protocol.close_sent or protocol.initial_response is not None:
        return None
    if protocol.conn.extensions or protocol.conn.state is not State.OPEN:
        return None  # permessage-deflate: frames differ per connection
    if protocol.transport is None or protocol.transport.is_closing():
        return None
    return DirectWriter(protocol, limit)
