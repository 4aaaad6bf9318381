"""The JSON API under ``/api/v1`` plus health and metrics. Thin: parse, call, render."""

from __future__ import annotations

import datetime as dt
import email.utils
import hmac
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from hub.core import attendance
from hub.errors import NotAuthenticated, NotFound, ProtocolViolation
from hub.routes import bodies
from hub.routes.roles import allow
from hub.services.auth import CSRF_COOKIE, SESSION_COOKIE
from jaga.wire import MAX_TEXT

STATION_COLUMNS = ["id", "name", "kind", "kecamatan", "public", "state", "status", "since", "viewers"]
DAILY_COLUMNS = ["id", "name", "kind", "kecamatan", "date", "status", "first_online", "first_live",
                 "online_s", "live_s", "coverage", "late_s", "interruptions"]


def _operator(request: Request) -> bool:
    return request.scope.get("jaga.operator") is not None


def _tabular(request: Request, key: str, rows: list[dict[str, Any]], columns: list[str],
             extra: dict[str, Any]) -> Response:
    fmt = request.query_params.get("format", "json")
    if fmt == "csv":
        filename = "-".join(["jaga", key, *[str(v) for v in extra.values()]]) + ".csv"
        return Response(attendance.rows_to_csv(rows, columns), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{filename}"'})
    if fmt != "json":
        raise ProtocolViolation("format must be json or csv", code="bad_query")
    return JSONResponse({**extra, key: rows})


async def _audit_read(request: Request, subject: str) -> None:
    """An operator's read of non-public stations' data, audited once per operator, subject and
    period (hub/core/audit.py): ``subject`` is a station id, or a list's path."""
    operator = request.scope.get("jaga.operator")
    if operator is None:
        return
    hub = request.app.state.hub
    now = hub.clock()
    if hub.read_audit.claim(operator, subject, now):
        try:
            await hub.credentials.audit(now, operator, "read", subject)
        except BaseException:
            hub.read_audit.release(operator, subject)  # not written: the next read tries again
            raise


async def _audit_station_read(request: Request, station: Any) -> None:
    if not station.public:
        await _audit_read(request, station.id)


async def _audit_list_read(request: Request, stations: Iterable[Any]) -> None:
    """A list carrying non-public stations: one entry for the list, not one per station in it."""
    if any(station is not None and not station.public for station in stations):
        await _audit_read(request, request.url.path)


def _visible_station(request: Request, station_id: str) -> Any:
    hub = request.app.state.hub
    station = hub.registry.get(station_id)
    if station is None or not (station.public or _operator(request)):
        raise NotFound(f"no station {station_id!r}")
    return station


@allow("public", "operator")
async def list_stations(request: Request) -> Response:
    hub = request.app.state.hub
    operator = _operator(request)
    now = hub.clock()
    stations = hub.registry.visible(operator)
    await _audit_list_read(request, stations)
    rows = [hub.watchers.station_object(s, operator, now) for s in stations]
    return _tabular(request, "stations", rows, STATION_COLUMNS, {"seq": hub.watchers.last_seq})


@allow("public", "operator")
async def get_station(request: Request) -> Response:
    hub = request.app.state.hub
    station = _visible_station(request, request.path_params["station"])
    await _audit_station_read(request, station)
    item = hub.watchers.station_object(station, _operator(request), hub.clock())
    item["today"] = (await hub.reports.daily(hub.schedule.local_date(hub.clock()), [station]))[0]
    rules = hub.schedule.rules(station)  # office hours, for the watch page's "outside hours" message
    item["hours"] = {"start": rules.start.strftime("%H:%M"), "end": rules.end.strftime("%H:%M"),
                     "workdays": list(rules.workdays), "timezone": hub.schedule.settings.timezone}
    return JSONResponse(item)


@allow("public", "operator")
async def thumbnail(request: Request) -> Response:
    hub = request.app.state.hub
    station = _visible_station(request, request.path_params["station"])
    await _audit_station_read(request, station)
    found = hub.stations.thumbnails.get(station.id)
    if found is None:
        raise NotFound("no thumbnail yet", code="no_thumbnail")
    jpeg, at = found
    modified = email.utils.formatdate(at, usegmt=True)
    if request.headers.get("if-modified-since") == modified:
        return Response(status_code=304)
    return Response(jpeg, media_type="image/jpeg",
                    headers={"Last-Modified": modified, "Cache-Control": "no-cache"})


def _date_param(request: Request, default: dt.date) -> dt.date:
    text = request.query_params.get("date")
    if not text:
        return default
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ProtocolViolation("date must be YYYY-MM-DD", code="bad_query") from None


@allow("public", "operator")
async def attendance_daily(request: Request) -> Response:
    hub = request.app.state.hub
    day = _date_param(request, hub.schedule.local_date(hub.clock()))
    station_id = request.query_params.get("station")  # one station's row (the calendar heatmap)
    if station_id:
        stations = [_visible_station(request, station_id)]
        await _audit_station_read(request, stations[0])
    else:
        stations = hub.registry.visible(_operator(request))
        await _audit_list_read(request, stations)
    rows = await hub.reports.daily(day, stations)
    return _tabular(request, "rows", rows, DAILY_COLUMNS, {"date": day.isoformat()})


@allow("public", "operator")
async def attendance_monthly(request: Request) -> Response:
    hub = request.app.state.hub
    month = request.query_params.get("month") or hub.schedule.local_date(hub.clock()).strftime("%Y-%m")
    group = request.query_params.get("group", "kecamatan")
    if group not in attendance.GROUPS:
        raise ProtocolViolation(f"group must be one of {', '.join(attendance.GROUPS)}", code="bad_query")
    try:
        days = attendance.month_days(month)
    except ValueError:
        raise ProtocolViolation("month must be YYYY-MM", code="bad_query") from None
    stations = hub.registry.visible(_operator(request))
    await _audit_list_read(request, stations)
    rows = await hub.reports.monthly(days, stations, group)
    columns = list(rows[0]) if rows else ["group"]
    return _tabular(request, "rows", rows, columns, {"month": month, "group": group})


@allow("public", "operator")
async def activities(request: Request) -> Response:
    hub = request.app.state.hub
    day = _date_param(request, hub.schedule.local_date(hub.clock()))
    rows = await hub.reports.activities(day, hub.registry.visible(_operator(request)))
    await _audit_list_read(request, (hub.registry.get(row["id"]) for row in rows))
    return _tabular(request, "activities", rows, ["id", "name", "title", "start", "end", "live"],
                    {"date": day.isoformat()})


async def _credentials(request: Request) -> tuple[str, str, str]:
    body = await bodies.form_or_json(request)  # bounded: a 50 MB login is refused at 16 KiB
    username, password = body.get("username"), body.get("password")
    if not isinstance(username, str) or not isinstance(password, str) or not username or len(username) > 64:
        raise ProtocolViolation("username and password are required", code="missing_field")
    next_url = body.get("next")
    return username, password, next_url if isinstance(next_url, str) else ""


def _safe_next(next_url: str) -> str:
    """Only same-site paths: never redirect a fresh login to another host."""
    parts = urlsplit(next_url)
    if parts.scheme or parts.netloc or not next_url.startswith("/") or next_url.startswith("//"):
        return "/wall"
    return next_url


@allow("public", "operator")
async def login(request: Request) -> Response:
    hub = request.app.state.hub
    username, password, next_url = await _credentials(request)
    address = request.client.host if request.client else "?"
    is_form = not request.headers.get("content-type", "").startswith("application/json")
    try:
        cookie, csrf = await hub.auth.login(username, password, address)
    except NotAuthenticated:
        if is_form:
            return RedirectResponse(f"/login?error=1&next={_safe_next(next_url)}", status_code=303)
        raise
    response: Response = (RedirectResponse(_safe_next(next_url), status_code=303) if is_form
                          else JSONResponse({"operator": username, "csrf": csrf}))
    secure = hub.settings.hub.secure_cookies or request.url.scheme == "https"
    max_age = int(hub.settings.auth.session_hours * 3600)
    response.set_cookie(SESSION_COOKIE, cookie, max_age=max_age, httponly=True, samesite="strict", secure=secure)
    response.set_cookie(CSRF_COOKIE, csrf, max_age=max_age, httponly=False, samesite="strict", secure=secure)
    return response


@allow("operator")
async def logout(request: Request) -> Response:
    hub = request.app.state.hub
    operator = hub.auth.require_operator(request, csrf=True)
    await hub.auth.logout(request.cookies.get(SESSION_COOKIE))
    await hub.operator_access.end_session(request.scope["jaga.session"])  # here now; other nodes at a checkpoint
    await hub.credentials.audit(hub.clock(), operator, "logout", "")
    response = JSONResponse({"ok": True})
    response.delete_cookie(SESSION_COOKIE)
    response.delete_cookie(CSRF_COOKIE)
    return response


@allow("public", "operator")
async def me(request: Request) -> Response:
    hub = request.app.state.hub
    operator = request.scope.get("jaga.operator")
    csrf = hub.auth.csrf_token(request.scope["jaga.session"]) if operator else None
    return JSONResponse({"operator": operator, "csrf": csrf})


@allow("operator")
async def announce(request: Request) -> Response:
    hub = request.app.state.hub
    operator = hub.auth.require_operator(request, csrf=True)
    body = await _json_object(request)
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        raise ProtocolViolation(f"text is required, at most {MAX_TEXT} characters", code="bad_field")
    targets = _announce_targets(hub, body)
    await hub.stations.announce(targets, text.strip(), operator)
    await hub.credentials.audit(hub.clock(), operator, "announce", f"{len(targets)} stations: {text[:200]}")
    return JSONResponse({"targets": len(targets)})


def _announce_targets(hub: Any, body: dict[str, Any]) -> list[str]:
    if body.get("all") is True:
        return [s.id for s in hub.registry]
    if isinstance(body.get("kecamatan"), str):
        targets = [s.id for s in hub.registry if s.kecamatan == body["kecamatan"]]
        if not targets:
            raise NotFound(f"no kecamatan {body['kecamatan']!r}")
        return targets
    station_id = body.get("station")
    if isinstance(station_id, str):
        if station_id not in hub.registry:
            raise NotFound(f"no station {station_id!r}")
        return [station_id]
    raise ProtocolViolation("say who: station, kecamatan or all", code="missing_field")


@allow("operator")
async def talk(request: Request) -> Response:
    hub = request.app.state.hub
    operator = hub.auth.require_operator(request, csrf=True)
    station = _visible_station(request, request.path_params["station"])
    body = await _json_object(request)
    active = body.get("active")
    if not isinstance(active, bool):
        raise ProtocolViolation("active must be true or false", code="bad_field")
    await hub.stations.talk(station.id, active, operator)
    await hub.credentials.audit(hub.clock(), operator, "talk.start" if active else "talk.stop", station.id)
    return JSONResponse({"station": station.id, "active": active})


AUDIT_PAGE = 200  # entries per page unless ?limit= says otherwise
AUDIT_PAGE_MAX = 1000
_ID_MAX = 2**63 - 1  # SQLite's largest integer id


def _int_param(request: Request, name: str, low: int, high: int) -> int | None:
    text = request.query_params.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise ProtocolViolation(f"{name} must be an integer from {low} to {high}", code="bad_query")
    return int(text)


@allow("operator")
async def audit_log(request: Request) -> Response:
    """Newest first, a page at a time: ``?limit=`` entries (200, at most 1000) with an id below
    ``?before=``; ``next`` is the ``before`` of the following page, null on the last."""
    hub = request.app.state.hub
    hub.auth.require_operator(request)
    limit = _int_param(request, "limit", 1, AUDIT_PAGE_MAX) or AUDIT_PAGE
    before = _int_param(request, "before", 1, _ID_MAX)
    entries = await hub.credentials.audit_log(limit + 1, before)  # one more: is there a next page?
    page = entries[:limit]
    return JSONResponse({"entries": page, "next": page[-1]["id"] if len(entries) > limit else None})


async def _json_object(request: Request) -> dict[str, Any]:
    return await bodies.json_object(request)  # bounded (hub/routes/bodies.py)


@allow("public", "operator")
async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


@allow("public", "operator")
async def readyz(request: Request) -> Response:
    hub = request.app.state.hub
    checks = hub.readiness()
    return JSONResponse({"ready": all(checks.values()), "checks": checks},
                        status_code=200 if all(checks.values()) else 503)


@allow("operator")  # or a scraper presenting `hub.metrics_token` (docs/operations.md)
async def metrics(request: Request) -> Response:
    hub = request.app.state.hub
    # The counts include non-public stations (connected, live), which the public must not see.
    if not _operator(request) and not _metrics_token_ok(request, hub.settings.hub.metrics_token):
        raise NotAuthenticated("metrics need an operator session or Authorization: Bearer <hub.metrics_token>")
    return Response(hub.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _metrics_token_ok(request: Request, expected: str) -> bool:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(
        presented.strip().encode(), expected.encode())


routes = [
    Route("/api/v1/stations", list_stations),
    Route("/api/v1/stations/{station}", get_station),
    Route("/api/v1/stations/{station}/thumbnail.jpg", thumbnail),
    Route("/api/v1/stations/{station}/talk", talk, methods=["POST"]),
    Route("/api/v1/attendance/daily", attendance_daily),
    Route("/api/v1/attendance/monthly", attendance_monthly),
    Route("/api/v1/activities", activities),
    Route("/api/v1/auth/login", login, methods=["POST"]),
    Route("/api/v1/auth/logout", logout, methods=["POST"]),
    Route("/api/v1/auth/me", me),
    Route("/api/v1/announce", announce, methods=["POST"]),
    Route("/api/v1/audit", audit_log),
    Route("/healthz", healthz),
    Route("/readyz", readyz),
    Route("/metrics", metrics),
]
