"""WHIP (RFC 9725) and WHEP endpoints: the HTTP edge of ``hub.media``.

    POST    /whip/{station}            station token (Bearer); "pendopo": an operator session
    POST    /whep/{station}            public station: anyone; otherwise an operator session
                                       (404 to others); "pendopo": operators, and the stations
                                       an active talk.start addresses (403 to other stations)
    GET     /whep/{station}/{id}       the same credential: whether this viewer gets video now
                                       (JSON; its link may be too weak: hub.media.congestion)
    DELETE  /whip|whep/{station}/{id}  the same credential that created the session
    PATCH   /whip|whep/{station}/{id}  405: no trickle ICE or ICE restart (RFC 9725 §4.3.1);
                                       offers and answers carry all candidates
    OPTIONS any of the above           CORS preflight, plus ICE servers as Link headers

201s, OPTIONS and the WHEP 307 carry one ``Link: <url>; rel="ice-server"`` per ICE server:
``media.ice_servers`` as they are, ``turn.urls`` with credentials minted for this response
(hub.core.turn; docs/operations.md "TURN").

Owners: "station:<id>", "operator:<name>" or "public" (an anonymous viewer: the
unguessable session URL is its only credential, as RFC 9725 §4.1 expects).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.core import turn
from hub.core.talk import PENDOPO
from hub.errors import Forbidden, NotAuthenticated, NotFound, ProtocolViolation, UnsupportedMediaType
from hub.media.sessions import PUBLIC_OWNER
from hub.routes.bodies import media_type, read_bounded
from hub.routes.roles import allow
from hub.services.auth import hash_token

SDP = "application/sdp"
VIEWER = "viewer"  # the TURN label of WHEP clients (anonymous or not)
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, PATCH, OPTIONS",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, If-Match",
    "Access-Control-Expose-Headers": "Location, ETag, Link, Accept-Post, Allow",
    "Access-Control-Max-Age": "86400",
}


def _headers(hub: Any, **extra: str) -> dict[str, str]:
    return {**CORS, **extra}


def _with_ice_servers(response: Response, hub: Any, name: str) -> Response:
    """One ``Link: <url>; rel="ice-server"`` per ICE server (RFC 9725 §4.6); TURN ones carry
    credentials minted now, labelled ``name`` (hub.core.turn)."""
    for server in turn.issue(name, hub.clock(), hub.settings.media.ice_servers, hub.settings.turn):
        response.headers.append("Link", turn.link_value(server))
    return response


async def _read_offer(request: Request, limit: int) -> str:
    """The SDP body, refused early if it is not SDP or larger than ``limit`` bytes."""
    if media_type(request) != SDP:
        raise UnsupportedMediaType(f"Content-Type must be {SDP}")
    body = await read_bounded(request, limit, "SDP offer")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation("SDP offer is not UTF-8") from None


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def _publisher_owner(request: Request, hub: Any, station_id: str) -> str:
    if station_id == PENDOPO:
        operator = hub.auth.operator_for(request)
        if operator is None:
            raise NotAuthenticated("publishing as pendopo needs an operator session")
        hub.auth.require_operator(request, csrf=True)  # the cookie alone is not enough (CSRF)
        return f"operator:{operator}"
    # Unknown, private and public stations answer alike (401, same body) to a caller without
    # the station's valid token: a 404 for unknown ids alone would list the private offices.
    # The token is looked up first either way, so the answer takes as long for both.
    token = _bearer(request)
    valid = token is not None and await hub.auth.check_station_token(station_id, token)
    if not valid or hub.registry.get(station_id) is None:
        raise NotAuthenticated("WHIP needs Authorization: Bearer <station token>")
    return f"station:{station_id}"


async def _viewer_owner(request: Request, hub: Any, station_id: str, *, opening: bool = True) -> str:
    """Public stations: anyone; others: operators. A station that is not visible to the
    caller answers 404, as the rest of the API does (its existence is not disclosed).
    The Pendopo's talk-back is for operators, and for a station (its own Bearer token) only
    while a talk.start addresses it (``opening``: a new session; ending one's own needs not)."""
    operator = hub.auth.operator_for(request)
    station = hub.registry.get(station_id)
    if operator is not None and station is not None and station.public and not hub.auth.has_csrf(request):
        operator = None  # the public portal sends the cookie but no CSRF token: a view as anyone's
    if operator is not None:
        hub.auth.require_operator(request, csrf=True)  # the cookie alone is not enough (CSRF)
        if station_id != PENDOPO and hub.registry.get(station_id) is None:
            raise NotFound(f"unknown station {station_id}")
        return f"operator:{operator}"
    if station_id == PENDOPO:
        token = _bearer(request)
        listener = await _station_for_token(hub, token) if token else None
        if listener is None:
            raise NotAuthenticated("the Pendopo talk-back needs a station token or an operator session")
        if opening and not hub.stations.talks.may_listen(listener):
            # The talk-back is one stream for whoever is addressed: any other station would
            # overhear what the Pendopo says to another office.
            raise Forbidden("the Pendopo is not talking to this station", code="not_addressed")
        return f"station:{listener}"
    station = hub.registry.get(station_id)
    if station is None or not station.public:
        raise NotFound(f"unknown station {station_id}")
    return PUBLIC_OWNER


async def _station_for_token(hub: Any, token: str) -> str | None:
    station_id = await hub.auth.station_for_token(token)
    return station_id if station_id in hub.registry else None


def _created(hub: Any, request: Request, session: Any) -> Response:
    location = f"/{session.kind}/{session.station_id}/{session.id}"
    headers = _headers(hub, Location=location, ETag=session.etag)
    response = Response(session.answer_sdp, status_code=201, media_type=SDP, headers=headers)
    return _with_ice_servers(response, hub, session.station_id if session.kind == "whip" else VIEWER)


@allow("station", "operator")
async def whip_post(request: Request) -> Response:
    hub = request.app.state.hub
    station_id = request.path_params["station"]
    owner = await _publisher_owner(request, hub, station_id)
    offer = await _read_offer(request, hub.settings.media.max_sdp_bytes)
    session = await hub.media.publish(station_id, offer, owner=owner, client_addr=_client(request))
    _opened_by_operator(request, hub, owner, session.id)
    token = _bearer(request)
    if owner.startswith("station:") and token:
        hub.whip_tokens.opened(session.id, station_id, hash_token(token))
    if station_id == PENDOPO:  # the regent's voice to the offices: who spoke, and when
        await hub.credentials.audit(hub.clock(), owner.partition(":")[2], "talk.publish", PENDOPO)
    return _created(hub, request, session)


@allow("public", "operator", "station")  # station: the Pendopo's talk-back, while addressed
async def whep_post(request: Request) -> Response:
    hub = request.app.state.hub
    station_id = request.path_params["station"]
    owner = await _viewer_owner(request, hub, station_id)
    owner_url = await hub.router.owner_url(station_id)
    if owner_url is not None:  # published on another node: WHEP clients follow redirects
        query = f"?{request.url.query}" if request.url.query else ""
        redirect = Response(status_code=307, headers=_headers(hub, Location=owner_url + request.url.path + query))
        return _with_ice_servers(redirect, hub, VIEWER)
    offer = await _read_offer(request, hub.settings.media.max_sdp_bytes)
    session = await hub.media.view(station_id, offer, owner=owner, client_addr=_client(request),
                                   gone=lambda: _disconnected(request))
    _opened_by_operator(request, hub, owner, session.id)
    station = hub.registry.get(station_id)
    if station is not None and not station.public:  # every view of a non-public office is audited
        await hub.credentials.audit(hub.clock(), owner.partition(":")[2], "view", station_id)
    return _created(hub, request, session)


async def _disconnected(request: Request) -> None:
    """Returns once the client has closed its connection. Its body has been read, so the next
    ASGI message is ``http.disconnect``, sent when the client goes (or once we have answered)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _opened_by_operator(request: Request, hub: Any, owner: str, media_session_id: str) -> None:
    """An operator's media session ends with their login session (logout, expiry, revocation)."""
    if owner.startswith("operator:"):
        hub.operator_access.media_opened(media_session_id, request.scope["jaga.session"])


async def _session_owned_by_caller(request: Request, kind: str) -> Any:
    hub = request.app.state.hub
    station_id, session_id = request.path_params["station"], request.path_params["session"]
    session = hub.media.session(session_id)
    if session is None or session.kind != kind or session.station_id != station_id:
        raise NotFound("no such media session")
    if kind == "whip":
        owner = await _publisher_owner(request, hub, station_id)
    else:
        owner = await _viewer_owner(request, hub, station_id, opening=False)
    if owner != session.owner:
        raise Forbidden("this media session belongs to someone else")
    return session


@allow("public", "operator", "station")  # as DELETE: whoever opened the session
async def whep_get(request: Request) -> Response:
    """A viewer's page asks whether it gets video now (docs/http-api.md): ``video`` "on" or
    "off", ``reason`` ("congestion": its link; "no_video": none negotiated), ``retry_in_s``
    until video is tried again, and how often the station's thumbnail is renewed."""
    session = await _session_owned_by_caller(request, "whep")
    hub = request.app.state.hub
    status = hub.media.viewer_video(session.id)
    if status is None:
        raise NotFound("no such media session")
    body = {**status, "thumbnail_s": hub.settings.media.thumbnail_s}
    return JSONResponse(body, headers={**CORS, "Cache-Control": "no-store"})


def _session_endpoints(kind: str) -> tuple[Any, Any]:
    # Whoever may open such a session may end it (its creator only: _session_owned_by_caller).
    roles = ("station", "operator") if kind == "whip" else ("public", "operator", "station")

    @allow(*roles)
    async def delete(request: Request) -> Response:
        session = await _session_owned_by_caller(request, kind)
        await request.app.state.hub.media.end(session.id)
        return Response(status_code=200, headers=dict(CORS))

    @allow(*roles)
    async def patch(request: Request) -> Response:
        await _session_owned_by_caller(request, kind)
        return Response(status_code=405, headers={**CORS, "Allow": "GET, DELETE, OPTIONS" if kind == "whep"
                                                   else "DELETE, OPTIONS"})

    return delete, patch


@allow("public", "operator")  # CORS preflights carry no credentials
async def preflight(request: Request) -> Response:
    hub = request.app.state.hub
    if "session" not in request.path_params:
        allowed = "POST, OPTIONS"
    elif request.url.path.startswith("/whep/"):
        allowed = "GET, DELETE, PATCH, OPTIONS"
    else:
        allowed = "DELETE, PATCH, OPTIONS"
    # Unauthenticated (RFC 9725 §4.6 lets clients fetch ICE servers before their offer): the
    # TURN label never names a station, so it tells nothing about which ones exist.
    response = Response(status_code=204, headers=_headers(hub, Allow=allowed, **{"Accept-Post": SDP}))
    return _with_ice_servers(response, hub, "publisher" if request.url.path.startswith("/whip/") else VIEWER)


def _client(request: Request) -> str:
    return request.client.host if request.client else "unknown"


whip_delete, whip_patch = _session_endpoints("whip")
whep_delete, whep_patch = _session_endpoints("whep")

routes = [
    Route("/whip/{station}", whip_post, methods=["POST"]),
    Route("/whip/{station}", preflight, methods=["OPTIONS"]),
    Route("/whip/{station}/{session}", whip_delete, methods=["DELETE"]),
    Route("/whip/{station}/{session}", whip_patch, methods=["PATCH"]),
    Route("/whip/{station}/{session}", preflight, methods=["OPTIONS"]),
    Route("/whep/{station}", whep_post, methods=["POST"]),
    Route("/whep/{station}", preflight, methods=["OPTIONS"]),
    Route("/whep/{station}/{session}", whep_get, methods=["GET"]),
    Route("/whep/{station}/{session}", whep_delete, methods=["DELETE"]),
    Route("/whep/{station}/{session}", whep_patch, methods=["PATCH"]),
    Route("/whep/{station}/{session}", preflight, methods=["OPTIONS"]),
]
