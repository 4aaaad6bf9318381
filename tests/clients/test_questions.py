"""The office sees citizens' questions: the agent's board (pure), its page on 127.0.0.1, and
the agent against a real hub: a question approved there shows on the page within seconds,
ordered by votes, answered ones last, markup shown as text."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import re
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clients import moderation, questions
from clients.config import StationConfigError
from clients.questions import QuestionBoard
from tests.clients.helpers import agent_config, start_agent
from tests.kit import RunningHub, ask, hub_settings, moderate, operator_client, start_hub, stop_hub, timeout, wait_until

STATION = "35.09.01.2001"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def view(qid: str, state: str = "approved", votes: int = 0, asked_at: float = 1000.0, text: str = "",
         name: str = "") -> dict[str, Any]:
    return {"id": qid, "text": text or f"pertanyaan {qid}", "name": name, "votes": votes, "state": state,
            "asked_at": asked_at}


# -- the board -------------------------------------------------------------------------------


def test_the_board_orders_by_votes_then_age_and_answered_ones_last_newest_first() -> None:
    board = QuestionBoard()
    for event in (view("a", votes=1, asked_at=1), view("b", votes=3, asked_at=2), view("c", votes=1, asked_at=0),
                  view("d", votes=9, asked_at=3), view("e", votes=5, asked_at=4)):
        board.apply(event)
    board.apply(view("d", "answered", votes=9, asked_at=3))
    board.apply(view("e", "answered", votes=5, asked_at=4))
    assert [q.id for q in board.ordered()] == ["b", "c", "a", "e", "d"]
    board.apply(view("d", "approved", votes=9, asked_at=3))  # reopened: back on top
    assert [q.id for q in board.ordered()] == ["d", "b", "c", "a", "e"]


def test_only_what_the_public_sees_is_kept_and_newly_approved_is_told_once() -> None:
    board = QuestionBoard()
    assert board.apply(view("a", "pending")) is None and len(board) == 0
    told = board.apply(view("a"))
    assert told is not None and told.id == "a"
    assert board.apply(view("a", votes=4)) is None  # a vote: not news
    assert board.apply(view("a", "answered")) is None
    assert board.apply(view("a", "approved")) is None  # reopened: already told
    board.apply(view("a", "rejected"))  # left the public: removed
    assert len(board) == 0 and board.views() == []


def test_malformed_events_are_ignored() -> None:
    board = QuestionBoard()
    for bad in (None, "x", {"id": "a"}, {**view("a"), "votes": "3"}, {**view("a"), "votes": True},
                {**view("a"), "text": 5}, {**view("a"), "asked_at": float("nan")}, {**view("a"), "id": ""}):
        assert board.apply(bad) is None
    assert len(board) == 0


def test_load_replaces_the_board_but_keeps_what_events_said_meanwhile() -> None:
    board = QuestionBoard()
    board.apply(view("old"))  # gone from the hub while we were away
    board.apply(view("kept", votes=1))
    since = board.version  # the GET goes out here …
    board.apply(view("raced", votes=7))  # … an event arrives before its answer …
    board.apply(view("kept", "rejected"))  # … and one removes a question the list still has
    listed = [view("raced", votes=2), view("kept", votes=1), view("new", votes=3),
              view("x2", "answered", asked_at=5), view("x1", "answered", asked_at=1)]
    newly = board.load(listed, since)
    assert [q.id for q in newly] == ["new"]  # "raced" was told by its event already
    assert [(q.id, q.votes) for q in board.ordered()] == [("raced", 7), ("new", 3), ("x2", 0), ("x1", 0)]


def test_the_board_is_bounded() -> None:
    board = QuestionBoard()
    for n in range(questions.MAX_QUESTIONS + 20):
        board.apply(view(f"q{n}", "answered", asked_at=n))
    assert len(board) == questions.MAX_QUESTIONS
    assert board.ordered()[0].id == f"q{questions.MAX_QUESTIONS + 19}"  # the newest answered stay


def test_console_text_has_no_control_characters() -> None:
    assert questions.printable("a\x1b[2Jb\nc") == "a [2Jb c"


# -- the page --------------------------------------------------------------------------------


def fetch(port: int, path: str = "/", host: str | None = None) -> tuple[int, dict[str, str], str]:
    """A GET from another thread, as a browser on the PC would make it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout(5))
    try:
        connection.request("GET", path, headers={"Host": host} if host else {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        connection.close()


@pytest.fixture
async def page() -> AsyncIterator[tuple[int, dict[str, Any]]]:
    state: dict[str, Any] = {"station": STATION, "online": True,
                             "questions": [view("a", votes=2, text=XSS, name="<b>Budi</b> & co"),
                                           view("b", "answered")]}
    server = await questions.serve(0, lambda: state)
    assert server is not None
    try:
        yield questions.bound_port(server), state
    finally:
        server.close()
        await server.wait_closed()


async def test_the_page_escapes_every_user_text_and_forbids_inline_script(page: tuple[int, dict[str, Any]]) -> None:
    port, state = page
    status, headers, body = await asyncio.to_thread(fetch, port)
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<script>alert" not in body and "<img" not in body and "<b>Budi" not in body
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&lt;img src=x onerror=alert(1)&gt;" in body
    assert "&lt;b&gt;Budi&lt;/b&gt; &amp; co" in body
    assert "sudah dijawab" in body  # the answered one is marked
    assert "script-src 'self'" in headers["Content-Security-Policy"] and "inline" not in \
        headers["Content-Security-Policy"].split("script-src")[1].split(";")[0]
    assert body.count("<script") == 1 and '<script src="/questions.js">' in body
    status, headers, script = await asyncio.to_thread(fetch, port, "/questions.js")
    assert status == 200 and "textContent" in script and "innerHTML" not in script
    status, headers, text = await asyncio.to_thread(fetch, port, "/questions.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert json.loads(text) == state


async def test_the_page_refuses_other_hosts_methods_and_paths(page: tuple[int, dict[str, Any]]) -> None:
    port, _ = page
    assert (await asyncio.to_thread(fetch, port, "/", f"localhost:{port}"))[0] == 200
    assert (await asyncio.to_thread(fetch, port, "/", f"evil.example:{port}"))[0] == 421  # DNS rebinding
    assert (await asyncio.to_thread(fetch, port, "/nope"))[0] == 404
    request = urllib.request.Request(f"http://127.0.0.1:{port}/", data=b"{}", method="POST")

    def post() -> int:
        try:
            with urllib.request.urlopen(request, timeout=timeout(5)) as response:
                return int(response.status)
        except urllib.error.HTTPError as exc:
            return exc.code

    assert await asyncio.to_thread(post) == 405
    reader, writer = await asyncio.open_connection("127.0.0.1", port)  # an endless header
    writer.write(b"GET / HTTP/1.1\r\nX: " + b"a" * (questions.MAX_REQUEST * 2))
    assert (await asyncio.wait_for(reader.read(), timeout(5))).startswith(b"HTTP/1.1 431")
    writer.close()


async def test_the_page_binds_to_loopback_only() -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "localhost.example"):
        with pytest.raises(ValueError, match="loopback"):
            await questions.serve(0, dict, host=host)


def test_questions_port_is_checked(tmp_path: Path) -> None:
    with pytest.raises(StationConfigError, match="questions_port"):
        agent_config(tmp_path, "http://127.0.0.1:1", STATION, "t", questions_port=70000)
    with pytest.raises(StationConfigError, match="questions_port"):
        agent_config(tmp_path, "http://127.0.0.1:1", STATION, "t", questions_port=47110, control_port=47110)


# -- the agent against a real hub ------------------------------------------------------------


@pytest.fixture
async def questions_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path / "hub", questions={"difficulty": 6}))
    try:
        yield running
    finally:
        await stop_hub(running)


async def page_state(port: int) -> dict[str, Any]:
    status, _, body = await asyncio.to_thread(fetch, port, "/questions.json")
    assert status == 200
    state: dict[str, Any] = json.loads(body)
    return state


async def test_an_approved_question_shows_on_the_agents_page_within_seconds(
        questions_hub: RunningHub, tmp_path: Path, unused_tcp_port: int, caplog: pytest.LogCaptureFixture) -> None:
    hub = questions_hub
    operator = await operator_client(hub, hub.hub)
    citizens = [httpx.AsyncClient(base_url=hub.http) for _ in range(3)]  # three phones, three device cookies
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION), media=False,
                          questions_port=unused_tcp_port)
    agent = None
    try:
        # One question approved before the agent runs: it comes with the list loaded at welcome.
        early = (await ask(citizens[0], STATION, "Kapan jalan desa diperbaiki?", "Siti")).json()["question"]
        await moderate(operator, early["id"], "approve")
        with caplog.at_level(logging.INFO, logger="jaga.station.console"):
            agent = await start_agent(config)
            await agent.wait_until(lambda a: a.presence.online and len(a.questions) == 1, timeout(5))
            assert agent.status()["questions_url"] == f"http://127.0.0.1:{unused_tcp_port}/"

            asked = await ask(citizens[1], STATION, XSS, "<i>Budi</i>")
            assert asked.status_code == 202 and asked.json()["message"] == "menunggu moderasi"
            xss = asked.json()["question"]
            assert all(q["id"] != xss["id"] for q in (await page_state(unused_tcp_port))["questions"])  # pending
            await moderate(operator, xss["id"], "approve")
            await wait_until(lambda: agent is not None and len(agent.questions) == 2, 3,
                             "the approval to reach the agent")
            state = await page_state(unused_tcp_port)
            assert [q["id"] for q in state["questions"]] == [early["id"], xss["id"]]  # equal votes: oldest first
            assert state["questions"][1]["text"] == XSS and state["online"] is True

            # Two upvotes reorder the page; answering moves a question down.
            for citizen in citizens[1:]:
                voted = await citizen.post(f"/api/v1/stations/{STATION}/questions/{xss['id']}/vote")
                assert voted.status_code == 200, voted.text

            async def order() -> list[str] | None:
                ids = [q["id"] for q in (await page_state(unused_tcp_port))["questions"]]
                return ids if ids == [xss["id"], early["id"]] else None

            await wait_until(order, 3, "the votes to reorder the agent's page")
            await moderate(operator, xss["id"], "answered")

            async def answered_last() -> bool:
                shown = (await page_state(unused_tcp_port))["questions"]
                return [(q["id"], q["state"]) for q in shown] == [(early["id"], "approved"), (xss["id"], "answered")]

            await wait_until(answered_last, 3, "the answered question to move down")
            _, _, page = await asyncio.to_thread(fetch, unused_tcp_port)
            assert "<script>alert" not in page and "<i>Budi" not in page
            assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page and "&lt;i&gt;Budi&lt;/i&gt;" in page
        told = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Pertanyaan warga:")]
        assert told == ["Pertanyaan warga: Kapan jalan desa diperbaiki? — Siti",
                        f"Pertanyaan warga: {XSS} — <i>Budi</i>"]  # once each, as approved
    finally:
        if agent is not None:
            await agent.stop()
        await operator.aclose()
        for citizen in citizens:
            await citizen.aclose()


async def test_after_a_hub_restart_the_agent_reloads_the_list(tmp_path: Path, unused_tcp_port: int) -> None:
    """Events only carry changes: what changed while the agent was away comes from the list."""
    settings = hub_settings(tmp_path / "hub", questions={"difficulty": 6})
    hub = await start_hub(settings)
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION), media=False,
                          questions_port=unused_tcp_port)
    agent = await start_agent(config)
    try:
        await agent.wait_until(lambda a: a.presence.online, timeout(5))
        async with httpx.AsyncClient(base_url=hub.http) as citizen:
            first = (await ask(citizen, STATION, "Pertanyaan pertama")).json()["question"]
        operator = await operator_client(hub, hub.hub)
        await moderate(operator, first["id"], "approve")
        await operator.aclose()
        await agent.wait_until(lambda a: len(a.questions) == 1, timeout(3))
        port = hub.port
        await stop_hub(hub)
        await agent.wait_until(lambda a: not a.presence.online, timeout(5))
        assert (await page_state(unused_tcp_port))["online"] is False  # the page says it may be stale

        # Answered while the agent is away: on another port, so the agent cannot be back before.
        elsewhere = await start_hub(settings)  # same SQLite file: the question is still there
        operator = await operator_client(elsewhere, elsewhere.hub)
        await moderate(operator, first["id"], "answered")
        await operator.aclose()
        await stop_hub(elsewhere)
        hub = await start_hub(settings, port=port)
        await agent.wait_until(lambda a: a.presence.online, timeout(10))
        await agent.wait_until(lambda a: [q.state for q in a.questions.ordered()] == ["answered"], timeout(3))
    finally:
        await agent.stop()
        await stop_hub(hub)


# -- the office moderates (questions.station_moderation) --------------------------------------


def post(port: int, body: Any, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """A POST from another thread, as the page's script (or another web page) would make it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout(10))
    try:
        data = json.dumps(body).encode()
        connection.request("POST", "/moderate", body=data,
                           headers={"Content-Type": "application/json", **headers})
        response = connection.getresponse()
        answer = response.read()
        is_json = response.getheader("Content-Type") == "application/json"
        return response.status, json.loads(answer) if is_json else {"text": answer.decode()}
    finally:
        connection.close()


def page_token(page: str) -> str:
    match = re.search(r'<meta name="jaga-token" content="([^"]+)">', page)
    assert match is not None, "the page carries its token"
    return match.group(1)


def test_the_guard_wants_the_page_token_and_no_foreign_origin() -> None:
    good = {"host": "127.0.0.1:47111", "x-jaga-token": "t0k"}
    assert moderation.refused(good, "t0k") is None
    assert moderation.refused({**good, "origin": "http://127.0.0.1:47111", "sec-fetch-site": "same-origin"},
                              "t0k") is None
    assert moderation.refused({**good, "x-jaga-token": "t0j"}, "t0k") == "missing or wrong page token"
    assert moderation.refused({"host": "127.0.0.1:47111"}, "t0k") == "missing or wrong page token"
    for origin in ("https://evil.example", "null", "http://127.0.0.1:8080", "http://localhost:47111"):
        assert moderation.refused({**good, "origin": origin}, "t0k") == "foreign origin", origin
    assert moderation.refused({**good, "sec-fetch-site": "cross-site"}, "t0k") == "cross-site request"


def test_the_queue_keeps_only_pending_questions_oldest_first() -> None:
    queue = moderation.ModerationQueue()
    assert queue.view() is None  # not known yet: no section
    queue.load([{**view("b", "pending", asked_at=2), "held": "link", "activity": "Rapat"},
                {**view("a", "pending", asked_at=1)}, view("c", "approved"), {"id": 5}, None])
    shown = queue.view()
    assert shown is not None and [q["id"] for q in shown["pending"]] == ["a", "b"]
    assert shown["pending"][1]["held"] == "link" and shown["pending"][1]["activity"] == "Rapat"
    queue.decided("a")
    queue.failed("antrean tidak terbaca: HTTP 503")
    shown = queue.view()
    assert shown is not None and [q["id"] for q in shown["pending"]] == ["b"] and shown["error"]
    queue.disable()
    assert queue.view() is None and len(queue) == 0


@pytest.fixture
async def moderating_hub(tmp_path: Path) -> AsyncIterator[RunningHub]:
    running = await start_hub(hub_settings(tmp_path / "hub", questions={"difficulty": 6,
                                                                        "station_moderation": [STATION]}))
    try:
        yield running
    finally:
        await stop_hub(running)


async def test_the_office_approves_and_answers_from_its_page_where_the_hub_lets_it(
        moderating_hub: RunningHub, tmp_path: Path, unused_tcp_port: int) -> None:
    hub, port = moderating_hub, unused_tcp_port
    token = await hub.token(STATION)
    agent = await start_agent(agent_config(tmp_path, hub, STATION, token, media=False, questions_port=port))
    citizen = httpx.AsyncClient(base_url=hub.http)
    try:
        asked = (await ask(citizen, STATION, XSS + " Apakah posyandu buka Sabtu?", "<b>Ani</b>")).json()["question"]

        async def pending() -> list[dict[str, Any]] | None:
            moderating = (await page_state(port))["moderation"]
            return moderating["pending"] if moderating and moderating["pending"] else None

        waiting = await wait_until(pending, 10, "the pending question on the office's page")
        assert [q["id"] for q in waiting] == [asked["id"]] and waiting[0]["text"] == asked["text"]
        _, _, page = await asyncio.to_thread(fetch, port)
        assert 'id="moderation"' in page and "Menunggu moderasi" in page
        assert "Setujui" in page and "Tolak" in page
        assert "<script>alert" not in page and "<b>Ani" not in page and "&lt;b&gt;Ani&lt;/b&gt;" in page
        secret = page_token(page)
        assert token not in page  # the station's token stays in the agent
        assert token not in json.dumps(await page_state(port))
        _, _, script = await asyncio.to_thread(fetch, port, "/questions.js")
        assert "X-Jaga-Token" in script and "innerHTML" not in script and token not in script

        # What another web page in the office's browser could send is refused, and nothing happens.
        approve = {"id": asked["id"], "action": "approve"}
        own_origin = {"Origin": f"http://127.0.0.1:{port}"}
        assert (await asyncio.to_thread(post, port, approve, own_origin))[0] == 403  # no page token
        assert (await asyncio.to_thread(post, port, approve, {**own_origin, "X-Jaga-Token": "guess"}))[0] == 403
        foreign = {"X-Jaga-Token": secret, "Origin": "https://evil.example"}
        assert (await asyncio.to_thread(post, port, approve, foreign))[0] == 403
        cross = {"X-Jaga-Token": secret, "Sec-Fetch-Site": "cross-site"}
        assert (await asyncio.to_thread(post, port, approve, cross))[0] == 403
        rebound = {"X-Jaga-Token": secret, "Host": f"evil.example:{port}"}
        assert (await asyncio.to_thread(post, port, approve, rebound))[0] == 421
        assert asked["id"] not in [q["id"] for q in (await citizen.get(
            f"/api/v1/stations/{STATION}/questions")).json()["questions"]]

        # The page's own button: the agent forwards it with the station's token.
        mine = {**own_origin, "X-Jaga-Token": secret}
        status, answer = await asyncio.to_thread(post, port, approve, mine)
        assert (status, answer) == (200, {"ok": True, "state": "approved"})
        public = (await citizen.get(f"/api/v1/stations/{STATION}/questions")).json()["questions"]
        assert [(q["id"], q["state"]) for q in public] == [(asked["id"], "approved")]
        assert (await page_state(port))["moderation"]["pending"] == []
        await agent.wait_until(lambda a: len(a.questions) == 1, timeout(3))  # the hub's event, as for any approval
        _, _, page = await asyncio.to_thread(fetch, port)
        assert 'data-action="answered"' in page  # Terjawab on the approved one

        status, answer = await asyncio.to_thread(post, port, {"id": asked["id"], "action": "answered"}, mine)
        assert (status, answer) == (200, {"ok": True, "state": "answered"})
        # The hub's word passes through: a second approval is not allowed from "answered".
        status, answer = await asyncio.to_thread(post, port, approve, mine)
        assert status == 400 and "bad_action" in answer["message"] and answer["ok"] is False
        assert (await asyncio.to_thread(post, port, {"id": asked["id"], "action": "ban"}, mine))[0] == 400
        operator = await operator_client(hub, hub.hub)
        try:
            audit = (await operator.get("/api/v1/audit")).json()
            assert any(entry["actor"] == f"station:{STATION}" and entry["action"] == "question.approve"
                       for entry in audit["entries"])
        finally:
            await operator.aclose()
    finally:
        await agent.stop()
        await citizen.aclose()


async def test_without_station_moderation_the_page_has_no_moderation_section(
        questions_hub: RunningHub, tmp_path: Path, unused_tcp_port: int) -> None:
    hub, port = questions_hub, unused_tcp_port
    agent = await start_agent(agent_config(tmp_path, hub, STATION, await hub.token(STATION), media=False,
                                           questions_port=port))
    try:
        async with httpx.AsyncClient(base_url=hub.http) as citizen:
            asked = (await ask(citizen, STATION, "Kapan pasar desa dibuka?")).json()["question"]
        await agent.wait_until(lambda a: a.moderation.enabled is False, timeout(5))  # the hub said 403
        assert (await page_state(port))["moderation"] is None
        _, _, page = await asyncio.to_thread(fetch, port)
        assert 'id="moderation"' not in page and "Setujui" not in page and "Menunggu moderasi" not in page
        mine = {"Origin": f"http://127.0.0.1:{port}", "X-Jaga-Token": page_token(page)}
        status, answer = await asyncio.to_thread(post, port, {"id": asked["id"], "action": "approve"}, mine)
        assert status == 403 and answer["ok"] is False
    finally:
        await agent.stop()
