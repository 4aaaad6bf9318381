"""One file from disk as an ASGI response, with ``Range`` (206/416), read 64 KiB at a time.

Recordings are hundreds of megabytes and a ``<video>`` seeks by asking byte ranges, often
dropping a request half-way when the viewer seeks again. So the file is never read whole:
chunks are read in a worker thread and sent one by one, and the sending stops as soon as the
client disconnects (``http.disconnect`` is watched beside it; a server that swallowed sends to
a gone client would otherwise read the rest of the file for nobody). Which bytes to send is
decided by :func:`hub.core.byte_ranges.choose`.

The caller opens the file (so "not found" is answered by the route, as JSON) and hands the
open file over; the size comes from that descriptor, so a file replaced in between cannot mix
two versions.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
from collections.abc import Coroutine
from typing import Any, BinaryIO

from starlette.types import Receive, Scope, Send

from hub.core import byte_ranges

CHUNK = 64 * 1024


class RangedFile:
    """Answers a GET or HEAD with ``file`` (opened ``rb``; closed here) as ``media_type``."""

    def __init__(self, file: BinaryIO, media_type: str, headers: dict[str, str] | None = None) -> None:
        self.file = file
        stat = os.fstat(file.fileno())
        self.size = stat.st_size
        self.etag = f'"{stat.st_size:x}-{stat.st_mtime_ns:x}"'
        self.last_modified = email.utils.formatdate(stat.st_mtime, usegmt=True)
        self.headers = {"Content-Type": media_type, "Accept-Ranges": "bytes", "ETag": self.etag,
                        "Last-Modified": self.last_modified, **(headers or {})}

    def _choice(self, scope: Scope) -> byte_ranges.Span | object:
        request_headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}
        if_range = request_headers.get("if-range")
        if if_range is not None and if_range not in (self.etag, self.last_modified):
            return byte_ranges.WHOLE  # the client holds another version: send this one whole
        return byte_ranges.choose(request_headers.get("range"), self.size)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            choice = self._choice(scope)
            headers = dict(self.headers)
            if choice is byte_ranges.UNSATISFIABLE:
                headers.pop("Content-Type")
                headers.update({"Content-Range": f"bytes */{self.size}", "Content-Length": "0"})
                await _start(send, 416, headers)
                await send({"type": "http.response.body", "body": b""})
                return
            span = choice if isinstance(choice, byte_ranges.Span) else byte_ranges.Span(0, self.size - 1)
            status = 206 if isinstance(choice, byte_ranges.Span) else 200
            if status == 206:
                headers["Content-Range"] = span.content_range(self.size)
            headers["Content-Length"] = str(max(0, span.length))
            await _start(send, status, headers)
            if scope.get("method") == "HEAD" or span.length <= 0:
                await send({"type": "http.response.body", "body": b""})
                return
            await _until_disconnect(self._body(send, span), receive)
        finally:
            await asyncio.to_thread(self.file.close)

    async def _body(self, send: Send, span: byte_ranges.Span) -> None:
        await asyncio.to_thread(self.file.seek, span.first)
        left = span.length
        while left > 0:
            chunk = await asyncio.to_thread(self.file.read, min(CHUNK, left))
            if not chunk:  # the file shrank under us: end the body short rather than hang
                break
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        if left > 0:
            await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _start(send: Send, status: int, headers: dict[str, str]) -> None:
    raw = [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})


async def _until_disconnect(body: Coroutine[Any, Any, None], receive: Receive) -> None:
    """Run ``body`` until it ends or the client goes, whichever is first."""
    sending = asyncio.ensure_future(body)

    async def gone() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    watching = asyncio.ensure_future(gone())
    try:
        await asyncio.wait({sending, watching}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        sending.cancel()
        watching.cancel()
        await asyncio.gather(sending, watching, return_exceptions=True)
    if not sending.cancelled() and (error := sending.exception()) is not None:
        raise error
