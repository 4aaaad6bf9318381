"""What every request goes through: the operator session cookie, and client errors as JSON.

:class:`SessionMiddleware` resolves the cookie once per request (HTTP and WebSocket) into
``scope["jaga.operator"]`` and ``scope["jaga.session"]``, which :mod:`hub.routes.roles` reads.
:func:`client_error` answers every :class:`ClientError` a route raises as
``{"error": {"code", "message"}}`` with its HTTP status.
"""

from __future__ import annotations

import json
import math

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.errors import ClientError, RateLimited, Unavailable
from hub.routes import hls, media
from hub.services.auth import SESSION_COOKIE


class SessionMiddleware:
    """Resolves the operator session cookie once per request (HTTP and WebSocket)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            scope["jaga.operator"] = None
            scope["jaga.session"] = None
            hub = scope["app"].state.hub if "app" in scope else None
            cookie = _cookie(scope, SESSION_COOKIE)
            if cookie and hub is not None:
                try:
                    found = await hub.auth.resolve_session(cookie)
                except Unavailable as exc:
                    # This runs outside the app's error handlers (it wraps them), so an
                    # exception here would be a 500: answer as they would, 503 + Retry-After.
                    hub.metrics.errors.labels(exc.code).inc()
                    await _unavailable(scope, send, exc)
                    return
                if found:
                    scope["jaga.operator"], scope["jaga.session"] = found
        await self.app(scope, receive, send)


def retry_after_header(seconds: float) -> str:
    """Whole seconds, rounded up: a client that comes back when told must not find the same
    refusal (a `busy` queue told 9.4 s, back after 9, would be turned away again)."""
    return str(max(1, math.ceil(seconds)))


async def _unavailable(scope: Scope, send: Send, exc: Unavailable) -> None:
    body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", retry_after_header(exc.retry_after).encode())]
    if scope["type"] == "http":
        if scope.get("path", "").startswith(("/whip/", "/whep/")):  # as client_error does
            headers += [(k.lower().encode(), v.encode()) for k, v in media.CORS.items()]
        await send({"type": "http.response.start", "status": exc.http_status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):  # a refused handshake, with a reason
        await send({"type": "websocket.http.response.start", "status": exc.http_status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1013, "reason": "try again later"})


# For everything that is not a page (JSON, CSV, JPEG, SDP): nothing in it may run or load,
# and no browser may guess a type other than the one declared (a thumbnail sniffed as HTML).
# Pages send their own, stricter-for-pages policy (hub.routes.pages) and keep it.
API_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'; base-uri 'none'"),
)


class SecurityHeaders:
    """Adds :data:`API_SECURITY_HEADERS` to every HTTP response that lacks them."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers += [(name, value) for name, value in API_SECURITY_HEADERS if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == name:
                    return str(v)
    return None


async def client_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ClientError)  # registered for ClientError only
    hub = request.app.state.hub
    hub.metrics.errors.labels(exc.code).inc()
    headers = {}
    if isinstance(exc, (RateLimited, Unavailable)):
        headers["Retry-After"] = retry_after_header(exc.retry_after)
    if request.url.path.startswith(("/whip/", "/whep/")):
        headers.update(media.CORS)  # WHIP/WHEP clients on other origins must read the error
    elif request.url.path.startswith("/hls/"):  # players elsewhere read it; no cache keeps it (routes/hls.py)
        headers.update({**hls.CORS, "Cache-Control": "no-store"})
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.http_status,
                        headers=headers)
