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

When any of that does not hold (another ws implementation, a wrapped ``send``, compression, a
full buffer), :func:`direct_writer` returns None or :meth:`DirectWriter.write` returns False,
and the watcher uses the ordinary ASGI ``send``; once the connection is closing, ``write``
returns None and the watcher sends nothing more.

The same connection is also made smaller for the hours a watcher sits idle (:func:`slim`;
measured in docs/benchmarks.md section 1). uvicorn builds every connection for the general
case; a watch socket, once accepted, only needs:

6. ``queue`` (an ``asyncio.Queue``: four deques of 760 bytes, for its getters, putters, items
   and an unused ``join`` event) is only used through ``put_nowait``, ``get`` and ``empty``,
   by one reader, the app: :class:`ReceiveQueue` does that with a list made on demand.
7. ``writable`` (an ``asyncio.Event``, one more deque) is only used through ``wait``, ``set``,
   ``clear`` and ``is_set``: :class:`WritableFlag` keeps its waiters in a list made on demand.
8. ``request`` and ``response`` (the handshake's header objects, ~3 KB) are read only until
   the ``websocket.accept`` message is sent: dropped after it.
9. ``conn.parser``, websockets' ``ServerProtocol.parse()`` generator, keeps the handshake
   request in a local for the connection's life: it only delegates to ``Protocol.parse()``
   (``yield from super().parse()``) once the request is parsed. While that is waiting for
   the next frame (suspended in ``reader.at_eof()`` on an empty buffer: no frame half read),
   a fresh ``Protocol.parse()`` is in the same state, and replaces it (closing the old one
   runs no handler: ``GeneratorExit`` is not an ``Exception``).

And :class:`KeepServerSend` runs a long-lived socket's loop *after* the app stack returned
(:func:`hand_off`), so the idle socket's task does not hold a suspended coroutine for every
middleware, the router and the endpoint while it waits.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.protocol import Protocol, State
from websockets.server import ServerProtocol
from websockets.streams import StreamReader

SERVER_SEND = "jaga.server_send"  # scope key: the server's own send callable
AFTER_APP = "jaga.after_app"  # scope key: what KeepServerSend runs once the app stack returned
# A frame is written directly only while the socket's buffer holds at most this much: the
# default low-water mark of asyncio and uvloop transports (64 KiB / 4). At or under it the
# transport is never paused, so a direct write happens exactly when uvicorn's send would
# have written at once; over it the ASGI send decides (write, or block → drain, backlog).
WRITE_BUFFER_LIMIT = 16 * 1024


class KeepServerSend:
    """ASGI middleware (outermost): records the server's ``send`` for WebSocket scopes, and
    runs what an endpoint handed off (:func:`hand_off`) once the app stack has returned."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
            return
        scope[SERVER_SEND] = send
        scope[AFTER_APP] = None
        await self.app(scope, receive, send)
        after: Callable[[], Awaitable[None]] | None = scope.pop(AFTER_APP, None)
        if after is not None:
            await after()


def hand_off(scope: Scope, after: Callable[[], Awaitable[None]]) -> bool:
    """Have :class:`KeepServerSend` await ``after()`` once the app stack has returned; False
    when it is not in the stack (then the caller awaits it itself).

    The endpoint must return right after a True, and ``after`` must acquire what it holds
    itself (in its own ``try``/``finally``): if the stack raises on the way out, it never runs.
    """
    if AFTER_APP not in scope or scope[AFTER_APP] is not None:
        return False
    scope[AFTER_APP] = after
    return True


class DirectWriter:
    """Writes complete frames to one accepted uvicorn WebSocket connection's transport."""

    __slots__ = ("_protocol", "_transport", "limit")

    def __init__(self, protocol: WebSocketsSansIOProtocol, limit: int = WRITE_BUFFER_LIMIT) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self.limit = limit

    def write(self, frame: bytes) -> bool | None:
        """Write ``frame`` (from :mod:`hub.core.wsframe`) now: True; False when the caller
        must use the ASGI ``send`` instead (the socket is not keeping up); None when the
        connection is closing or gone, and nothing should be sent at all.

        Between a reset seen by asyncio (the transport closing) and uvicorn's
        ``connection_lost`` (a loop turn later, when its ``send`` starts refusing), the ASGI
        ``send`` still writes to the dead transport, which logs a warning per write from the
        fifth on: 5,000 watchers gone at once, in the middle of a fan-out, wrote 78,000 of
        them in a second ("A Jember day", seventh step)."""
        protocol = self._protocol
        transport = self._transport
        if protocol.close_sent or transport.is_closing():
            return None
        if not protocol.writable.is_set() or transport.get_write_buffer_size() > self.limit:
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


class ReceiveQueue:
    """What uvicorn's ``protocol.queue`` is used for (seam 6), for one reader, with no deques:
    the connection's received messages (a disconnect included) until the app reads them."""

    __slots__ = ("_items", "_waiter")

    def __init__(self, items: list[Any] | None = None) -> None:
        self._items = items or None  # uvicorn pauses reading per message: rarely more than one
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = [item]
        else:
            self._items.append(item)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def empty(self) -> bool:
        return not self._items

    async def get(self) -> Any:
        while not self._items:
            if self._waiter is not None:
                raise RuntimeError("ReceiveQueue has one reader")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.pop(0)
        if not self._items:
            self._items = None
        return item


class WritableFlag:
    """What uvicorn's ``protocol.writable`` event is used for (seam 7), waiters made on demand."""

    __slots__ = ("_set", "_waiters")

    def __init__(self, value: bool) -> None:
        self._set = value
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
        return True


def slim(scope: Scope) -> bool:
    """Shrink this accepted uvicorn WebSocket connection for a long idle life (seams 6-9);
    False (nothing changed) where it is not uvicorn's sans-I/O protocol or not accepted yet.

    Call from the app's own task after ``websocket.accept``, with no ``receive`` or ``send``
    of this connection pending (nothing may be waiting on the objects replaced).
    """
    send: Any = scope.get(SERVER_SEND)
    protocol = getattr(send, "__self__", None)
    if type(protocol) is not WebSocketsSansIOProtocol or not protocol.handshake_complete \
            or protocol.initial_response is not None:
        return False
    queue = protocol.queue
    if isinstance(queue, asyncio.Queue):
        if queue._getters or protocol.writable._waiters:  # type: ignore[attr-defined]  # a reader waits: not now
            return False
        items = []
        while not queue.empty():
            items.append(queue.get_nowait())
        protocol.queue = ReceiveQueue(items)  # type: ignore[assignment]
    if isinstance(protocol.writable, asyncio.Event):
        protocol.writable = WritableFlag(protocol.writable.is_set())  # type: ignore[assignment]
    protocol.request = None  # type: ignore[assignment]
    protocol.response = None  # type: ignore[assignment]
    forget_handshake(protocol.conn)
    return True


def forget_handshake(conn: ServerProtocol) -> bool:
    """Let go of the handshake request ``conn``'s parser holds (seam 9); False when the
    parser is not idle between frames right now (then it is left as it is)."""
    outer = conn.parser
    inner = getattr(outer, "gi_yieldfrom", None)
    waiting = getattr(inner, "gi_yieldfrom", None)
    if (getattr(outer, "gi_code", None) is not ServerProtocol.parse.__code__
            or getattr(inner, "gi_code", None) is not Protocol.parse.__code__
            or getattr(waiting, "gi_code", None) is not StreamReader.at_eof.__code__
            or conn.reader.buffer or conn.reader.eof or conn.state is not State.OPEN):
        return False
    fresh = Protocol.parse(conn)
    next(fresh)  # runs to the same point: at_eof() on an empty buffer
    conn.parser = fresh
    return True
