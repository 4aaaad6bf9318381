"""Request bodies read with a bound: nothing a client sends is buffered past a limit.

Starlette's ``request.body()``, ``json()`` and ``form()`` read the whole body into memory
first, however large; a 50 MB login would be held in full before being refused. These
helpers read ``request.stream()`` and stop at the first chunk past the limit
(:class:`TooLarge`, 413). A declared ``Content-Length`` over the limit is refused before
anything is read, but never trusted otherwise: a chunked body declares nothing.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from hub.errors import ProtocolViolation, TooLarge, UnsupportedMediaType

# The API's JSON and form bodies are a few hundred bytes (an announcement is at most
# jaga.wire.MAX_TEXT = 500 characters, four bytes each at worst); 16 KiB leaves room for
# what a future field needs while no body costs the hub more than that.
MAX_BODY_BYTES = 16 * 1024


async def read_bounded(request: Request, limit: int, what: str = "body") -> bytes:
    """The request body, refused with :class:`TooLarge` as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"{what} is {declared} bytes; the limit is {limit}")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise TooLarge(f"{what} exceeds the limit of {limit} bytes")
    return bytes(body)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def json_object(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """A JSON object body of at most ``limit`` bytes (400 ``malformed`` otherwise)."""
    raw = await read_bounded(request, limit)
    try:
        body = json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        raise ProtocolViolation("body must be JSON", code="malformed") from None
    if not isinstance(body, dict):
        raise ProtocolViolation("body must be a JSON object", code="malformed")
    return body


async def form_or_json(request: Request, limit: int = MAX_BODY_BYTES) -> dict[str, Any]:
    """A JSON object or a URL-encoded form (what the login page's form posts), bounded."""
    kind = media_type(request)
    if kind == "application/json":
        return await json_object(request, limit)
    if kind not in ("application/x-www-form-urlencoded", ""):
        raise UnsupportedMediaType("send application/json or application/x-www-form-urlencoded")
    raw = await read_bounded(request, limit)
    try:
        return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        raise ProtocolViolation("form is not UTF-8", code="malformed") from None
