"""The office moderates its own citizens' questions: the queue the agent keeps, the hub calls
behind the page's buttons, and the guard on those buttons' requests.

Theory of operation
-------------------
Where the hub lists this station in ``questions.station_moderation``, the station's token may
list the station's questions (``GET /api/v1/questions?station=ID&state=pending``) and moderate
them (``POST /api/v1/questions/{id}``); elsewhere both answer 403. The agent finds out by
asking, and asks again only after the next welcome (the hub's settings change only when it
restarts, which the agent sees as a reconnection):

    unknown ──GET 200──▶ on (poll every POLL_S, and at once after a ``question`` event or an
       │                      action from the page; a failed poll keeps the list, says so)
       └──GET 401/403/404──▶ off (no moderation on the page) ──next welcome──▶ unknown

The agent's socket carries only *public* changes (docs/questions.md, *Events*): a new pending
question is never sent to it, hence the poll. :class:`ModerationQueue` is that state, pure.

The page on 127.0.0.1 (:mod:`clients.questions`) shows the pending ones with *Setujui* and
*Tolak*, and *Terjawab* / *Tolak* on the approved ones; its buttons POST to the agent, which
forwards them with the station's token (:func:`forward`): the token never reaches a browser.
Any web page the office PC visits could make its browser POST to ``127.0.0.1``, so a POST is
taken only when :func:`refused` finds nothing wrong: the page's per-process random token in
``X-Jaga-Token`` (a foreign page cannot read it: same-origin policy, and the ``Host`` check
against DNS rebinding), no foreign ``Origin`` or cross-site ``Sec-Fetch-Site``, a JSON body.
A custom header and a JSON body also make a foreign page's ``fetch`` need a CORS preflight,
which the page never grants.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote, urlencode

from clients import whip
from clients.config import StationConfig, StationConfigError

log = logging.getLogger("jaga.station.questions")

POLL_S = 3.0
ACTIONS = {"approve": "Setujui", "reject": "Tolak", "answered": "Terjawab"}
TOKEN_HEADER = "x-jaga-token"
MAX_BODY = 1024
MAX_PENDING = 500  # as the hub's queue
MAX_TEXT = 1000


@dataclass(frozen=True)
class PendingQuestion:
    """A question waiting for this office's decision: the hub's ``moderator_view``, cut down."""

    id: str
    text: str
    name: str
    asked_at: float
    activity: str
    held: str  # "" or why the hub held it: "link", "word:<word>"


def parse(view: Any) -> PendingQuestion | None:
    if not isinstance(view, dict) or view.get("state") != "pending":
        return None
    qid, text, name = view.get("id"), view.get("text"), view.get("name") or ""
    activity, held, asked_at = view.get("activity") or "", view.get("held") or "", view.get("asked_at", 0.0)
    if (not isinstance(qid, str) or not qid or len(qid) > 64 or not isinstance(text, str)
            or not all(isinstance(v, str) and len(v) <= MAX_TEXT for v in (text, name, activity, held))
            or isinstance(asked_at, bool) or not isinstance(asked_at, int | float) or not math.isfinite(asked_at)):
        log.warning("ignored a malformed queued question from the hub: %.200r", view)
        return None
    return PendingQuestion(qid, text, name, float(asked_at), activity, held)


class ModerationQueue:
    """Whether this office may moderate, and what waits; see the module's theory."""

    def __init__(self) -> None:
        self.enabled: bool | None = None  # None: not known yet
        self.error = ""  # the last poll's failure, "" when it worked
        self._pending: dict[str, PendingQuestion] = {}

    def load(self, views: Iterable[Any]) -> None:
        """The hub's queue (any order): it replaces what was known."""
        listed = [q for q in (parse(view) for view in views) if q is not None]
        self._pending = {q.id: q for q in sorted(listed, key=lambda q: (q.asked_at, q.id))[:MAX_PENDING]}
        self.enabled, self.error = True, ""

    def disable(self) -> None:
        self.enabled, self.error = False, ""
        self._pending.clear()

    def failed(self, error: str) -> None:
        self.error = error

    def decided(self, question_id: str) -> None:
        """The office decided on it: off the list now, not at the next poll."""
        self._pending.pop(question_id, None)

    def __len__(self) -> int:
        return len(self._pending)

    def view(self) -> dict[str, Any] | None:
        """For the page: None when this office does not moderate; else the pending ones,
        oldest first (first asked, first decided), and the last poll's error."""
        if not self.enabled:
            return None
        return {"pending": [asdict(q) for q in self._pending.values()], "error": self.error}


# --- the hub ---------------------------------------------------------------------------------


def _hub_message(status: int, body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        return f"{error['message']} ({error['code']})"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"


async def poll(config: StationConfig, queue: ModerationQueue) -> None:
    """One look at the hub's queue for this station; the outcome is in ``queue``."""
    query = urlencode({"station": config.station, "state": "pending"})
    url = config.http_url(f"/api/v1/questions?{query}")
    try:
        status, body = await whip.call_json(url, "GET", config.read_token(), timeout=config.network.connect_timeout_s,
                                            context=config.tls_context())
    except (whip.MediaHttpError, StationConfigError) as exc:
        queue.failed(f"antrean tidak terbaca: {exc}")
        return
    if status in (401, 403, 404):
        if queue.enabled is not False:
            log.info("questions: moderated at the Pendopo (the hub answered %d; its "
                     "questions.station_moderation lists the offices that moderate their own)", status)
        queue.disable()
        return
    try:
        views = json.loads(body)["questions"] if status == 200 else None
        if not isinstance(views, list):
            raise TypeError("questions is not a list")
    except (ValueError, KeyError, TypeError):
        queue.failed(f"antrean tidak terbaca: {_hub_message(status, body)}")
        return
    if queue.enabled is not True:
        log.info("this office moderates its questions: pending ones are on the questions page")
    queue.load(views)


async def forward(config: StationConfig, queue: ModerationQueue, question_id: str, action: str
                  ) -> tuple[int, dict[str, Any]]:
    """One decision from the page, sent to the hub with the station's token; (HTTP status for
    the page, ``{"ok", "message"?, "state"?}``)."""
    if not queue.enabled:
        return 403, {"ok": False, "message": "Moderasi dari kantor tidak diaktifkan untuk stasiun ini."}
    if action not in ACTIONS or not question_id or len(question_id) > 64:
        return 400, {"ok": False, "message": "Permintaan tidak dikenal."}
    url = config.http_url(f"/api/v1/questions/{quote(question_id, safe='')}")
    try:
        status, body = await whip.call_json(url, "POST", config.read_token(), {"action": action},
                                            timeout=config.network.connect_timeout_s, context=config.tls_context())
    except (whip.MediaHttpError, StationConfigError) as exc:
        log.warning("moderation %s of %s not sent: %s", action, question_id, exc)
        return 502, {"ok": False, "message": f"Hub tidak terjangkau: {exc}"}
    if status != 200:
        log.warning("moderation %s of %s refused by the hub: %s", action, question_id, _hub_message(status, body))
        return (status if 400 <= status < 500 else 502), {"ok": False, "message": _hub_message(status, body)}
    queue.decided(question_id)
    try:
        state = str(json.loads(body)["question"]["state"])
    except (ValueError, KeyError, TypeError):
        state = ""
    log.info("moderation by the office: %s %s → %s", action, question_id, state or "?")
    return 200, {"ok": True, "state": state}


# --- the guard on the page's POSTs -------------------------------------------------------------


def refused(headers: Mapping[str, str], page_token: str) -> str | None:
    """Why a POST to the page is refused (403), or None. ``headers`` lowercased; the ``Host``
    has been checked already (loopback names only)."""
    origin = headers.get("origin")
    if origin is not None and origin.lower() != f"http://{headers.get('host', '').lower()}":
        return "foreign origin"
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "cross-site request"
    if not hmac.compare_digest(headers.get(TOKEN_HEADER, "").encode(), page_token.encode()):
        return "missing or wrong page token"
    return None
