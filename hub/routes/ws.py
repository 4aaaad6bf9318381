"""WebSocket edges: ``/ws/station`` (agents) and ``/ws/watch`` (wall and public pages).

Thin by design: frames in, codec, service call, frames out. Every rule about what a frame
may be lives in :mod:`jaga.wire`; every rule about presence in the services.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from hub.core.origin import same_origin
from hub.core.token_bucket import TokenBucket
from hub.core.watch_admission import Refusal
from hub.errors import ClientError, NotAuthenticated, ProtocolViolation, RateLimited, TooLarge, Unavailable
from hub.routes import uvicorn_seams
from hub.routes.roles import allow
from hub.services.stations import StationSession
from hub.services.watchers import Watcher
from jaga import wire

log = logging.getLogger("jaga.ws")

# A station that said goodbye (1000/1001), or a hub going down (uvicorn closes its sockets
# with 1012 before the app's shutdown runs): offline at once, not "reconnecting".
CLEAN_CLOSE_CODES = {1000, 1001, 1012}


class SocketPeer:
    """The station service's view of one socket: send a message, close with a code."""

    def __init__(self, websocket: WebSocket, codec: wire.Codec) -> None:
        self.websocket = websocket
        self.codec = codec

    async def send(self, message: dict[str, Any]) -> None:
        frame = self.codec.encode(message)
        try:
            if isinstance(frame, bytes):
                await self.websocket.send_bytes(frame)
            else:
                await self.websocket.send_text(frame)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the reader notices the disconnect and cleans up

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            try:
                await self.websocket.close(code, reason)
            except (RuntimeError, OSError):
                pass


async def _accept(websocket: WebSocket) -> wire.Codec | None:
    offered = websocket.scope.get("subprotocols") or []
    name = wire.pick_subprotocol(offered)
    if name is None:
        await websocket.accept()
        await websocket.close(4400, f"subprotocol must be one of {', '.join(wire.SUBPROTOCOLS)}")
        return None
    await websocket.accept(subprotocol=name if offered else None)
    return wire.CODECS[name]


def _frame(message: Message) -> bytes | str | None:
    return message.get("bytes") if message.get("bytes") is not None else message.get("text")


def _decode(codec: wire.Codec, frame: bytes | str, schema: dict[str, Any]) -> dict[str, Any]:
    size = len(frame)
    if size > wire.MAX_THUMB_FRAME:
        raise TooLarge(f"frame of {size} bytes is over {wire.MAX_THUMB_FRAME}")
    message = codec.decode(frame, schema)
    if size > wire.MAX_FRAME and message["t"] != "thumb":
        raise TooLarge(f"frame of {size} bytes is over {wire.MAX_FRAME}")
    return message


@allow("station")
async def station_socket(websocket: WebSocket) -> None:
    hub = websocket.app.state.hub
    codec = await _accept(websocket)
    if codec is None:
        return
    peer = SocketPeer(websocket, codec)
    metrics = hub.metrics
    try:
        first = await asyncio.wait_for(websocket.receive(), hub.settings.presence.hello_timeout_s)
    except TimeoutError:
        metrics.errors.labels("hello_timeout").inc()
        await peer.close(4400, "no hello in time")
        return
    if first["type"] == "websocket.disconnect":
        return
    try:
        hello = _decode(codec, _frame(first) or b"", wire.STATION_MESSAGES)
        if hello["t"] != "hello":
            raise ProtocolViolation("the first message must be hello")
        session, welcome = await hub.stations.open_session(hello, peer)
    except ClientError as exc:
        metrics.errors.labels(exc.code).inc()
        code = exc.close_code if isinstance(exc, (NotAuthenticated, TooLarge)) else 4400
        if isinstance(exc, Unavailable):
            code = 1013  # "try again later": e.g. the token store is unreachable
        await peer.send(wire.error(exc.code, exc.message))
        await peer.close(code, exc.message[:120])
        return
    metrics.messages_in.labels("station").inc()
    await peer.send(welcome)
    await _station_loop(hub, session, peer, codec)


async def _station_loop(hub: Any, session: StationSession, peer: SocketPeer, codec: wire.Codec) -> None:
    clean = False
    try:
        while True:
            received = await peer.websocket.receive()
            if received["type"] == "websocket.disconnect":
                clean = received.get("code") in CLEAN_CLOSE_CODES
                return
            hub.metrics.messages_in.labels("station").inc()
            try:
                message = _decode(codec, _frame(received) or b"", wire.STATION_MESSAGES)
                if message["t"] == "hello":
                    raise ProtocolViolation("already authenticated", code="unexpected")
                await hub.stations.handle(session, message)
            except (RateLimited, TooLarge) as exc:
                hub.metrics.errors.labels(exc.code).inc()
                await peer.send(wire.error(exc.code, exc.message))
                await peer.close(exc.close_code, exc.message[:120])
                return
            except ClientError as exc:
                hub.metrics.errors.labels(exc.code).inc()
                await peer.send(wire.error(exc.code, exc.message))
    except WebSocketDisconnect as exc:
        clean = exc.code in CLEAN_CLOSE_CODES
    finally:
        await hub.stations.close_session(session, clean)


class WatchEndpoint:
    """``/ws/watch`` as a raw ASGI endpoint: Starlette adds no per-send wrapper to a class
    endpoint, and the watcher writes ASGI messages straight to the server's ``send``."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await watch_socket(WebSocket(scope, receive, send), send)


async def watch_socket(websocket: WebSocket, asgi_send: Any) -> None:
    """Accept and check a watch socket, then hand its loop (:func:`_watch`) to the outermost
    middleware: a watcher idles for hours, and awaited here it would keep a suspended frame
    of every middleware, the router and this endpoint alive all that time."""
    hub = websocket.app.state.hub
    codec = await _accept(websocket)
    if codec is None:
        return
    operator = websocket.scope.get("jaga.operator") is not None
    origin = websocket.headers.get("origin")
    if operator and origin is not None and not same_origin(origin, scheme=websocket.url.scheme,
                                                           host=websocket.headers.get("host"),
                                                           public_url=hub.settings.public_url):
        # A page on another site opened this socket with the operator's cookie (CSWSH).
        hub.metrics.errors.labels("forbidden_origin").inc()
        await SocketPeer(websocket, codec).close(4403, "the operator view needs a same-origin page")
        return
    since_text = websocket.query_params.get("since", "")
    watch = WatchOpening(
        address=websocket.client.host if websocket.client else "unknown", operator=operator,
        since=int(since_text) if since_text.isdigit() else None,
        # The operator view ends with the session that opened it (logout, expiry, revocation).
        session_id=websocket.scope.get("jaga.session") if operator else None)
    uvicorn_seams.slim(websocket.scope)  # uvicorn's connection, made smaller for an idle life
    # Pre-framed event writes straight to the transport where uvicorn allows it (no compression).
    writer = uvicorn_seams.direct_writer(websocket.scope)

    watch_loop = functools.partial(_watch, hub, websocket, asgi_send, codec, watch, writer)
    if not uvicorn_seams.hand_off(websocket.scope, watch_loop):
        await watch_loop()


class WatchOpening:
    """What the watch loop keeps from the handshake (not the request itself)."""

    __slots__ = ("address", "operator", "since", "session_id")

    def __init__(self, address: str, operator: bool, since: int | None, session_id: str | None) -> None:
        self.address = address
        self.operator = operator
        self.since = since
        self.session_id = session_id


async def _watch(hub: Any, websocket: WebSocket, asgi_send: Any, codec: wire.Codec, watch: WatchOpening,
                 writer: uvicorn_seams.DirectWriter | None) -> None:
    refused = hub.watchers.admission.admit(watch.address)
    if refused is not None:
        hub.metrics.errors.labels(refused.value).inc()
        if refused is Refusal.NODE_FULL:
            await SocketPeer(websocket, codec).close(1013, "this node has all the watchers it can take")
        else:
            await SocketPeer(websocket, codec).close(4429, "too many watch sockets from this address")
        return
    watchers = hub.watchers
    session_id = watch.session_id
    watcher: Watcher | None = None
    handle = 0
    try:
        presence = hub.settings.presence
        bucket = TokenBucket(presence.watch_messages_per_s, presence.watch_burst, presence.watch_burst, hub.clock())
        watcher = Watcher(asgi_send, codec, watch.operator, presence.watcher_backlog,
                          direct=writer.write if writer is not None else None)
        watchers.attach(watcher, watch.since)
        if session_id:
            handle = hub.operator_access.watch_opened(session_id, _closer(websocket, codec, watcher))
        # Only reads here: a write that fails means the peer is gone, and the server then
        # delivers a disconnect to this receive. No extra task per watcher (memory, CPU).
        while True:
            received = await websocket.receive()
            if received["type"] == "websocket.disconnect":
                return
            hub.metrics.messages_in.labels("watch").inc()
            frame = _frame(received) or b""
            if len(frame) > wire.MAX_FRAME:
                await SocketPeer(websocket, codec).close(1009, "frame too big")
                return
            if not bucket.take(hub.clock()):
                hub.metrics.errors.labels(RateLimited.code).inc()
                watcher.push(codec.encode(wire.error(RateLimited.code, "too many messages")))
                await SocketPeer(websocket, codec).close(RateLimited.close_code, "too many messages")
                return
            try:
                codec.decode(frame, wire.WATCH_MESSAGES)
                reply = {"t": "pong", "server_time": hub.clock()}
            except ClientError as exc:
                hub.metrics.errors.labels(exc.code).inc()
                reply = wire.error(exc.code, exc.message)
            watcher.push(codec.encode(reply))  # through the outbox, in order with the events
    except (WebSocketDisconnect, RuntimeError, OSError):
        return
    finally:
        if watcher is not None:
            watchers.detach(watcher)
        if handle:
            hub.operator_access.watch_closed(session_id, handle)
        watchers.admission.release(watch.address)


def _closer(websocket: WebSocket, codec: wire.Codec, watcher: Watcher) -> Any:
    async def close() -> None:
        watcher.close()  # nothing more is sent; the reader sees the disconnect and detaches
        await SocketPeer(websocket, codec).close(NotAuthenticated.close_code, "operator session ended")
    return close


routes = [
    WebSocketRoute("/ws/station", station_socket),
    WebSocketRoute("/ws/watch", allow("public", "operator")(WatchEndpoint())),
]
