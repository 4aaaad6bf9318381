"""Citizens' questions on two hub nodes sharing one (private) Redis: a question asked on node A
is in the moderators' queue on node B at once, is approved there, and is then shown on both
nodes — to public watch sockets, in each node's list, and at the station's agent, whose
presence link is on node A."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.clients.helpers import agent_config, start_agent
from tests.kit import RunningHub, ask, moderate, operator_client, timeout
from tests.wsclient import JSON, Client

pytestmark = pytest.mark.redis

STATION = "35.09.01.2001"
PUBLIC_KEYS = {"id", "text", "name", "votes", "state", "asked_at", "activity"}


async def watcher(node: RunningHub, session: str | None = None) -> Client:
    """A watch socket: public, or an operator's with the session cookie (no Origin: not a page)."""
    headers = {"Cookie": f"jaga_session={session}"} if session else {}
    client = await Client.open(f"{node.ws}/ws/watch", JSON, additional_headers=headers)
    assert (await client.recv())["t"] == "snapshot"
    return client


def question(qid: str, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("t") == "question" and m["q"]["id"] == qid and m["q"]["state"] == state


async def test_asked_on_one_node_moderated_on_the_other_shown_on_both(
        nodes: Callable[..., Awaitable[RunningHub]], tmp_path: Path, unused_tcp_port: int) -> None:
    questions = {"difficulty": 6}  # proofs solved in the test: cheap
    a, b = await nodes("node-a", questions=questions), await nodes("node-b", questions=questions)
    operator = await operator_client(b, a.hub)  # created on A, logged in on B: credentials are shared
    agent = await start_agent(agent_config(tmp_path, a, STATION, await a.token(STATION), media=False,
                                           questions_port=unused_tcp_port))
    on_b = await watcher(b, operator.cookies["jaga_session"])
    public = [await watcher(a), await watcher(b)]
    try:
        await agent.wait_until(lambda x: x.presence.online, timeout(5))
        async with httpx.AsyncClient(base_url=a.http) as citizen:
            asked = await ask(citizen, STATION, "Apakah posyandu buka hari Sabtu?", "Ibu Ani")
        assert asked.status_code == 202, asked.text
        qid = asked.json()["question"]["id"]

        # Node B's moderators see it pending: live on their socket, and in their queue.
        live = await on_b.recv_until(question(qid, "pending"), wait=1.0)
        assert live["q"]["station"] == STATION and live["q"]["name"] == "Ibu Ani"
        queue = await operator.get("/api/v1/questions", params={"state": "pending"})
        assert [q["id"] for q in queue.json()["questions"]] == [qid]
        async with httpx.AsyncClient(base_url=a.http) as anyone:  # not yet public anywhere
            assert (await anyone.get(f"/api/v1/stations/{STATION}/questions")).json() == {"questions": []}

        assert (await moderate(operator, qid, "approve"))["decided_by"] == "budi"

        for node_watcher in public:  # the public on both nodes: approved, public fields only
            seen: list[dict[str, Any]] = []
            shown = await node_watcher.recv_until(question(qid, "approved"), wait=1.0, into=seen)
            assert set(shown["q"]) == PUBLIC_KEYS
            assert not any(m.get("t") == "question" and m["q"]["state"] == "pending" for m in seen)
        for node in (a, b):
            async with httpx.AsyncClient(base_url=node.http) as anyone:
                listed = (await anyone.get(f"/api/v1/stations/{STATION}/questions")).json()["questions"]
            assert [(q["id"], q["state"]) for q in listed] == [(qid, "approved")]
        await agent.wait_until(lambda x: [q.id for q in x.questions.ordered()] == [qid], timeout(1))

        # A vote on B reaches A's public watcher and the agent on A.
        async with httpx.AsyncClient(base_url=b.http) as voter:
            assert (await voter.post(f"/api/v1/stations/{STATION}/questions/{qid}/vote")).json() == {"votes": 1}
        assert (await public[0].recv_until(lambda m: m.get("t") == "question" and m["q"]["votes"] == 1,
                                           wait=1.0))["q"]["id"] == qid
        await agent.wait_until(lambda x: x.questions.ordered()[0].votes == 1, timeout(1))
    finally:
        await agent.stop()
        await operator.aclose()
        for client in (on_b, *public):
            await client.close()
