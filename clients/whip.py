"""WHIP / WHEP over HTTP (RFC 9725 and the WHEP draft): POST an offer, DELETE the session.

The standard library's ``urllib`` in a worker thread: no extra dependency for office PCs,
HTTPS and system proxies included. Only non-trickle ICE is used (aiortc gathers every
candidate before ``setLocalDescription`` returns), so one POST and one DELETE per session.

Errors are :class:`HttpError` with the status and ``Retry-After`` (seconds), or
:class:`Unreachable` for anything below HTTP (refused, reset, DNS, timeout); callers map
them to backoff decisions.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urljoin

from clients import __version__

USER_AGENT = f"jaga-station/{__version__}"


class MediaHttpError(Exception):
    pass


class Unreachable(MediaHttpError):
    """No HTTP answer at all (refused, reset, DNS, TLS, timeout)."""

    def __init__(self, message: str, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class HttpError(MediaHttpError):
    def __init__(self, status: int, message: str, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True)
class Answer:
    sdp: str
    location: str  # absolute URL of the session, for DELETE
    links: tuple[str, ...]  # Link headers (ICE servers), for the log


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    parsed = email.utils.parsedate_to_datetime(value)
    return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def _request(url: str, method: str, token: str | None, body: bytes | None, timeout: float
             ) -> tuple[int, dict[str, str], list[str], bytes]:
    headers = {"User-Agent": USER_AGENT}
    if body is not None:
        headers["Content-Type"] = "application/sdp"
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        # url: the hub's (http/https, checked by config.validate) or the session Location it answered
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.headers.get_all("Link") or [], response.read()
    except urllib.error.HTTPError as exc:
        text = exc.read()[:300].decode("utf-8", "replace")
        raise HttpError(exc.code, text or exc.reason, _retry_after(exc.headers.get("Retry-After"))) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        refused = isinstance(reason, ConnectionRefusedError)
        raise Unreachable(f"{url}: {reason}", refused=refused) from None
    except (OSError, ValueError) as exc:
        raise Unreachable(f"{url}: {exc}", refused=isinstance(exc, ConnectionRefusedError)) from None


async def post_offer(url: str, sdp: str, token: str | None, timeout: float = 15.0) -> Answer:
    """POST an SDP offer; the answer and the session's absolute ``Location``."""
    status, headers, links, body = await asyncio.to_thread(_request, url, "POST", token, sdp.encode(), timeout)
    if status != 201:
        raise HttpError(status, "expected 201 Created", None)
    location = headers.get("Location") or headers.get("location")
    if not location:
        raise HttpError(status, "201 without a Location header", None)
    return Answer(body.decode("utf-8"), urljoin(url, location), tuple(links))


async def delete_session(location: str, token: str | None, timeout: float = 5.0) -> None:
    """End a session; a session the hub already forgot (404) counts as ended."""
    try:
        await asyncio.to_thread(_request, location, "DELETE", token, None, timeout)
    except HttpError as exc:
        if exc.status != 404:
            raise


async def get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """A plain GET (``check`` uses it for ``/healthz``); HTTP errors return their status."""
    try:
        status, _, _, body = await asyncio.to_thread(_request, url, "GET", None, None, timeout)
        return status, body
    except HttpError as exc:
        return exc.status, str(exc).encode()
