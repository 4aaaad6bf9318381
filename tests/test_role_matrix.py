"""The role matrix, derived from the router: every (route, method) × every kind of caller.

What is checked comes from the app, not from a list kept here: :func:`hub.routes.roles.declared`
enumerates every method of every ``Route`` (HEAD with GET), every ``WebSocketRoute`` and every
``Mount`` with the roles its endpoint declares (``@allow``). This module only says *how to call*
each one (:data:`PROBES`: a concrete path, a body); a route or method that declares no roles,
or that nobody says how to call, fails :func:`test_every_route_and_method_declares_roles_and_is_probed`
(:func:`test_an_undeclared_route_or_method_is_caught` shows it does).

:func:`test_http_and_websocket_role_matrix` then calls every probe as each kind of caller —
anonymous, an operator (session cookie + CSRF header), a station (its own token) and another
station (a valid token of a different station) — and holds the answers to the declaration:

* ``public`` declared ⇔ an anonymous caller gets through at least one probe;
* ``operator`` declared ⇔ an operator gets through at least one probe;
* ``station`` declared ⇔ a station gets through a probe an anonymous caller does not (a route
  open to anyone is open to stations too; ``station`` means the token opens something);
* a token never opens another station: on a probe naming the station's own id, another
  station's token gets no further than an anonymous caller.

"Gets through" is any answer but 401, 403, a redirect to ``/login``, or (for a probe naming a
non-public station, ``hidden``) 404. Bodies are empty or ``{}`` on purpose: a route checks the
caller before it reads the body, so an allowed caller gets 400/415 and a refused one 401/403
(a route that parsed first would show up here as letting anyone through). The session routes
(``DELETE``/``PATCH /whip|whep/{station}/{session}``, ``GET /whep/…``) look the session up before the caller
(the unguessable URL comes first, RFC 9725): probed with an unknown session (404 for all),
they must declare exactly the roles of the POST that creates such sessions; the creator-only
rule itself is tested in tests/media/test_routes.py. The same table is in docs/security.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.app import create_app
from hub.routes.roles import ROLES, allow, declared
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub
from tests.wsclient import JSON, Client, station

PUBLIC_ID = "35.09.01"  # the "station" caller's own station
OTHER_ID = "35.09.02"  # the "other" caller's station
PRIVATE_ID = "opd.bakesbangpol"
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64 + b"\xff\xd9"
CALLERS = ("public", "operator", "station", "other")
JEJAK_DAY = "2026-01-02"


@dataclass(frozen=True)
class Probe:
    path: str
    body: Any = None  # dict → JSON; "" → an empty body (no Content-Type: SDP routes answer 415 once past the caller)
    own: bool = False  # the path names the "station" caller's own station
    hidden: bool = False  # the path names a non-public station: 404 is a refusal
    expect: dict[str, int] = field(default_factory=dict)  # exact statuses, where one is the point
    fresh_operator: bool = False  # the call ends the operator's session (logout): use a throwaway one


# How to call each (method, path) of the router; HEAD uses the GET probes. Nothing here says
# who may: that is the route's own @allow.
PROBES: dict[tuple[str, str], list[Probe]] = {
    ("GET", "/"): [Probe("/")],
    ("GET", "/watch/{station}"): [Probe(f"/watch/{PUBLIC_ID}")],
    ("GET", "/laporan"): [Probe("/laporan")],
    ("GET", "/login"): [Probe("/login")],
    ("GET", "/wall"): [Probe("/wall", expect={"public": 303, "station": 303})],
    ("GET", "/static/{path}"): [Probe("/static/site.css")],
    ("GET", "/wall/static/{path}"): [Probe("/wall/static/index.html")],
    ("GET", "/api/v1/stations"): [Probe("/api/v1/stations")],
    ("GET", "/api/v1/stations/{station}"): [
        Probe(f"/api/v1/stations/{PUBLIC_ID}"),
        Probe(f"/api/v1/stations/{PRIVATE_ID}", hidden=True, expect={"public": 404, "station": 404}),
    ],
    ("GET", "/api/v1/stations/{station}/thumbnail.jpg"): [
        Probe(f"/api/v1/stations/{PUBLIC_ID}/thumbnail.jpg"),
        Probe(f"/api/v1/stations/{PRIVATE_ID}/thumbnail.jpg", hidden=True, expect={"public": 404}),
    ],
    ("GET", "/api/v1/stations/{station}/jejak"): [
        Probe(f"/api/v1/stations/{PUBLIC_ID}/jejak"),
        Probe(f"/api/v1/stations/{PRIVATE_ID}/jejak", hidden=True, expect={"public": 404}),
    ],
    ("GET", "/api/v1/stations/{station}/jejak/{date}/{hhmm}.jpg"): [  # pictures put there by the test
        Probe(f"/api/v1/stations/{PUBLIC_ID}/jejak/{JEJAK_DAY}/0800.jpg", expect={"public": 200}),
        Probe(f"/api/v1/stations/{PRIVATE_ID}/jejak/{JEJAK_DAY}/0800.jpg", hidden=True,
              expect={"public": 404, "operator": 200}),
    ],
    ("POST", "/api/v1/stations/{station}/talk"): [Probe(f"/api/v1/stations/{PUBLIC_ID}/talk", {})],
    ("GET", "/api/v1/stations/{station}/questions/challenge"): [
        Probe(f"/api/v1/stations/{PUBLIC_ID}/questions/challenge"),
        Probe(f"/api/v1/stations/{PRIVATE_ID}/questions/challenge", hidden=True, expect={"public": 404}),
    ],
    ("GET", "/api/v1/stations/{station}/questions"): [
        Probe(f"/api/v1/stations/{PUBLIC_ID}/questions"),
        Probe(f"/api/v1/stations/{PRIVATE_ID}/questions", hidden=True, expect={"public": 404}),
    ],
    # Without a proof: 400 `proof` for everyone (asking is public; the proof is not a role).
    ("POST", "/api/v1/stations/{station}/questions"): [Probe(f"/api/v1/stations/{PUBLIC_ID}/questions", {})],
    ("POST", "/api/v1/stations/{station}/questions/{qid}/vote"): [
        Probe(f"/api/v1/stations/{PUBLIC_ID}/questions/no-such-question/vote", {})],
    ("POST", "/api/v1/stations/{station}/questions/slow-mode"): [
        Probe(f"/api/v1/stations/{PUBLIC_ID}/questions/slow-mode", {})],
    # The "station" caller's station is in questions.station_moderation (the hub fixture below):
    # its token opens its own queue; another station's token is refused (403).
    ("GET", "/api/v1/questions"): [Probe("/api/v1/questions", own=True, expect={"public": 401, "other": 403})],
    ("POST", "/api/v1/questions/{qid}"): [
        Probe("/api/v1/questions/no-such-question", {}, own=True, expect={"public": 401, "other": 403})],
    ("GET", "/api/v1/attendance/daily"): [
        Probe("/api/v1/attendance/daily"),
        Probe(f"/api/v1/attendance/daily?station={PRIVATE_ID}", hidden=True),
    ],
    ("GET", "/api/v1/attendance/monthly"): [Probe("/api/v1/attendance/monthly")],
    # Recordings (docs/recordings.md): an unknown id is 404 to everyone alike; a private
    # station's list is 404 to the public; the actions and the status are operators'.
    ("GET", "/api/v1/recordings"): [
        Probe("/api/v1/recordings"),
        Probe(f"/api/v1/recordings?station={PRIVATE_ID}", hidden=True, expect={"public": 404, "station": 404}),
    ],
    ("GET", "/api/v1/recordings.csv"): [Probe("/api/v1/recordings.csv")],
    ("GET", "/api/v1/recordings/status"): [Probe("/api/v1/recordings/status", expect={"public": 401, "station": 401})],
    ("GET", "/api/v1/recordings/{recording}"): [Probe("/api/v1/recordings/no-such-recording")],
    ("POST", "/api/v1/recordings/{recording}/visibility"): [
        Probe("/api/v1/recordings/no-such-recording/visibility", {}, expect={"public": 401, "operator": 404})],
    ("POST", "/api/v1/stations/{station}/recording"): [
        Probe(f"/api/v1/stations/{PUBLIC_ID}/recording", {}, expect={"public": 401, "operator": 400})],
    ("GET", "/recordings/{recording}.webm"): [Probe("/recordings/no-such-recording.webm")],
    ("GET", "/recordings/{recording}.mp4"): [Probe("/recordings/no-such-recording.mp4")],
    # HLS (docs/http-api.md "HLS"): public stations only, for everyone alike (operators watch
    # private ones over WebRTC); a station not live is 404 `not_live`, a private one 404.
    ("GET", "/hls/{station}/index.m3u8"): [
        Probe(f"/hls/{PUBLIC_ID}/index.m3u8"),
        Probe(f"/hls/{PRIVATE_ID}/index.m3u8", hidden=True, expect={"public": 404, "operator": 404, "station": 404}),
    ],
    ("GET", "/hls/{station}/plain.m3u8"): [Probe(f"/hls/{PUBLIC_ID}/plain.m3u8")],
    ("GET", "/hls/{station}/{run}/{file}"): [Probe(f"/hls/{PUBLIC_ID}/feedbeef/p1.0.m4s")],
    ("GET", "/rekaman"): [Probe("/rekaman")],
    ("GET", "/rekaman/{recording}"): [Probe("/rekaman/no-such-recording")],
    ("GET", "/api/v1/activities"): [Probe("/api/v1/activities")],
    ("POST", "/api/v1/auth/login"): [Probe("/api/v1/auth/login", {})],
    ("POST", "/api/v1/auth/logout"): [Probe("/api/v1/auth/logout", fresh_operator=True)],
    ("GET", "/api/v1/auth/me"): [Probe("/api/v1/auth/me")],
    ("POST", "/api/v1/announce"): [Probe("/api/v1/announce", {})],
    ("GET", "/api/v1/audit"): [Probe("/api/v1/audit")],
    ("GET", "/healthz"): [Probe("/healthz")],
    ("GET", "/readyz"): [Probe("/readyz")],
    ("GET", "/metrics"): [Probe("/metrics", expect={"public": 401, "station": 401})],  # counts private stations
    ("WS", "/ws/station"): [Probe("/ws/station", own=True)],
    ("WS", "/ws/watch"): [Probe("/ws/watch")],
    ("POST", "/whip/{station}"): [
        Probe(f"/whip/{PUBLIC_ID}", "", own=True),
        Probe("/whip/pendopo", "", expect={"public": 401, "station": 401}),
        # Unknown and private stations answer as any other without the token: existence is not told.
        Probe(f"/whip/{PRIVATE_ID}", "", expect={"public": 401, "operator": 401, "station": 401}),
        Probe("/whip/opd.tidak-ada", "", expect={"public": 401, "operator": 401, "station": 401}),
    ],
    ("OPTIONS", "/whip/{station}"): [Probe(f"/whip/{PUBLIC_ID}")],
    ("DELETE", "/whip/{station}/{session}"): [Probe(f"/whip/{PUBLIC_ID}/no-such-session")],
    ("PATCH", "/whip/{station}/{session}"): [Probe(f"/whip/{PUBLIC_ID}/no-such-session")],
    ("OPTIONS", "/whip/{station}/{session}"): [Probe(f"/whip/{PUBLIC_ID}/no-such-session")],
    ("POST", "/whep/{station}"): [
        Probe(f"/whep/{PUBLIC_ID}", ""),
        Probe(f"/whep/{PRIVATE_ID}", "", hidden=True, expect={"public": 404, "station": 404}),  # not 403
        # The talk-back: a station only while a talk.start addresses it (the setup addresses the
        # "station" caller's), else it would overhear what the Pendopo says to another office.
        Probe("/whep/pendopo", "", expect={"public": 401, "other": 403}),
    ],
    ("OPTIONS", "/whep/{station}"): [Probe(f"/whep/{PUBLIC_ID}")],
    ("GET", "/whep/{station}/{session}"): [Probe(f"/whep/{PUBLIC_ID}/no-such-session")],
    ("DELETE", "/whep/{station}/{session}"): [Probe(f"/whep/{PUBLIC_ID}/no-such-session")],
    ("PATCH", "/whep/{station}/{session}"): [Probe(f"/whep/{PUBLIC_ID}/no-such-session")],
    ("OPTIONS", "/whep/{station}/{session}"): [Probe(f"/whep/{PUBLIC_ID}/no-such-session")],
}
# Routes that find their object before their caller: their roles are those of the route that
# creates the object (see the module docstring).
SAME_ROLES_AS = {
    ("DELETE", "/whip/{station}/{session}"): ("POST", "/whip/{station}"),
    ("PATCH", "/whip/{station}/{session}"): ("POST", "/whip/{station}"),
    ("GET", "/whep/{station}/{session}"): ("POST", "/whep/{station}"),
    ("HEAD", "/whep/{station}/{session}"): ("POST", "/whep/{station}"),  # Starlette's, with GET
    ("DELETE", "/whep/{station}/{session}"): ("POST", "/whep/{station}"),
    ("PATCH", "/whep/{station}/{session}"): ("POST", "/whep/{station}"),
}


def probes_for(method: str, path: str) -> list[Probe] | None:
    return PROBES.get(("GET" if method == "HEAD" else method, path))


def declaration_problems(app: Starlette) -> list[str]:
    """What the router answers without a declaration or without a probe."""
    problems = []
    for (method, path), roles in declared(app.routes).items():
        if not roles:
            problems.append(f"{method} {path} declares no roles: add @allow(...) (hub/routes/roles.py)")
        elif not roles <= set(ROLES):
            problems.append(f"{method} {path} declares unknown roles {sorted(roles - set(ROLES))}")
        if probes_for(method, path) is None:
            problems.append(f"{method} {path} has no probe: say how to call it in PROBES "
                            "(and add it to docs/security.md and docs/http-api.md)")
    return problems


def test_every_route_and_method_declares_roles_and_is_probed(tmp_path: Path) -> None:
    app = create_app(hub_settings(tmp_path))
    table = declared(app.routes)
    assert declaration_problems(app) == []
    for key, source in SAME_ROLES_AS.items():
        assert table[key] == table[source], f"{key} must declare the roles of {source}"
    stale = {key for key in PROBES if key not in table}
    assert not stale, f"probes for routes the app no longer has: {sorted(stale)}"


def test_an_undeclared_route_or_method_is_caught(tmp_path: Path) -> None:
    async def undeclared(request: Request) -> Response:
        return Response("hi")

    @allow("operator")
    async def declared_endpoint(request: Request) -> Response:
        return Response("hi")

    app = create_app(hub_settings(tmp_path))
    app.router.routes.append(Route("/api/v1/extra", undeclared))
    app.router.routes.append(Route("/api/v1/announce", declared_endpoint, methods=["DELETE"]))  # a new method
    problems = declaration_problems(app)
    assert any(p.startswith("GET /api/v1/extra declares no roles") for p in problems), problems
    assert any(p.startswith("HEAD /api/v1/extra declares no roles") for p in problems), problems
    assert any(p.startswith("GET /api/v1/extra has no probe") for p in problems), problems
    assert any(p.startswith("DELETE /api/v1/announce has no probe") for p in problems), problems


# -- calling every probe as every caller -------------------------------------------------------


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """The shared hub, with the "station" caller's own staff moderating its questions."""
    running = await start_hub(hub_settings(tmp_path, questions={"station_moderation": [PUBLIC_ID]}))
    try:
        yield running
    finally:
        await stop_hub(running)


async def operator_client(hub: RunningHub, name: str = "budi") -> httpx.AsyncClient:
    if name not in await hub.hub.credentials.operators():
        await hub.hub.auth.add_operator(name, "rahasia-sekali")
    client = httpx.AsyncClient(base_url=hub.http)
    login = await client.post("/api/v1/auth/login", json={"username": name, "password": "rahasia-sekali"})
    assert login.status_code == 200, login.text
    client.headers["X-CSRF-Token"] = login.json()["csrf"]
    return client


def gets_through(status: int, location: str, probe: Probe) -> bool:
    if status in (401, 403) or (status == 303 and location.startswith("/login")):
        return False
    return not (probe.hidden and status == 404)


async def http_status(client: httpx.AsyncClient, method: str, probe: Probe) -> tuple[int, str]:
    kwargs: dict[str, Any] = {}
    if isinstance(probe.body, dict):
        kwargs["json"] = probe.body
    elif isinstance(probe.body, str):
        kwargs["content"] = probe.body
    response = await client.request(method, probe.path, **kwargs)
    return response.status_code, response.headers.get("location", "")


async def ws_status(hub: RunningHub, path: str, caller: str, tokens: dict[str, str], cookie: str) -> int:
    """101 when the socket serves the caller (a welcome, a snapshot), else its close code."""
    headers = {"Cookie": cookie} if caller == "operator" else {}
    client = await Client.open(f"{hub.ws}{path}", JSON, additional_headers=headers)
    try:
        if path == "/ws/station":
            await client.send({"t": "hello", "station": PUBLIC_ID, "token": tokens.get(caller, "not-a-token")})
        first = await client.recv()
        if first["t"] in ("welcome", "snapshot"):
            return 101
        return await client.closed_with() or 0
    except Exception:
        return await client.closed_with() or 0
    finally:
        await client.close()


async def test_http_and_websocket_role_matrix(hub: RunningHub) -> None:
    tokens = {"station": await hub.token(PUBLIC_ID), "other": await hub.token(OTHER_ID)}
    operator = await operator_client(hub)
    callers = {
        "public": httpx.AsyncClient(base_url=hub.http),
        "operator": operator,
        "station": httpx.AsyncClient(base_url=hub.http, headers={"Authorization": f"Bearer {tokens['station']}"}),
        "other": httpx.AsyncClient(base_url=hub.http, headers={"Authorization": f"Bearer {tokens['other']}"}),
    }
    cookie = "; ".join(f"{name}={value}" for name, value in operator.cookies.items())
    for station_id in (PUBLIC_ID, PRIVATE_ID):  # so thumbnails answer 200 to whoever may see them
        hub.hub.stations.thumbnails[station_id] = (JPEG, hub.hub.clock())
        jejak = hub.hub.jejak.path(station_id, JEJAK_DAY, "0800")  # and a kept picture answers 200
        jejak.parent.mkdir(parents=True, exist_ok=True)
        jejak.write_bytes(JPEG)
    # The Pendopo talks to the "station" caller's office: that station may now listen (WHEP pendopo).
    talking = await operator.post(f"/api/v1/stations/{PUBLIC_ID}/talk", json={"active": True})
    assert talking.status_code == 200, talking.text

    app = hub.server.config.app  # the very app under test, not a copy
    assert isinstance(app, Starlette)
    failures: list[str] = []
    try:
        for (method, path), roles in declared(app.routes).items():
            through: dict[str, list[bool]] = {caller: [] for caller in CALLERS}
            for probe in probes_for(method, path) or []:
                seen: dict[str, int] = {}
                for caller in CALLERS:
                    if method == "WS":
                        status, location = await ws_status(hub, probe.path, caller, tokens, cookie), ""
                    elif caller == "operator" and probe.fresh_operator:
                        throwaway = await operator_client(hub, "sementara")
                        try:
                            status, location = await http_status(throwaway, method, probe)
                        finally:
                            await throwaway.aclose()
                    else:
                        status, location = await http_status(callers[caller], method, probe)
                    seen[caller] = status
                    through[caller].append(status == 101 if method == "WS" else gets_through(status, location, probe))
                    if method != "WS" and status >= 500:
                        failures.append(f"{caller} {method} {probe.path}: {status}")
                for caller, want in probe.expect.items():
                    if seen[caller] != want:
                        failures.append(f"{caller} {method} {probe.path}: {seen[caller]}, wanted {want}")
                if probe.own and through["other"][-1] and not through["public"][-1]:
                    failures.append(f"another station's token opens {method} {probe.path} ({seen['other']})")
            if (method, path) in SAME_ROLES_AS:
                continue  # found before the caller is asked: checked by declaration above
            observed = {
                "public": any(through["public"]),
                "operator": any(through["operator"]),
                "station": any(s and not p for s, p in zip(through["station"], through["public"], strict=True)),
            }
            for role, used in observed.items():
                if used != (role in (roles or ())):
                    failures.append(f"{method} {path}: declares {sorted(roles or ())}, but {role} "
                                    f"{'gets through' if used else 'never gets through'}")
    finally:
        for client in callers.values():
            await client.aclose()
    assert not failures, "\n".join(failures)


async def test_a_station_speaks_only_for_itself_and_the_public_sees_less(hub: RunningHub) -> None:
    """A station token only opens its own station; watchers need nothing; public sees less."""
    own = await hub.token(PUBLIC_ID)
    wrong = await Client.open(f"{hub.ws}/ws/station")
    await wrong.send({"t": "hello", "station": OTHER_ID, "token": own})  # acting for another station
    assert await wrong.closed_with() == 4401
    client, welcome = await station(hub.ws, PUBLIC_ID, own)
    assert welcome["station"] == PUBLIC_ID
    # A station cannot speak for another once in: its messages always apply to its own id.
    await client.send({"t": "activity.start", "title": "Rapat", "station": OTHER_ID})
    watcher = await Client.open(f"{hub.ws}/ws/watch", JSON)
    snapshot = await watcher.recv()
    by_id = {s["id"]: s for s in snapshot["stations"]}
    if by_id[PUBLIC_ID]["activity"] is None:
        await watcher.recv_until(lambda m: m["t"] == "activity" and m["id"] == PUBLIC_ID)
    assert by_id[OTHER_ID]["activity"] is None
    assert PRIVATE_ID not in by_id and "node" not in by_id[PUBLIC_ID]
    await client.close()
