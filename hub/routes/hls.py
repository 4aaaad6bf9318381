"""HLS over HTTP (docs/http-api.md "HLS"): public stations, for players, caches and CDNs.

    GET /hls/{station}/index.m3u8[?_HLS_msn=N[&_HLS_part=M]]   low-latency playlist (blocking)
    GET /hls/{station}/plain.m3u8                             segments only, no query
    GET /hls/{station}/{run}/{file}                           i{n}.mp4, s{msn}.m4s, p{msn}.{i}.m4s

Every answer allows any origin (players on other sites, a CDN's test page) and carries an
ETag; a matching ``If-None-Match`` gets a 304. What is cached for how long is the service's
(:mod:`hub.services.hls`). Errors are the API's JSON, ``no-store``, so a cache never keeps a
station's "not live" past the moment it goes live.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.errors import ProtocolViolation
from hub.routes.roles import allow
from hub.services.hls import HlsAnswer

CORS = {"Access-Control-Allow-Origin": "*", "Access-Control-Expose-Headers": "ETag, Age"}
BLOCKING_PARAMETERS = ("_HLS_msn", "_HLS_part")


def _number(request: Request, name: str) -> int | None:
    value = request.query_params.get(name)
    if value is None:
        return None
    if not value.isdigit() or len(value) > 12:
        raise ProtocolViolation(f"{name} must be a whole number, not {value[:20]!r}", code="hls_bad_query")
    return int(value)


def _path(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def _answer(request: Request, answer: HlsAnswer) -> Response:
    headers = {**CORS, "Cache-Control": answer.cache_control}
    if answer.etag:
        headers["ETag"] = answer.etag
        if answer.status == 200 and request.headers.get("if-none-match") == answer.etag:
            return Response(status_code=304, headers=headers)
    return Response(answer.body, status_code=answer.status, media_type=answer.content_type, headers=headers)


@allow("public", "operator")
async def low_latency_playlist(request: Request) -> Response:
    msn, part = _number(request, "_HLS_msn"), _number(request, "_HLS_part")
    if part is not None and msn is None:
        raise ProtocolViolation("_HLS_part needs _HLS_msn", code="hls_bad_query")
    answer = await request.app.state.hub.hls.playlist(request.path_params["station"], _path(request),
                                                      low_latency=True, msn=msn, part=part)
    return _answer(request, answer)


@allow("public", "operator")
async def plain_playlist(request: Request) -> Response:
    answer = await request.app.state.hub.hls.playlist(request.path_params["station"], request.url.path,
                                                      low_latency=False, msn=None, part=None)
    return _answer(request, answer)


@allow("public", "operator")
async def media_file(request: Request) -> Response:
    params = request.path_params
    answer = await request.app.state.hub.hls.media(params["station"], params["run"], params["file"], request.url.path)
    return _answer(request, answer)


routes = [
    Route("/hls/{station}/index.m3u8", low_latency_playlist, methods=["GET"]),
    Route("/hls/{station}/plain.m3u8", plain_playlist, methods=["GET"]),
    Route("/hls/{station}/{run}/{file}", media_file, methods=["GET"]),
]
