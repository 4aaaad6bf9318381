"""Jejak over HTTP: a station's pictures of a day, and each picture. Thin: parse, call, render.

Who sees what follows the station: anyone for a public station, operators for all (their
reads of a non-public station audited, as for its thumbnail).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from hub.core.jejak import DAY
from hub.errors import NotFound, ProtocolViolation
from hub.routes.api import _audit_station_read, _visible_station
from hub.routes.roles import allow


def _day(request: Request) -> str:
    hub = request.app.state.hub
    day = request.query_params.get("date") or hub.schedule.local_date(hub.clock()).isoformat()
    if not DAY.match(day):
        raise ProtocolViolation("date must be YYYY-MM-DD", code="bad_query")
    return day


@allow("public", "operator")
async def jejak_day(request: Request) -> Response:
    hub = request.app.state.hub
    station = _visible_station(request, request.path_params["station"])
    await _audit_station_read(request, station)
    day = _day(request)
    items = [{"time": time, "url": f"/api/v1/stations/{station.id}/jejak/{day}/{time.replace(':', '')}.jpg"}
             for time in hub.jejak.day(station.id, day)]
    return JSONResponse({"station": station.id, "date": day, "minutes": hub.jejak.minutes, "jejak": items})


@allow("public", "operator")
async def jejak_picture(request: Request) -> Response:
    hub = request.app.state.hub
    station = _visible_station(request, request.path_params["station"])
    await _audit_station_read(request, station)
    path = hub.jejak.file(station.id, request.path_params["date"], request.path_params["hhmm"])
    if path is None:
        raise NotFound("no such jejak picture", code="no_jejak")
    cache = "public, max-age=86400" if station.public else "private, max-age=3600"
    return FileResponse(path, media_type="image/jpeg", headers={"Cache-Control": cache})


routes = [
    Route("/api/v1/stations/{station}/jejak", jejak_day),
    Route("/api/v1/stations/{station}/jejak/{date}/{hhmm}.jpg", jejak_picture),
]
