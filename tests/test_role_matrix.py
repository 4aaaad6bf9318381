"""The role matrix: every HTTP route and WebSocket message × every role, in one table.

Roles: ``public`` (no credentials), ``operator`` (logged in, with CSRF), ``station`` (its own
token, for its own station), ``other`` (a valid token of *another* station). The same table
is in docs/security.md. Every route the app registers must appear here: a new route without
a rule fails :func:`test_every_registered_route_is_in_the_matrix`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from starlette.routing import Mount, Route, WebSocketRoute

from hub.app import create_app
from tests.kit import RunningHub, hub_settings
from tests.wsclient import JSON, Client, station

PUBLIC_ID = "35.09.01"
PRIVATE_ID = "opd.bakesbangpol"
OK = "ok"  # any answer that is not 401/403 (a 400 for a deliberately empty body still means "allowed")

# (method, path, body) → expected per role; an int is an exact status.
MATRIX: list[tuple[str, str, Any, dict[str, Any]]] = [
    ("GET", "/", None, {"public": 200, "operator": 200}),
    ("GET", f"/watch/{PUBLIC_ID}", None, {"public": 200, "operator": 200}),
    ("GET", "/laporan", None, {"public": 200, "operator": 200}),
    ("GET", "/login", None, {"public": 200, "operator": 200}),
    ("GET", "/wall", None, {"public": 303, "operator": 200, "station": 303}),
    ("GET", "/static/site.css", None, {"public": 200}),
    ("GET", "/wall/static/index.html", None, {"public": 200}),
    ("GET", "/api/v1/stations", None, {"public": 200, "operator": 200}),
    ("GET", f"/api/v1/stations/{PUBLIC_ID}", None, {"public": 200, "operator": 200}),
    ("GET", f"/api/v1/stations/{PRIVATE_ID}", None, {"public": 404, "operator": 200, "station": 404}),
    ("GET", f"/api/v1/stations/{PRIVATE_ID}/thumbnail.jpg", None, {"public": 404, "operator": 404}),
    ("POST", f"/api/v1/stations/{PUBLIC_ID}/talk", {"active": False}, {"public": 401, "operator": 200, "station": 401}),
    ("GET", "/api/v1/attendance/daily", None, {"public": 200, "operator": 200}),
    ("GET", "/api/v1/attendance/monthly", None, {"public": 200, "operator": 200}),
    ("GET", "/api/v1/activities", None, {"public": 200, "operator": 200}),
    ("POST", "/api/v1/auth/login", {"username": "nobody", "password": "x"}, {"public": 401}),
    ("GET", "/api/v1/auth/me", None, {"public": 200, "operator": 200}),
    ("POST", "/api/v1/announce", {"text": "Halo", "station": PUBLIC_ID},
     {"public": 401, "operator": 200, "station": 401}),
    ("GET", "/api/v1/audit", None, {"public": 401, "operator": 200, "station": 401}),
    ("POST", "/api/v1/auth/logout", None, {"public": 401, "station": 401}),
    ("GET", "/healthz", None, {"public": 200}),
    ("GET", "/readyz", None, {"public": 200}),
    ("GET", "/metrics", None, {"public": 200}),
    ("POST", f"/whip/{PUBLIC_ID}", "", {"public": 401, "operator": 401, "station": OK, "other": 401}),
    ("POST", "/whip/pendopo", "", {"public": 401, "operator": OK, "station": 401}),
    ("POST", f"/whep/{PUBLIC_ID}", "", {"public": OK, "operator": OK}),
    ("POST", f"/whep/{PRIVATE_ID}", "", {"public": 404, "operator": OK, "station": 404}),  # hidden, not 403
]
# Paths the matrix covers by template (the router's own spelling).
COVERED = {
    "/", "/watch/{station}", "/laporan", "/login", "/wall", "/static", "/wall/static",
    "/api/v1/stations", "/api/v1/stations/{station}", "/api/v1/stations/{station}/thumbnail.jpg",
    "/api/v1/stations/{station}/talk", "/api/v1/attendance/daily", "/api/v1/attendance/monthly",
    "/api/v1/activities", "/api/v1/auth/login", "/api/v1/auth/me", "/api/v1/announce", "/api/v1/audit",
    "/api/v1/auth/logout", "/healthz", "/readyz", "/metrics", "/ws/station", "/ws/watch",
    "/whip/{station}", "/whep/{station}", "/whip/{station}/{session}", "/whep/{station}/{session}",
}


def test_every_registered_route_is_in_the_matrix(tmp_path: Path) -> None:
    app = create_app(hub_settings(tmp_path))
    routes = [route for route in app.routes if isinstance(route, Route | WebSocketRoute | Mount)]
    assert len(routes) == len(app.routes), "a route without a path"
    registered = {route.path for route in routes}
    assert registered - COVERED == set(), "add these routes to the role matrix and docs/security.md"


async def clients(hub: RunningHub) -> dict[str, httpx.AsyncClient]:
    await hub.hub.auth.add_operator("budi", "rahasia-sekali")
    operator = httpx.AsyncClient(base_url=hub.http)
    csrf = (await operator.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
            ).json()["csrf"]
    operator.headers["X-CSRF-Token"] = csrf
    own, other = await hub.token(PUBLIC_ID), await hub.token("35.09.02")
    return {
        "public": httpx.AsyncClient(base_url=hub.http),
        "operator": operator,
        "station": httpx.AsyncClient(base_url=hub.http, headers={"Authorization": f"Bearer {own}"}),
        "other": httpx.AsyncClient(base_url=hub.http, headers={"Authorization": f"Bearer {other}"}),
    }


async def test_http_role_matrix(hub: RunningHub) -> None:
    by_role = await clients(hub)
    failures = []
    try:
        for method, path, body, expected in MATRIX:
            for role, want in expected.items():
                kwargs: dict[str, Any] = {}
                if isinstance(body, dict):
                    kwargs["json"] = body
                elif isinstance(body, str):
                    kwargs["content"] = body
                    kwargs["headers"] = {"Content-Type": "application/sdp"}
                response = await by_role[role].request(method, path, **kwargs)
                allowed = response.status_code not in (401, 403)
                if (want == OK and not allowed) or (want != OK and response.status_code != want):
                    failures.append(f"{role} {method} {path}: {response.status_code}, wanted {want}")
    finally:
        for client in by_role.values():
            await client.aclose()
    assert not failures, "\n".join(failures)


async def test_websocket_role_matrix(hub: RunningHub) -> None:
    """A station token only opens its own station; watchers need nothing; public sees less."""
    own = await hub.token(PUBLIC_ID)
    wrong = await Client.open(f"{hub.ws}/ws/station")
    await wrong.send({"t": "hello", "station": "35.09.02", "token": own})  # acting for another station
    assert await wrong.closed_with() == 4401
    client, welcome = await station(hub.ws, PUBLIC_ID, own)
    assert welcome["station"] == PUBLIC_ID
    # A station cannot speak for another once in: its messages always apply to its own id.
    await client.send({"t": "activity.start", "title": "Rapat", "station": "35.09.02"})
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    snapshot = await watcher.recv()
    by_id = {s["id"]: s for s in snapshot["stations"]}
    if by_id[PUBLIC_ID]["activity"] is None:
        await watcher.recv_until(lambda m: m["t"] == "activity" and m["id"] == PUBLIC_ID)
    assert by_id["35.09.02"]["activity"] is None
    assert PRIVATE_ID not in by_id and "node" not in by_id[PUBLIC_ID]
    await client.close()
