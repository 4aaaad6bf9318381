"""Fetching a station's HLS from the node that holds its publisher: one request per URL.

Many viewers on this node asking for the same part at once make one request to the owner
(the others wait for it: single flight), and immutable answers (parts, segments, init
segments) are kept in a byte-bounded LRU for the next viewers. Playlists are never kept:
a blocking request's answer is shared only by the requests waiting with it.

The client is HTTP/1.0 over asyncio streams (one connection per request, no chunking):
node-to-node traffic is one request per part per node, and the hub needs no HTTP client
library for it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from hub.errors import Unavailable
from hub.services.hls import HlsAnswer

TIMEOUT_S = 15.0  # a blocking playlist on the owner may take three target durations
MAX_BODY = 16_000_000
Opener = Callable[..., Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


class OwnerFetcher:
    def __init__(self, cache_bytes: int, *, timeout_s: float = TIMEOUT_S,
                 open_connection: Opener = asyncio.open_connection) -> None:
        self._cache_bytes = cache_bytes
        self._timeout_s = timeout_s
        self._open = open_connection
        self._cache: OrderedDict[str, HlsAnswer] = OrderedDict()
        self._cached_bytes = 0
        self._flights: dict[str, asyncio.Future[HlsAnswer]] = {}
        self.counts = {"fetches": 0, "cache_hits": 0, "joined": 0, "errors": 0}

    async def get(self, url: str) -> HlsAnswer:
        cached = self._cache.get(url)
        if cached is not None:
            self._cache.move_to_end(url)
            self.counts["cache_hits"] += 1
            return cached
        flight = self._flights.get(url)
        if flight is not None:
            self.counts["joined"] += 1
            return await asyncio.shield(flight)
        flight = asyncio.get_running_loop().create_future()
        self._flights[url] = flight
        try:
            answer = await self._fetch(url)
        except BaseException as exc:
            flight.set_exception(exc)
            flight.exception()  # retrieved: nobody may be waiting
            raise
        else:
            flight.set_result(answer)
            self._keep(url, answer)
            return answer
        finally:
            del self._flights[url]

    def metrics(self) -> dict[str, int]:
        return {**self.counts, "cached_bytes": self._cached_bytes}

    def _keep(self, url: str, answer: HlsAnswer) -> None:
        if answer.status != 200 or "immutable" not in answer.cache_control or len(answer.body) > self._cache_bytes:
            return
        self._cache[url] = answer
        self._cached_bytes += len(answer.body)
        while self._cached_bytes > self._cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= len(dropped.body)

    async def _fetch(self, url: str) -> HlsAnswer:
        self.counts["fetches"] += 1
        try:
            return await asyncio.wait_for(self._request(url), self._timeout_s)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            self.counts["errors"] += 1
            raise Unavailable(f"the node holding this station did not answer: {exc or type(exc).__name__}",
                              retry_after=2, code="hls_owner_unreachable") from None

    async def _request(self, url: str) -> HlsAnswer:
        parts = urlsplit(url)
        secure = parts.scheme == "https"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url}")
        port = parts.port or (443 if secure else 80)
        reader, writer = await self._open(parts.hostname, port, ssl=ssl.create_default_context() if secure else None)
        try:
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            writer.write(f"GET {target} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: */*\r\n\r\n".encode("latin-1"))
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status, headers = _parse_head(head)
            length = headers.get("content-length")
            if length is not None:
                if int(length) > MAX_BODY:
                    raise ValueError(f"answer too large: {length} bytes")
                body = await reader.readexactly(int(length))
            else:
                body = await reader.read(MAX_BODY)
        finally:
            writer.close()
        return HlsAnswer(body, headers.get("content-type", "application/octet-stream"),
                         headers.get("cache-control", "no-store") if status == 200 else "no-store",
                         headers.get("etag", ""), status)


def _parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/") or not rest[:3].isdigit():
        raise ValueError(f"not an HTTP answer: {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(rest[:3]), headers
