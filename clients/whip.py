"""WHIP / WHEP over HTTP (RFC 9725 and the WHEP draft): POST an offer, DELETE the session.

The standard library's ``urllib`` in a worker thread: no extra dependency for office PCs,
HTTPS and system proxies included. Only non-trickle ICE is used (aiortc gathers every
candidate before ``setLocalDescription`` returns), so one POST and one DELETE per session.

HTTPS is verified against the system's CAs, or against the station's ``ca_file`` when the
caller passes its context (``context=config.tls_context()``). A redirect's target (another
node of the hub) is verified with the same context.

Errors are :class:`HttpError` with the status and ``Retry-After`` (seconds), or
:class:`Unreachable` for anything below HTTP (refused, reset, DNS, timeout); callers map
them to backoff decisions.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import ssl
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
    def __init__(self, status: int, message: str, retry_after: float | None, body: bytes = b"") -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.retry_after = retry_after
        self.body = body  # the answer's first bytes (the hub's ``{"error": {code, message}}``)


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


MAX_REDIRECTS = 3


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    """Hands every redirect back to :func:`_request`, which follows 307/308 itself: urllib
    refuses to repeat a POST, and would drop nothing it should keep anyway."""

    def redirect_request(self, req: urllib.request.Request, fp: object, code: int, msg: str,
                         headers: object, newurl: str) -> None:
        return None  # the 3xx surfaces as an HTTPError carrying its Location


_opener = urllib.request.build_opener(_KeepRedirects)


def _opener_for(context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    if context is None:
        return _opener  # the system's CAs
    return urllib.request.build_opener(_KeepRedirects, urllib.request.HTTPSHandler(context=context))


def _request(url: str, method: str, token: str | None, body: bytes | None, timeout: float,
             content_type: str = "application/sdp", context: ssl.SSLContext | None = None,
             ) -> tuple[int, dict[str, str], list[str], bytes]:
    """One request, following up to ``MAX_REDIRECTS`` 307/308 with the same method, body and
    token: a cluster node answers a WHEP for a stream held by another node with 307 to that
    node (the hub names it; an https URL is never followed to plain http)."""
    for _ in range(MAX_REDIRECTS):
        try:
            status, headers, links, answered = _request_once(url, method, token, body, timeout, content_type,
                                                             context)
            location = headers.get("Location") or headers.get("location")
            if location:  # relative to the node that answered, not to the first one asked
                headers["Location"] = urljoin(url, location)
            return status, headers, links, answered
        except _Redirect as redirect:
            target = urljoin(url, redirect.location)
            if not target.startswith(("http://", "https://")) or (url.startswith("https:")
                                                                    and not target.startswith("https:")):
                raise HttpError(redirect.status, f"refusing to follow a redirect to {target}", None) from None
            url = target
    raise HttpError(307, f"more than {MAX_REDIRECTS} redirects", None)


class _Redirect(Exception):
    def __init__(self, status: int, location: str) -> None:
        super().__init__(location)
        self.status = status
        self.location = location


def _request_once(url: str, method: str, token: str | None, body: bytes | None, timeout: float,
                  content_type: str = "application/sdp", context: ssl.SSLContext | None = None
                  ) -> tuple[int, dict[str, str], list[str], bytes]:
    headers = {"User-Agent": USER_AGENT}
    if body is not None:
        headers["Content-Type"] = content_type
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        # url: the hub's (http/https, checked by config.validate) or the session Location it answered
        with _opener_for(context).open(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.headers.get_all("Link") or [], response.read()
    except urllib.error.HTTPError as exc:
        location = exc.headers.get("Location") if exc.headers else None
        if exc.code in (307, 308) and location:
            raise _Redirect(exc.code, location) from None
        raw = exc.read(4096)
        text = raw[:300].decode("utf-8", "replace")
        raise HttpError(exc.code, text or exc.reason, _retry_after(exc.headers.get("Retry-After")), raw) from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise Unreachable(f"{url}: {untrusted_certificate(reason, context is not None)}") from None
        refused = isinstance(reason, ConnectionRefusedError)
        raise Unreachable(f"{url}: {reason}", refused=refused) from None
    except (OSError, ValueError) as exc:
        raise Unreachable(f"{url}: {exc}", refused=isinstance(exc, ConnectionRefusedError)) from None


def untrusted_certificate(exc: ssl.SSLCertVerificationError, with_ca_file: bool) -> str:
    """What to say when the hub's TLS certificate does not verify (the presence link says the same)."""
    why = exc.verify_message or exc.reason or str(exc)
    if with_ca_file:
        return (f"the hub's TLS certificate does not verify with ca_file ({why}): it is not signed by that CA, "
                "or does not name this hub; check ca_file in station.toml and the hub URL")
    return (f"the hub's TLS certificate is not trusted by this PC's system CAs ({why}); if the hub uses a "
            "private CA, set ca_file in station.toml to that CA's certificate (PEM)")


async def post_offer(url: str, sdp: str, token: str | None, timeout: float = 15.0,
                     context: ssl.SSLContext | None = None) -> Answer:
    """POST an SDP offer; the answer and the session's absolute ``Location``."""
    status, headers, links, body = await asyncio.to_thread(_request, url, "POST", token, sdp.encode(), timeout,
                                                           "application/sdp", context)
    if status != 201:
        raise HttpError(status, "expected 201 Created", None)
    location = headers.get("Location") or headers.get("location")
    if not location:
        raise HttpError(status, "201 without a Location header", None)
    return Answer(body.decode("utf-8"), urljoin(url, location), tuple(links))


async def delete_session(location: str, token: str | None, timeout: float = 5.0,
                         context: ssl.SSLContext | None = None) -> None:
    """End a session; a session the hub already forgot (404) counts as ended."""
    try:
        await asyncio.to_thread(_request, location, "DELETE", token, None, timeout, "application/sdp", context)
    except HttpError as exc:
        if exc.status != 404:
            raise


async def options_links(url: str, timeout: float = 5.0, context: ssl.SSLContext | None = None) -> list[str]:
    """``OPTIONS url``: its ``Link`` header values (RFC 9725 §4.6: the endpoint's ICE servers,
    fetched before an offer; clients/ice.py parses them). No token: the hub answers anyone."""
    _, _, links, _ = await asyncio.to_thread(_request, url, "OPTIONS", None, None, timeout, "application/sdp",
                                             context)
    return links


async def get(url: str, timeout: float = 5.0, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """A plain GET (``check`` uses it for ``/healthz``); HTTP errors return their status."""
    try:
        status, _, _, body = await asyncio.to_thread(_request, url, "GET", None, None, timeout, "application/sdp",
                                                     context)
        return status, body
    except HttpError as exc:
        return exc.status, str(exc).encode()


async def call_json(url: str, method: str, token: str | None, payload: object | None = None,
                    timeout: float = 5.0, context: ssl.SSLContext | None = None) -> tuple[int, bytes]:
    """A JSON request to the hub's API with the station's token (the office's moderation);
    an HTTP error returns its status and the first bytes of its body. :class:`Unreachable`
    when there is no answer at all."""
    body = None if payload is None else json.dumps(payload).encode()
    try:
        status, _, _, answer = await asyncio.to_thread(_request, url, method, token, body, timeout,
                                                       "application/json", context)
        return status, answer
    except HttpError as exc:
        return exc.status, exc.body
