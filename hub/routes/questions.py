"""Citizens' questions over HTTP (docs/questions.md "HTTP"). Thin: parse, call, answer.

    GET  /api/v1/stations/{station}/questions/challenge   public: a proof-of-work challenge
    GET  /api/v1/stations/{station}/questions             public: approved and answered ones
                                                          (?activity=TITLE: asked under it)
    POST /api/v1/stations/{station}/questions             public: ask (with the proof)
    POST /api/v1/stations/{station}/questions/{qid}/vote  public: one upvote per device
    POST /api/v1/stations/{station}/questions/slow-mode   operator (+ CSRF)
    GET  /api/v1/questions                                operator; a moderating station: its own
    POST /api/v1/questions/{qid}                          operator (+ CSRF); a moderating station

Every rule (text, proof, limits, transitions, who sees what) is in :mod:`hub.core.questions`,
:mod:`hub.core.proof` and :class:`hub.services.questions.QuestionsService`; here only the
caller is told apart. The asker is a *device*: a random ``jaga_device`` cookie set on the
first ask or vote. The service only ever gets its SHA-256 (a stored or logged device id can
never be replayed as the cookie), plus the client address (``scope["client"]``, which the
trusted-proxy middleware has already set to the real client).

A *moderating station* is one listed in ``questions.station_moderation``: its token
(``Authorization: Bearer``) moderates that station's questions, and no other station's.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.core.questions import STATES, moderator_view, public_view
from hub.errors import Forbidden, NotAuthenticated, NotFound, ProtocolViolation
from hub.routes import bodies
from hub.routes.roles import allow

DEVICE_COOKIE = "jaga_device"
DEVICE_COOKIE_MAX_AGE = 365 * 24 * 3600
_DEVICE_LENGTH = 43  # secrets.token_urlsafe(32)
MAX_MINUTES = 7 * 24 * 60  # a time-out longer than a week is a ban
MAX_SLOW_MODE_S = 3600
MAX_ACTIVITY = 500  # an activity title is at most 500 characters (jaga/wire.py, activity.start)


# -- who is asking -------------------------------------------------------------------------


def _public_station(request: Request) -> str:
    """The path's station if the caller may see it: a private or unknown one is 404 to the
    public (as everywhere, existence is not told); operators see every station."""
    hub = request.app.state.hub
    station_id = request.path_params["station"]
    station = hub.registry.get(station_id)
    if station is None or not (station.public or request.scope.get("jaga.operator") is not None):
        raise NotFound(f"no station {station_id!r}")
    return str(station.id)


def _device_cookie(request: Request) -> str | None:
    """The caller's device cookie if it is one we could have set; anything else is ignored."""
    value = request.cookies.get(DEVICE_COOKIE, "")
    if len(value) == _DEVICE_LENGTH and all(c.isascii() and (c.isalnum() or c in "-_") for c in value):
        return value
    return None


def _device(request: Request) -> tuple[str, str | None]:
    """(hash of the device cookie, a new cookie to set or None when the caller has one)."""
    cookie = _device_cookie(request)
    fresh = None
    if cookie is None:
        cookie = fresh = secrets.token_urlsafe(32)
    return hashlib.sha256(cookie.encode()).hexdigest(), fresh


def _with_device(request: Request, response: Response, fresh: str | None) -> Response:
    if fresh is not None:
        hub = request.app.state.hub
        secure = hub.settings.hub.secure_cookies or request.url.scheme == "https"
        response.set_cookie(DEVICE_COOKIE, fresh, max_age=DEVICE_COOKIE_MAX_AGE, httponly=True,
                            samesite="lax", secure=secure)
    return response


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def _moderator(request: Request, *, csrf: bool) -> tuple[str, str | None]:
    """(actor, the one station it may moderate or None for all) — an operator (CSRF-checked
    when ``csrf``) or a station listed in ``questions.station_moderation`` by its token."""
    hub = request.app.state.hub
    if request.scope.get("jaga.operator") is not None:
        return hub.auth.require_operator(request, csrf=csrf), None
    token = _bearer(request)
    station_id = await hub.auth.station_for_token(token) if token else None
    if station_id is None:
        raise NotAuthenticated("an operator session or a station token is required")
    if station_id not in hub.settings.questions.station_moderation:
        raise Forbidden(f"station {station_id} does not moderate its questions (questions.station_moderation)")
    return f"station:{station_id}", station_id


# -- public ----------------------------------------------------------------------------------


@allow("public", "operator")
async def challenge(request: Request) -> Response:
    hub = request.app.state.hub
    station_id = _public_station(request)
    return JSONResponse(await hub.questions.challenge(station_id), headers={"Cache-Control": "no-store"})


@allow("public", "operator")
async def public_questions(request: Request) -> Response:
    hub = request.app.state.hub
    station_id = _public_station(request)
    activity = request.query_params.get("activity")  # exact title; present but empty = no activity
    if activity is not None and len(activity) > MAX_ACTIVITY:
        raise ProtocolViolation(f"activity is a title of at most {MAX_ACTIVITY} characters", code="bad_query")
    return JSONResponse({"questions": await hub.questions.public(station_id, activity)},
                        headers={"Cache-Control": "no-cache"})


def _text_field(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ProtocolViolation(f"{name} must be a string", code="bad_field")
    return value


@allow("public", "operator")
async def ask(request: Request) -> Response:
    hub = request.app.state.hub
    station_id = _public_station(request)
    body = await bodies.json_object(request)  # bounded: 413 past 16 KiB
    text, name = _text_field(body, "text"), _text_field(body, "name")
    proof = body.get("proof")
    if not (isinstance(proof, dict) and isinstance(proof.get("token"), str) and isinstance(proof.get("nonce"), str)):
        raise ProtocolViolation("a proof of work is required: fetch the challenge first", code="proof")
    device, fresh = _device(request)
    question = await hub.questions.ask(station_id, text, name, {"token": proof["token"], "nonce": proof["nonce"]},
                                       device=device, address=_address(request))
    response = JSONResponse({"question": public_view(question), "message": "menunggu moderasi"}, status_code=202)
    return _with_device(request, response, fresh)


@allow("public", "operator")
async def vote(request: Request) -> Response:
    hub = request.app.state.hub
    station_id = _public_station(request)
    device, fresh = _device(request)
    votes = await hub.questions.vote(station_id, request.path_params["qid"], device=device,
                                     address=_address(request))
    return _with_device(request, JSONResponse({"votes": votes}), fresh)


# -- moderators ------------------------------------------------------------------------------


def _states(request: Request) -> tuple[str, ...]:
    text = request.query_params.get("state", "")
    states = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip())) or STATES
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise ProtocolViolation(f"state must be among {', '.join(STATES)} (comma-separated)", code="bad_query")
    return states


@allow("operator", "station")
async def queue(request: Request) -> Response:
    """The moderators' view: every state by default, ``?state=pending,approved`` to narrow,
    ``?station=ID`` for one station (a moderating station sees only its own)."""
    hub = request.app.state.hub
    _, own = await _moderator(request, csrf=False)
    station_id = request.query_params.get("station") or own
    if own is not None and station_id != own:
        raise Forbidden("a station moderates only its own questions")
    if station_id is not None and hub.registry.get(station_id) is None:
        raise NotFound(f"no station {station_id!r}")
    questions = await hub.questions.queue(_states(request), station=station_id)
    return JSONResponse({"questions": questions}, headers={"Cache-Control": "no-store"})


def _minutes(body: dict[str, Any]) -> float | None:
    minutes = body.get("minutes")
    if minutes is None:
        return None
    if isinstance(minutes, bool) or not isinstance(minutes, int | float) or not math.isfinite(minutes) \
            or not 0 < minutes <= MAX_MINUTES:
        raise ProtocolViolation(f"minutes must be a number from 1 to {MAX_MINUTES}", code="bad_field")
    return float(minutes)


@allow("operator", "station")
async def moderate(request: Request) -> Response:
    hub = request.app.state.hub
    actor, _ = await _moderator(request, csrf=True)  # a station: the service holds it to its own
    body = await bodies.json_object(request)
    action = body.get("action")
    if not isinstance(action, str):
        raise ProtocolViolation("action is required", code="bad_action")
    question = await hub.questions.moderate(request.path_params["qid"], action, actor, minutes=_minutes(body))
    return JSONResponse({"question": moderator_view(question)})


@allow("operator")
async def slow_mode(request: Request) -> Response:
    hub = request.app.state.hub
    operator = hub.auth.require_operator(request, csrf=True)
    station_id = _public_station(request)
    body = await bodies.json_object(request)
    seconds = body.get("seconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds) \
            or not 0 <= seconds <= MAX_SLOW_MODE_S:
        raise ProtocolViolation(f"seconds must be a number from 0 to {MAX_SLOW_MODE_S}", code="bad_field")
    await hub.questions.set_slow_mode(station_id, float(seconds), operator)
    return JSONResponse({"station": station_id, "seconds": float(seconds)})


routes = [
    Route("/api/v1/stations/{station}/questions/challenge", challenge),
    Route("/api/v1/stations/{station}/questions/slow-mode", slow_mode, methods=["POST"]),
    Route("/api/v1/stations/{station}/questions", public_questions, methods=["GET"]),
    Route("/api/v1/stations/{station}/questions", ask, methods=["POST"]),
    Route("/api/v1/stations/{station}/questions/{qid}/vote", vote, methods=["POST"]),
    Route("/api/v1/questions", queue),
    Route("/api/v1/questions/{qid}", moderate, methods=["POST"]),
]
