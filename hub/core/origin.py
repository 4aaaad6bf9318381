"""Same-origin checks for browser requests that carry an operator's cookie.

A browser sends ``Origin`` with every WebSocket handshake, and a page on any site may open a
WebSocket to the hub: the browser attaches the hub's cookies (``SameSite`` stops that only
across *sites*, and a sibling subdomain is the same site). So an endpoint that gives more to
a cookie than to nobody (the operator view of ``/ws/watch``) checks that ``Origin`` is the
hub itself: its ``public_url``, or the scheme and ``Host`` the request arrived with (through
a trusted proxy, the client's scheme). A request without ``Origin`` is not from a page and
cannot be made by one on a victim's behalf. Pure: strings in, a bool out.
"""

from __future__ import annotations

from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str | None:
    """``scheme://host[:port]``, lower-case, the default port left out; None if not http(s)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"  # IPv6 literal
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def same_origin(origin: str, *, scheme: str, host: str | None, public_url: str) -> bool:
    """Whether the ``Origin`` header ``origin`` is this hub.

    ``scheme`` is the request's (``http``/``https``/``ws``/``wss``), ``host`` its ``Host``
    header, ``public_url`` the hub's ``hub.public_url``.
    """
    presented = origin_of(origin)
    if presented is None:
        return False  # "null" (sandboxed frames, file:) and garbage are never the hub
    allowed = {origin_of(public_url)}
    if host:
        http_scheme = "https" if scheme in ("https", "wss") else "http"
        allowed.add(origin_of(f"{http_scheme}://{host}"))
    return presented in allowed
