"""The real client behind trusted reverse proxies, applied once per request (HTTP and WebSocket).

:class:`RealClientMiddleware` rewrites ``scope["client"]`` (and ``scope["scheme"]``) with the
rule of :mod:`hub.core.proxies`, so every consumer that reads ``request.client`` (media
caps per address, the login lock-out, the audit log, the watch caps) sees the real client.
It lives in the app, not in uvicorn's flags, so an in-process test hub behaves exactly as
``jaga-hub serve``; the servers run with uvicorn's own ``proxy_headers`` off, since uvicorn
trusts 127.0.0.1 by default and would rewrite the scope before we see the direct peer.
The direct peer stays in ``scope["jaga.peer"]``.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from hub.core.proxies import TrustedProxies, forwarded_for

PEER = "jaga.peer"  # scope key: the direct peer's address, before any rewrite


class RealClientMiddleware:
    def __init__(self, app: ASGIApp, trusted: TrustedProxies) -> None:
        self.app = app
        self.trusted = trusted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and PEER not in scope:
            client = scope.get("client")
            peer = client[0] if client else ""
            scope[PEER] = peer
            if self.trusted and self.trusted.trusts(peer):
                xff: list[str] = []
                proto: list[str] = []
                for key, value in scope.get("headers", ()):
                    if key == b"x-forwarded-for":
                        xff.append(value.decode("latin-1"))
                    elif key == b"x-forwarded-proto":
                        proto.append(value.decode("latin-1"))
                real = self.trusted.client_address(peer, forwarded_for(xff))
                if real != peer:
                    scope["client"] = (real, 0)  # the client's port is not forwarded
                http_scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
                chosen = self.trusted.scheme(peer, forwarded_for(proto), http_scheme)
                if chosen != http_scheme:
                    websocket = scope["type"] == "websocket"
                    scope["scheme"] = {"http": "ws", "https": "wss"}[chosen] if websocket else chosen
        await self.app(scope, receive, send)
