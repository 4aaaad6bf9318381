"""Seam 20's shared half (``jaga.ice_consent``): aioice's consent checks, sent again while
they can.

Pins the aioice loop it replaces; shows a check sent again on STUN's doubling timeouts, a
late answer counted, checks at the times the caller draws, consent lost after aioice's count
of unanswered checks (an answer resets it), and both halves of a real session: the station
agent's checks run our loop, and over a link that holds the hub's answers a second, aioice's
single try fails where ours is answered."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aioice import stun
from aioice.ice import CONSENT_FAILURES, CONSENT_INTERVAL, Connection, StunProtocol

from clients import publisher
from jaga import ice_consent
from tests.clients.helpers import agent_config
from tests.kit import RunningHub, wait_until
from tests.locked import check_locked
from tests.media.peers import PatternTrack

STATION = "35.09.01.2001"


def test_the_aioice_loop_it_replaces() -> None:
    check_locked("aioice")
    connect = inspect.getsource(Connection.connect)
    assert "self._query_consent_task = asyncio.create_task(self.query_consent())" in connect  # an instance lookup
    query = inspect.getsource(Connection.query_consent)
    assert "await asyncio.sleep(CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))" in query
    assert "for pair in self._nominated.values():" in query
    assert "request = self.build_request(pair, nominate=False)" in query
    assert "integrity_key=self.remote_password.encode(\"utf8\")" in query and "retransmissions=0" in query
    assert "except stun.TransactionError:" in query and "failures >= CONSENT_FAILURES" in query
    assert "self._query_consent_task = None" in query and "return await self.close()" in query
    assert "self._query_consent_task.cancel()" in inspect.getsource(Connection.close)
    # a transaction: sent, then again after RTO, 2 RTO, ... while retransmissions last; an
    # answer to any of the sends (one transaction id) settles it
    assert stun.RETRY_RTO == 0.5
    retry = inspect.getsource(stun.Transaction._Transaction__retry)  # type: ignore[attr-defined]
    assert "self.__timeout_delay *= 2" in retry and "self.__future.set_exception(TransactionTimeout())" in retry
    assert "self.__tries_max = 1 + (" in inspect.getsource(stun.Transaction.__init__)


def test_a_check_is_sent_again_while_its_timeouts_end_before_the_next_check() -> None:
    assert ice_consent.consent_retransmissions(5.0) == 2  # sent at 0, 0.5 and 1.5 s; given up at 3.5 s < 4 s
    assert ice_consent.consent_retransmissions(10.0) == 3  # 7.5 s < 8 s
    assert ice_consent.consent_retransmissions(0.25) == 0  # a window shorter than one timeout: sent once


def test_aioices_draw_stays_in_the_window() -> None:
    draws = [ice_consent.aioice_draw(10.0) for _ in range(500)]
    assert all(10.0 + 0.8 * CONSENT_INTERVAL <= at <= 10.0 + 1.2 * CONSENT_INTERVAL for at in draws)
    assert max(draws) - min(draws) > 0.3 * CONSENT_INTERVAL  # spread over it, not one phase


async def test_an_answer_later_than_one_timeout_still_counts() -> None:
    # The overloaded hub of "A Jember day", sixth step: the answer waits behind a second of
    # media in the socket's queue. aioice's single try had given up at 0.5 s.
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    class Wire:
        def send_stun(self, message: Any, addr: Any) -> None:
            sent.append(loop.time())

    request = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.REQUEST)
    transaction = stun.Transaction(request, ("127.0.0.1", 9), Wire(),
                                   retransmissions=ice_consent.consent_retransmissions(5.0))
    answer = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                          transaction_id=request.transaction_id)
    loop.call_later(1.0, transaction.response_received, answer, ("127.0.0.1", 9))
    response, _ = await asyncio.wait_for(transaction.run(), 5)
    assert response is answer and len(sent) == 2  # the first send, and the one at 0.5 s


class Pair:
    """A nominated pair whose checks are answered (True) or not (False), in turn."""

    def __init__(self, answers: list[bool], times: list[float]) -> None:
        self.remote_addr = ("127.0.0.1", 9)
        self.answers, self.times = answers, times
        self.protocol = self

    async def request(self, request: Any, addr: Any, integrity_key: bytes, retransmissions: int) -> Any:
        assert integrity_key == b"secret" and addr == self.remote_addr
        assert retransmissions == ice_consent.consent_retransmissions(0.25) == 0  # the tests' 0.25 s interval
        self.times.append(asyncio.get_running_loop().time())
        if not self.answers.pop(0):
            raise stun.TransactionError()
        return None


async def test_checks_go_out_when_drawn_and_consent_expires_after_aioices_count_of_failures() -> None:
    times: list[float] = []
    drawn: list[float] = []
    answers = [True, False, True] + [False] * CONSENT_FAILURES  # an answer resets the count
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    def next_check(now: float) -> float:
        drawn.append(now + 0.2 + 0.02 * len(drawn))
        return drawn[-1]

    connection = SimpleNamespace(remote_password="secret", _nominated={1: Pair(answers, times)},
                                 build_request=lambda pair, nominate: object(), close=close,
                                 _query_consent_task="running")
    task = asyncio.ensure_future(ice_consent.query_consent(connection, next_check, 0.25))  # type: ignore[arg-type]
    await asyncio.wait_for(closed.wait(), 10)
    await asyncio.wait_for(task, 5)
    assert len(times) == 3 + CONSENT_FAILURES and connection._query_consent_task is None
    for at, due in zip(times, drawn, strict=True):
        assert due <= at <= due + 0.06  # at the drawn time, give or take the loop's lateness


def late_answers(protocol: StunProtocol, delay_s: float) -> None:
    """Hold every STUN answer ``protocol`` receives for ``delay_s``: a link (or a hub's queue)
    a second behind, seen from the agent's side."""
    loop = asyncio.get_running_loop()
    received = protocol.datagram_received

    def held(data: bytes | str, addr: tuple[Any, ...]) -> None:
        if isinstance(data, bytes) and data[:2] == b"\x01\x01":  # a Binding success answer
            loop.call_later(delay_s, received, data, addr)
        else:
            received(data, addr)

    protocol.datagram_received = held  # type: ignore[method-assign]  # shadowed per instance, for the test


@pytest.mark.parametrize("retransmissions, answered", [(0, False), (ice_consent.consent_retransmissions(5.0), True)],
                         ids=["aioice-once", "patient"])
async def test_the_agents_session_checks_consent_patiently(hub: RunningHub, tmp_path: Path,
                                                           retransmissions: int, answered: bool) -> None:
    config = agent_config(tmp_path, hub, STATION, await hub.token(STATION))
    session = await publisher.publish(config, await hub.token(STATION), PatternTrack(), None)
    try:
        connection = session.pc.getTransceivers()[0].sender.transport.transport._connection
        query = connection.query_consent
        assert query.func is ice_consent.query_consent  # type: ignore[attr-defined]  # seam installed
        await wait_until(lambda: connection._query_consent_task is not None, message="ICE done, consent checked")
        pair = connection._nominated[1]
        late_answers(pair.protocol, 1.0)
        assert connection.remote_password is not None
        check = pair.protocol.request(connection.build_request(pair, nominate=False), pair.remote_addr,
                                      integrity_key=connection.remote_password.encode("utf8"),
                                      retransmissions=retransmissions)
        if answered:  # sent at 0 and 0.5 s; the first answer arrives at ~1 s, inside the 1.5 s timeout
            answer, _ = await asyncio.wait_for(check, 5)
            assert answer.message_class == stun.Class.RESPONSE
        else:  # aioice's single try gives up at 0.5 s: six such in a row close a live session
            with pytest.raises(stun.TransactionTimeout):
                await asyncio.wait_for(check, 5)
    finally:
        await session.close()
