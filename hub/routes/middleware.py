"""What every request goes through: the operator session cookie, and client errors as JSON.

:class:`SessionMiddleware` resolves the cookie once per request (HTTP and WebSocket) into
``scope["jaga.operator"]`` and ``scope["jaga.session"]``, which :mod:`hub.routes.roles` reads.
:func:`client_error` answers every :class:`ClientError` a route raises as
``{"error": {"code", "message"}}`` with its HTTP status.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from hub.errors import ClientError, RateLimited, Unavailable
from hub.routes import media
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
                found = await hub.auth.resolve_session(cookie)
                if found:
                    scope["jaga.operator"], scope["jaga.session"] = found
        await self.app(scope, receive, send)


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
        headers["Retry-After"] = str(max(1, round(exc.retry_after)))
    if request.url.path.startswith(("/whip/", "/whep/")):
        headers.update(media.CORS)  # WHIP/WHEP clients on other origins must read the error
    return JSONResponse({"error": {"code": exc.code, "message": exc.message}}, status_code=exc.http_status,
                        headers=headers)
