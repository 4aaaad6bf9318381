"""Recordings over HTTP (docs/recordings.md "HTTP"), and the portal's two pages for them.

    GET  /api/v1/recordings[?station&date&before&kecamatan&kind&limit]  public, operator: the list
    GET  /api/v1/recordings.csv[?…]                    the same as CSV (spreadsheet-safe cells)
    GET  /api/v1/recordings/status[?station]           operator: what records, the disk alarm
    GET  /api/v1/recordings/{id}                       one, with its state
    GET  /recordings/{id}.webm | .mp4                  the file, with Range (206/416)
    POST /api/v1/recordings/{id}/visibility            operator + CSRF: hide (with a reason) / show
    POST /api/v1/stations/{station}/recording          operator + CSRF: *Rekam* on/off
    GET  /rekaman, /rekaman/{id}                       the list page and the player page

Who sees what: the public, a *published* recording — of a public station, visible (not
hidden by an operator) and done (one finished file); operators, every recording in every
state, with why it was recorded and why it is hidden. Anything else is 404 to the public,
exactly as an unknown id (existence is not told). Operators' reads of a non-public station's
recordings are audited like every read of its data (:mod:`hub.routes.api`).

The file's path comes from the index only (``Recording.path``, relative to
``[recording] dir``), never from the URL: the URL names an id, the id finds the row, and the
row's path must resolve inside the recordings' folder. The rules of hiding, *Rekam* and the
disk floor are the service's (:class:`hub.services.recordings.RecordingsService`); here only
the caller is told apart and the answer written.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, BinaryIO

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.backends.base import Recording
from hub.core import attendance
from hub.errors import NotFound, ProtocolViolation
from hub.routes import api, bodies
from hub.routes.pages import PORTAL_DIR, page
from hub.routes.ranged_file import RangedFile
from hub.routes.roles import allow

MEDIA_TYPES = {".webm": "video/webm", ".mp4": "video/mp4"}
COLUMNS = ["id", "station", "name", "kind", "kecamatan", "title", "date", "start", "end", "duration_s",
           "bytes", "video_codec", "audio_codec", "url"]
LIST_LIMIT, LIST_LIMIT_MAX = 100, 500
# The store pages through every recording, the public sees some: read at most this many rows
# per answer (SCAN_PAGE × SCAN_PAGES) and hand the caller a `next` to go on from.
SCAN_PAGE, SCAN_PAGES = 200, 10
MAX_REASON = 500


def _operator(request: Request) -> bool:
    return request.scope.get("jaga.operator") is not None


def _published(hub: Any, r: Recording) -> bool:
    """What the public may see: a public station's visible, finished recording."""
    station = hub.registry.get(r.station)
    return station is not None and station.public and r.visible and r.state == "done" and bool(r.path)


def _may_see(request: Request, r: Recording) -> bool:
    return _operator(request) or _published(request.app.state.hub, r)


def file_url(r: Recording) -> str | None:
    suffix = Path(r.path).suffix.lower()
    if r.state != "done" or suffix not in MEDIA_TYPES:
        return None
    return f"/recordings/{r.id}{suffix}"


def _view(hub: Any, r: Recording, operator: bool) -> dict[str, Any]:
    station = hub.registry.get(r.station)
    item: dict[str, Any] = {
        "id": r.id, "station": r.station,
        "name": station.name if station else r.station,
        "kind": station.kind if station else "", "kecamatan": station.kecamatan if station else "",
        "title": r.title, "date": r.day or hub.schedule.local_date(r.start).isoformat(),
        "start": r.start, "end": r.end, "duration_s": r.duration_s, "bytes": r.bytes,
        "video_codec": r.video_codec, "audio_codec": r.audio_codec, "url": file_url(r),
    }
    if operator:
        item.update(state=r.state, visible=r.visible, hidden_reason=r.hidden_reason, reason=r.reason)
    return item


async def _audit(request: Request, station_ids: set[str]) -> None:
    """An operator reading a non-public station's recordings: audited like its other data."""
    hub = request.app.state.hub
    private = {s for s in station_ids if (station := hub.registry.get(s)) is None or not station.public}
    if len(private) == 1:
        await api._audit_read(request, private.pop())
    elif private:
        await api._audit_read(request, request.url.path)


async def _recording(request: Request) -> Recording:
    """The path's recording if the caller may see it (404 otherwise, alike for unknown ids)."""
    hub = request.app.state.hub
    found: Recording | None = await hub.backend.recordings.get(request.path_params["recording"])
    if found is None or not _may_see(request, found):
        raise NotFound("no such recording")
    await _audit(request, {found.station})
    return found


# -- the list ---------------------------------------------------------------------------------


def _query(request: Request) -> dict[str, Any]:
    params = request.query_params
    station_id = params.get("station") or None
    if station_id is not None:
        station_id = api._visible_station(request, station_id).id  # 404 for a hidden or unknown one
    day = params.get("date") or None
    if day is not None:
        day = api._date_param(request, None).isoformat()  # type: ignore[arg-type]  # present: parsed
    before = _number(params.get("before"), "before")
    limit = api._int_param(request, "limit", 1, LIST_LIMIT_MAX) or LIST_LIMIT
    return {"station": station_id, "day": day, "before": before, "limit": limit,
            "kecamatan": params.get("kecamatan") or None, "kind": params.get("kind") or None}


def _number(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ProtocolViolation(f"{name} must be a number (unix seconds)", code="bad_query")
    return value


async def _listing(request: Request) -> tuple[list[dict[str, Any]], float | None]:
    """The recordings the caller may see, newest first, and the ``before`` of the next page."""
    hub = request.app.state.hub
    query = _query(request)
    operator = _operator(request)

    def keep(r: Recording) -> bool:
        if not _may_see(request, r):
            return False
        station = hub.registry.get(r.station)
        if query["kecamatan"] is not None and (station is None or station.kecamatan != query["kecamatan"]):
            return False
        return query["kind"] is None or (station is not None and station.kind == query["kind"])

    kept: list[Recording] = []
    cursor, exhausted = query["before"], False
    for _ in range(SCAN_PAGES):
        rows = await hub.backend.recordings.list(query["station"], query["day"], SCAN_PAGE, cursor)
        kept += [r for r in rows if keep(r)]
        if len(rows) < SCAN_PAGE:
            exhausted = True
            break
        cursor = rows[-1].start
        if len(kept) > query["limit"]:
            break
    shown = kept[:query["limit"]]
    if len(kept) > query["limit"]:
        after: float | None = shown[-1].start
    else:
        after = None if exhausted else cursor
    await _audit(request, {r.station for r in shown})
    return [_view(hub, r, operator) for r in shown], after


@allow("public", "operator")
async def list_recordings(request: Request) -> Response:
    rows, after = await _listing(request)
    return JSONResponse({"recordings": rows, "next": after}, headers={"Cache-Control": "no-cache"})


@allow("public", "operator")
async def list_recordings_csv(request: Request) -> Response:
    rows, _ = await _listing(request)
    columns = COLUMNS + (["state", "visible", "hidden_reason", "reason"] if _operator(request) else [])
    return Response(attendance.rows_to_csv(rows, columns), media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="jaga-rekaman.csv"',
                             "Cache-Control": "no-cache"})


@allow("public", "operator")
async def get_recording(request: Request) -> Response:
    hub = request.app.state.hub
    found = await _recording(request)
    item = _view(hub, found, _operator(request))
    item.setdefault("state", found.state)
    return JSONResponse(item, headers={"Cache-Control": "no-cache"})


# -- the file ---------------------------------------------------------------------------------


def _recordings_dir(hub: Any) -> Path:
    return Path(hub.settings.recording_path).resolve()


def _open(path: Path) -> BinaryIO:
    return path.open("rb")


@allow("public", "operator")
async def recording_file(request: Request) -> Response | RangedFile:
    hub = request.app.state.hub
    found = await _recording(request)
    suffix = "." + request.url.path.rsplit(".", 1)[-1].lower()
    if found.state != "done" or not found.path or Path(found.path).suffix.lower() != suffix:
        raise NotFound("no such recording file")
    root = _recordings_dir(hub)
    path = (root / found.path).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        raise NotFound("the recording's file is missing", code="no_file")
    try:
        file = _open(path)
    except OSError:
        raise NotFound("the recording's file is missing", code="no_file") from None
    return RangedFile(file, MEDIA_TYPES[suffix], {"Cache-Control": "no-cache"})


# -- operators ----------------------------------------------------------------------------------


@allow("operator")
async def recordings_status(request: Request) -> Response:
    hub = request.app.state.hub
    hub.auth.require_operator(request)
    status = await hub.recordings.status()
    station_id = request.query_params.get("station")
    if station_id:  # the wall's detail view: this station's Rekam state too
        status["station"] = hub.recordings.station_status(api._visible_station(request, station_id).id)
    return JSONResponse(status, headers={"Cache-Control": "no-store"})


@allow("operator")
async def set_visibility(request: Request) -> Response:
    hub = request.app.state.hub
    operator = hub.auth.require_operator(request, csrf=True)
    found = await _recording(request)
    body = await bodies.json_object(request)
    visible, reason = body.get("visible"), body.get("reason", "")
    if not isinstance(visible, bool):
        raise ProtocolViolation("visible must be true or false", code="bad_field")
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise ProtocolViolation(f"reason is text of at most {MAX_REASON} characters", code="bad_field")
    if visible:
        changed = await hub.recordings.show(found.id, operator)
    else:
        if not reason.strip():
            raise ProtocolViolation("say why it is hidden: reason is required", code="missing_field")
        changed = await hub.recordings.hide(found.id, reason.strip(), operator)
    return JSONResponse({"recording": _view(hub, changed, True)})


@allow("operator")
async def set_recording(request: Request) -> Response:
    hub = request.app.state.hub
    operator = hub.auth.require_operator(request, csrf=True)
    station = api._visible_station(request, request.path_params["station"])
    body = await bodies.json_object(request)
    record = body.get("record")
    if not isinstance(record, bool):
        raise ProtocolViolation("record must be true or false", code="bad_field")
    status = await hub.recordings.set_recording(station.id, record, operator)
    return JSONResponse({**status, "station": station.id, "record": record})


# -- pages ---------------------------------------------------------------------------------------


@allow("public", "operator")
async def list_page(request: Request) -> Response:
    return page(PORTAL_DIR / "rekaman.html")


@allow("public", "operator")
async def player_page(request: Request) -> Response:
    return page(PORTAL_DIR / "putar.html")


routes = [
    Route("/api/v1/recordings", list_recordings),
    Route("/api/v1/recordings.csv", list_recordings_csv),
    Route("/api/v1/recordings/status", recordings_status),
    Route("/api/v1/recordings/{recording}", get_recording),
    Route("/api/v1/recordings/{recording}/visibility", set_visibility, methods=["POST"]),
    Route("/api/v1/stations/{station}/recording", set_recording, methods=["POST"]),
    Route("/recordings/{recording}.webm", recording_file),
    Route("/recordings/{recording}.mp4", recording_file),
    Route("/rekaman", list_page),
    Route("/rekaman/{recording}", player_page),
]
