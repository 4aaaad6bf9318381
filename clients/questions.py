"""Citizens' questions at the office: the board the agent keeps, and its page on 127.0.0.1.

Theory of operation
-------------------
The hub tells a station's own socket about every public change of that station's questions,
``{"t": "question", "q": public_view}`` (docs/questions.md, *Events*): a question that is or
was approved or answered, with its new state. Events only say what changed while the link was
up, so on every (re)connection the agent also loads ``GET /api/v1/stations/{id}/questions``.

:class:`QuestionBoard` is the state, pure (no I/O, no clock): ``apply`` takes one event,
``load`` the hub's list. The list and the events race (an event can arrive while the GET is
in flight), so ``load`` is given the board's ``version`` from before the request and keeps any
question an event touched since: the event is newer than the list. The board holds only what
the public may see (approved, answered); anything else removes the question. It orders as the
watch pages do: approved by votes (most first), then by time asked; then the answered ones,
the most recently answered first (in the order this agent learnt they were answered: the
public view carries no decision time).

:func:`serve` is the page: asyncio's own server with a minimal HTTP/1.1 responder (one request
per connection, ``Connection: close``), bound to a loopback address only: office staff open
``http://127.0.0.1:<questions_port>/`` on the agent's PC, nothing off the machine can. It
answers ``GET /`` (the list rendered on the server, every user text through
:func:`html.escape`), ``GET /questions.js`` (re-renders the list every 2 s with
``textContent``, never ``innerHTML``) and ``GET /questions.json``. A ``Host`` other than the
loopback names is refused, so a web page elsewhere cannot read the list through DNS
rebinding, and the CSP forbids inline script.

Where the hub lets this office moderate (:mod:`clients.moderation`), the state also carries
``"moderation": {"pending": [...], "error"}`` and the page shows a *Menunggu moderasi* section
with *Setujui* / *Tolak* buttons, and *Terjawab* / *Tolak* on the approved ones. The buttons
``POST /moderate`` ``{"id", "action"}`` to this server with the page's token (a random value
per server, in a ``<meta>`` of the page) in ``X-Jaga-Token``; :func:`clients.moderation.refused`
guards it and the agent's ``act`` forwards it to the hub. Without an ``act`` (or for any
other path) a POST is 405 as before.
"""

from __future__ import annotations

import asyncio
import html
import http
import ipaddress
import json
import logging
import math
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from clients import moderation

log = logging.getLogger("jaga.station.questions")

VISIBLE = ("approved", "answered")
MAX_QUESTIONS = 500  # as the hub's list; the oldest answered ones go first beyond it
MAX_TEXT = 1000  # a question is ≤ 280 characters; anything longer is not one of the hub's
MAX_REQUEST = 8192
REQUEST_TIMEOUT_S = 5.0
REFRESH_MS = 2000
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


@dataclass(frozen=True)
class ShownQuestion:
    """One question as the public (and this office) sees it: the hub's ``public_view``."""

    id: str
    text: str
    name: str
    votes: int
    state: str
    asked_at: float

    @property
    def who(self) -> str:
        return self.name or "Warga"


def parse(view: Any) -> ShownQuestion | None:
    """A ``public_view`` from the hub, or None (logged) when it is not one."""
    if not isinstance(view, dict):
        log.warning("ignored a question that is not a map: %r", type(view).__name__)
        return None
    qid, text, name = view.get("id"), view.get("text"), view.get("name") or ""
    votes, state, asked_at = view.get("votes", 0), view.get("state"), view.get("asked_at", 0.0)
    if (not isinstance(qid, str) or not qid or not isinstance(text, str) or not isinstance(name, str)
            or not isinstance(state, str) or isinstance(votes, bool) or not isinstance(votes, int)
            or isinstance(asked_at, bool) or not isinstance(asked_at, int | float)
            or not math.isfinite(asked_at) or len(text) > MAX_TEXT or len(name) > MAX_TEXT):
        log.warning("ignored a malformed question from the hub: %.200r", view)
        return None
    return ShownQuestion(qid, text, name, votes, state, float(asked_at))


class QuestionBoard:
    """The approved and answered questions of this station; see the module's theory."""

    def __init__(self) -> None:
        self._items: dict[str, ShownQuestion] = {}
        self._touched: dict[str, int] = {}  # id → version of the last event about it
        self._answered: dict[str, int] = {}  # id → order in which it was seen answered
        self._told: set[str] = set()  # ids already printed as newly approved
        self._answered_seq = 0
        self.version = 0

    def __len__(self) -> int:
        return len(self._items)

    def apply(self, view: Any) -> ShownQuestion | None:
        """One ``question`` event; returns the question if it is newly approved (to print it)."""
        question = parse(view)
        if question is None:
            return None
        self.version += 1
        self._touched[question.id] = self.version
        return self._put(question)

    def load(self, views: Iterable[Any], since: int) -> list[ShownQuestion]:
        """The hub's list, requested when the board was at version ``since``; newly approved
        ones are returned (in the hub's order). Questions an event touched after ``since``
        keep the event's word; the others not in the list are gone."""
        listed = [q for q in (parse(view) for view in views) if q is not None]
        self.version += 1
        fresh = {q.id for q in listed}
        for qid in list(self._items):
            if qid not in fresh and self._touched.get(qid, 0) <= since:
                self._drop(qid)
        # The hub lists answered ones newest first: learn them oldest first.
        answered = [q for q in listed if q.state == "answered"]
        order = [q for q in listed if q.state != "answered"] + answered[::-1]
        newly = []
        for question in order:
            if self._touched.get(question.id, 0) > since:
                continue
            if (told := self._put(question)) is not None:
                newly.append(told)
        return [q for q in listed if q in newly]

    def ordered(self) -> list[ShownQuestion]:
        """Approved by votes (desc) then asked (asc); then answered, most recent first."""
        approved = sorted((q for q in self._items.values() if q.state == "approved"),
                          key=lambda q: (-q.votes, q.asked_at, q.id))
        answered = sorted((q for q in self._items.values() if q.state == "answered"),
                          key=lambda q: -self._answered.get(q.id, 0))
        return approved + answered

    def views(self) -> list[dict[str, Any]]:
        return [asdict(q) for q in self.ordered()]

    def _put(self, question: ShownQuestion) -> ShownQuestion | None:
        if question.state not in VISIBLE:
            self._drop(question.id)
            return None
        before = self._items.get(question.id)
        self._items[question.id] = question
        if question.state == "answered" and (before is None or before.state != "answered"):
            self._answered_seq += 1
            self._answered[question.id] = self._answered_seq
        elif question.state != "answered":
            self._answered.pop(question.id, None)
        self._trim()
        if question.state == "approved" and question.id not in self._told and question.id in self._items:
            self._told.add(question.id)
            return question
        return None

    def _drop(self, qid: str) -> None:
        self._items.pop(qid, None)
        self._answered.pop(qid, None)

    def _trim(self) -> None:
        excess = len(self._items) - MAX_QUESTIONS
        if excess > 0:
            for question in self.ordered()[-excess:]:
                self._drop(question.id)
        if len(self._touched) > 4 * MAX_QUESTIONS:  # bookkeeping for questions long gone
            self._touched = {qid: v for qid, v in self._touched.items() if qid in self._items}
            self._told &= set(self._items)


# --- the page -------------------------------------------------------------------------------

State = Callable[[], dict[str, Any]]  # {"station", "online", "questions": [view…], "moderation"?}
Act = Callable[[str, str], Awaitable[tuple[int, dict[str, Any]]]]  # (id, action) → (status, answer)

HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; connect-src 'self'; "
                                "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; "
                                "frame-ancestors 'none'"),
}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; background: #f6f7f9; color: #111; }
h1 { font-size: 1.4rem; margin: 0 0 .25rem; }
#status { color: #555; margin: 0 0 1rem; }
#status.offline { color: #b00020; font-weight: bold; }
ol { list-style: none; padding: 0; margin: 0; }
li { background: #fff; border-radius: 8px; padding: .75rem 1rem; margin: 0 0 .6rem;
     display: flex; gap: 1rem; align-items: baseline; box-shadow: 0 1px 2px #0002; }
.votes { font-weight: bold; min-width: 3.5rem; }
.text { flex: 1; font-size: 1.2rem; white-space: pre-wrap; overflow-wrap: anywhere; }
.name { color: #555; }
li.answered { opacity: .6; }
.badge { background: #2e7d32; color: #fff; border-radius: 4px; padding: 0 .4rem; font-size: .85rem; }
.empty { color: #555; }
#moderation { background: #fff8e1; border: 2px solid #f9a825; border-radius: 8px; padding: .5rem 1rem 1rem;
              margin: 0 0 1.25rem; }
#moderation h2 { font-size: 1.15rem; margin: .25rem 0; }
#moderation-status, #action-status { color: #555; margin: .25rem 0 .6rem; min-height: 1.2em; }
.held { background: #b00020; color: #fff; border-radius: 4px; padding: 0 .4rem; font-size: .85rem; }
.activity { color: #555; font-size: .9rem; }
button.act { font-size: 1rem; padding: .3rem .8rem; border-radius: 6px; border: 1px solid #888; cursor: pointer; }
button.approve { background: #2e7d32; color: #fff; border-color: #2e7d32; }
button.answered { background: #1565c0; color: #fff; border-color: #1565c0; }
"""

SCRIPT = """'use strict';
// Re-render the list every few seconds from /questions.json; user text only via textContent.
// Moderation buttons POST to this agent with the page's token; the agent forwards to the hub.
const TOKEN = document.querySelector('meta[name="jaga-token"]').content;
const ACTIONS = {approve: 'Setujui', reject: 'Tolak', answered: 'Terjawab'};
function span(className, text) {
  const element = document.createElement('span');
  element.className = className;
  element.textContent = text;
  return element;
}
function button(id, action) {
  const element = document.createElement('button');
  element.type = 'button';
  element.className = 'act ' + action;
  element.dataset.id = id;
  element.dataset.action = action;
  element.textContent = ACTIONS[action];
  return element;
}
function renderModeration(moderation) {
  let section = document.getElementById('moderation');
  if (!moderation) {
    if (section) section.remove();
    return;
  }
  if (!section) {
    section = document.createElement('section');
    section.id = 'moderation';
    const title = document.createElement('h2');
    title.textContent = 'Menunggu moderasi';
    const status = document.createElement('p');
    status.id = 'moderation-status';
    const action = document.createElement('p');
    action.id = 'action-status';
    const pending = document.createElement('ol');
    pending.id = 'pending';
    section.append(title, status, action, pending);
    document.getElementById('questions').before(section);
  }
  document.getElementById('moderation-status').textContent = moderation.error;
  const list = document.getElementById('pending');
  list.replaceChildren();
  if (!moderation.pending.length) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = 'Tidak ada pertanyaan yang menunggu.';
    list.append(empty);
  }
  for (const q of moderation.pending) {
    const item = document.createElement('li');
    item.dataset.id = q.id;
    item.append(span('text', q.text), span('name', '\u2014 ' + (q.name || 'Warga')));
    if (q.held) item.append(span('held', 'ditahan: ' + q.held));
    if (q.activity) item.append(span('activity', 'kegiatan: ' + q.activity));
    item.append(button(q.id, 'approve'), button(q.id, 'reject'));
    list.append(item);
  }
}
function render(state) {
  const list = document.getElementById('questions');
  const status = document.getElementById('status');
  status.textContent = state.online ? 'Terhubung ke hub' : 'Tidak terhubung ke hub: daftar mungkin tidak terbaru';
  status.className = state.online ? '' : 'offline';
  list.replaceChildren();
  if (!state.questions.length) {
    const empty = document.createElement('li');
    empty.className = 'empty';
    empty.textContent = 'Belum ada pertanyaan yang disetujui.';
    list.append(empty);
  }
  for (const q of state.questions) {
    const item = document.createElement('li');
    item.className = q.state;
    item.dataset.id = q.id;
    const votes = document.createElement('span');
    votes.className = 'votes';
    votes.textContent = '\\u25B2 ' + q.votes;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = q.text;
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = '\\u2014 ' + (q.name || 'Warga');
    item.append(votes, text, name);
    if (q.state === 'answered') {
      const badge = document.createElement('span');
      badge.className = 'badge';
      badge.textContent = 'sudah dijawab';
      item.append(badge);
    } else if (state.moderation) {
      item.append(button(q.id, 'answered'), button(q.id, 'reject'));
    }
    list.append(item);
  }
  renderModeration(state.moderation);
}
document.addEventListener('click', async (event) => {
  const target = event.target.closest('button[data-action]');
  if (!target) return;
  target.disabled = true;
  const note = document.getElementById('action-status');
  try {
    const response = await fetch('/moderate', {
      method: 'POST', cache: 'no-store',
      headers: {'Content-Type': 'application/json', 'X-Jaga-Token': TOKEN},
      body: JSON.stringify({id: target.dataset.id, action: target.dataset.action}),
    });
    const answer = await response.json();
    if (note) note.textContent = answer.ok ? ACTIONS[target.dataset.action] + ': terkirim ke hub'
                                           : 'Gagal: ' + answer.message;
  } catch (e) {
    if (note) note.textContent = 'Agen jaga-station tidak menjawab';
  }
  target.disabled = false;
  refresh();
});
async function refresh() {
  try {
    const response = await fetch('/questions.json', {cache: 'no-store'});
    if (response.ok) render(await response.json());
  } catch (e) {
    document.getElementById('status').textContent = 'Agen jaga-station tidak menjawab';
    document.getElementById('status').className = 'offline';
  }
}
setInterval(refresh, REFRESH_MS);
""".replace("REFRESH_MS", str(REFRESH_MS))


def _button(question_id: str, action: str) -> str:
    return (f'<button type="button" class="act {action}" data-id="{html.escape(question_id)}" '
            f'data-action="{action}">{moderation.ACTIONS[action]}</button>')


def render_moderation(view: dict[str, Any]) -> str:
    """The *Menunggu moderasi* section (every user text escaped); its buttons need the script."""
    items = []
    for q in view.get("pending", []):
        held = f'<span class="held">ditahan: {html.escape(q["held"])}</span>' if q["held"] else ""
        activity = f'<span class="activity">kegiatan: {html.escape(q["activity"])}</span>' if q["activity"] else ""
        items.append(f'<li data-id="{html.escape(q["id"])}"><span class="text">{html.escape(q["text"])}</span>'
                     f'<span class="name">&mdash; {html.escape(q["name"] or "Warga")}</span>{held}{activity}'
                     f'{_button(q["id"], "approve")}{_button(q["id"], "reject")}</li>')
    if not items:
        items.append('<li class="empty">Tidak ada pertanyaan yang menunggu.</li>')
    return (f'<section id="moderation"><h2>Menunggu moderasi</h2>'
            f'<p id="moderation-status">{html.escape(str(view.get("error") or ""))}</p><p id="action-status"></p>'
            f'<ol id="pending">{"".join(items)}</ol></section>\n')


def render_page(state: dict[str, Any], page_token: str = "") -> str:
    """The whole page, the list rendered here (every user text escaped), so it reads without
    script; the moderation section only where this office moderates."""
    station = html.escape(str(state.get("station", "")))
    moderating = state.get("moderation")
    items = []
    for q in state.get("questions", []):
        badge = ' <span class="badge">sudah dijawab</span>' if q["state"] == "answered" else ""
        if moderating and q["state"] != "answered":
            badge = _button(q["id"], "answered") + _button(q["id"], "reject")
        items.append(f'<li class="{html.escape(q["state"])}" data-id="{html.escape(q["id"])}">'
                     f'<span class="votes">&#9650; {int(q["votes"])}</span>'
                     f'<span class="text">{html.escape(q["text"])}</span>'
                     f'<span class="name">&mdash; {html.escape(q["name"] or "Warga")}</span>{badge}</li>')
    if not items:
        items.append('<li class="empty">Belum ada pertanyaan yang disetujui.</li>')
    online = bool(state.get("online"))
    status = ('<p id="status">Terhubung ke hub</p>' if online else
              '<p id="status" class="offline">Tidak terhubung ke hub: daftar mungkin tidak terbaru</p>')
    return (f'<!doctype html>\n<html lang="id"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="jaga-token" content="{html.escape(page_token)}">'
            f'<title>Pertanyaan warga — {station}</title><style>{STYLE}</style></head>\n'
            f'<body><h1>Pertanyaan warga — {station}</h1>{status}\n'
            f'{render_moderation(moderating) if moderating else ""}'
            f'<ol id="questions">{"".join(items)}</ol>\n'
            f'<script src="/questions.js"></script></body></html>\n')


def _response(status: str, content_type: str, body: bytes, head_only: bool = False,
              extra: dict[str, str] | None = None) -> bytes:
    headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **HEADERS,
               **(extra or {}), "Connection": "close"}
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode("latin-1") + (b"" if head_only else body)


def _plain(status: str, text: str, head_only: bool = False, extra: dict[str, str] | None = None) -> bytes:
    return _response(status, "text/plain; charset=utf-8", text.encode() + b"\n", head_only, extra)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # names lowercased


def parse_head(head: bytes) -> Request | bytes:
    """One request head (request line and headers, without the blank line), or the answer
    refusing it: 400, 505, or 421 for a ``Host`` that is not a loopback name."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        return _plain("400 Bad Request", "bad request")
    if not version.startswith("HTTP/1."):
        return _plain("505 HTTP Version Not Supported", "HTTP/1.x only")
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    host = headers.get("host", "")
    hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    if hostname.lower() not in LOOPBACK_NAMES:
        return _plain("421 Misdirected Request", "open http://127.0.0.1:<port>/ on this PC")
    return Request(method, target.split("?", 1)[0], headers)


def respond(request: Request, state: State, page_token: str = "") -> bytes:
    """The answer to a GET or HEAD (anything else: 405)."""
    if request.method not in ("GET", "HEAD"):
        return _plain("405 Method Not Allowed", "GET only", request.method == "HEAD", {"Allow": "GET, HEAD"})
    head_only = request.method == "HEAD"
    path = request.path
    if path == "/":
        return _response("200 OK", "text/html; charset=utf-8", render_page(state(), page_token).encode(), head_only)
    if path == "/questions.json":
        body = json.dumps(state(), ensure_ascii=False).encode()
        return _response("200 OK", "application/json", body, head_only)
    if path == "/questions.js":
        return _response("200 OK", "text/javascript; charset=utf-8", SCRIPT.encode(), head_only)
    return _plain("404 Not Found", "not found", head_only)


def _json(status: int, answer: dict[str, Any]) -> bytes:
    line = f"{status} {http.HTTPStatus(status).phrase}"
    return _response(line, "application/json", json.dumps(answer, ensure_ascii=False).encode())


async def moderate(request: Request, reader: asyncio.StreamReader, act: Act, page_token: str) -> bytes:
    """``POST /moderate`` ``{"id", "action"}`` from the page's buttons: guarded (403, see
    :func:`clients.moderation.refused`), bounded, then handed to ``act``."""
    why = moderation.refused(request.headers, page_token)
    if why is not None:
        log.warning("questions page: refused a POST (%s; Origin %.100r)", why, request.headers.get("origin"))
        return _json(403, {"ok": False, "message": "Ditolak: buka halaman ini dari http://127.0.0.1 di PC ini."})
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        return _json(415, {"ok": False, "message": "JSON only"})
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        return _json(411, {"ok": False, "message": "Content-Length required"})
    if int(length) > moderation.MAX_BODY:
        return _json(413, {"ok": False, "message": "request too large"})
    body = await asyncio.wait_for(reader.readexactly(int(length)), REQUEST_TIMEOUT_S)
    try:
        asked = json.loads(body)
        question_id, action = asked["id"], asked["action"]
        if not isinstance(question_id, str) or not isinstance(action, str):
            raise TypeError("id and action are strings")
    except (ValueError, KeyError, TypeError):
        return _json(400, {"ok": False, "message": 'expected {"id", "action"}'})
    status, answer = await act(question_id, action)
    return _json(status, answer)


def require_loopback(host: str) -> None:
    """ValueError unless ``host`` is a loopback address: the page is for this PC only."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"the questions page binds to a loopback address only, not {host!r}")


async def serve(port: int, state: State, host: str = "127.0.0.1", act: Act | None = None) -> asyncio.Server | None:
    """Serve the page on ``host``:``port`` (loopback only, else ValueError); None (logged) when
    the port is taken. Port 0 picks a free one (tests); the config's 0 means *off* and never
    gets here. With ``act``, the page's moderation buttons are taken (``POST /moderate``)."""
    require_loopback(host)
    page_token = secrets.token_urlsafe(32)  # new with every server: only this page knows it

    async def answer_to(head: bytes, reader: asyncio.StreamReader) -> bytes:
        request = parse_head(head)
        if isinstance(request, bytes):
            return request
        if request.method == "POST" and request.path == "/moderate" and act is not None:
            return await moderate(request, reader, act, page_token)
        return respond(request, state, page_token)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), REQUEST_TIMEOUT_S)
            answer = await answer_to(head[:-4], reader)
        except asyncio.LimitOverrunError:
            answer = _plain("431 Request Header Fields Too Large", "request too large")
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            answer = b""
        except Exception:  # a bug here must not end the page, nor leave the browser waiting
            log.exception("questions page: request failed")
            answer = _plain("500 Internal Server Error", "internal error")
        try:
            if answer:
                writer.write(answer)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(on_client, host, port, limit=MAX_REQUEST)
    except OSError as exc:
        log.error("questions page %s:%d not available (%s): is another jaga-station running? "
                  "Set questions_port in station.toml to a free port", host, port, exc.strerror or exc)
        return None


def bound_port(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


def printable(text: str) -> str:
    """``text`` for a console: anything unprintable (escape sequences, line breaks) a space."""
    return "".join(c if c.isprintable() else " " for c in text)
