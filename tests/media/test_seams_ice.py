"""Seam 20 (``hub.media.seams_ice``): aioice's consent checks, on the hub's beat.

Pins the aioice loop it replaces; shows checks going out on beats inside RFC 7675's
randomised window, consent lost after aioice's count of unanswered checks, and a real
relay session checking consent with our loop."""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from types import SimpleNamespace
from typing import Any

from aioice import stun
from aioice.ice import CONSENT_FAILURES, Connection, StunProtocol

from hub.media import seams_ice
from hub.media.relay import MediaRelay
from tests.kit import wait_until
from tests.locked import check_locked
from tests.media.conftest import RecordedEvents, media_settings
from tests.media.peers import Publisher


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
    assert seams_ice.consent_retransmissions(5.0) == 2  # sent at 0, 0.5 and 1.5 s; given up at 3.5 s < 4 s
    assert seams_ice.consent_retransmissions(10.0) == 3  # 7.5 s < 8 s
    assert seams_ice.consent_retransmissions(0.25) == 0  # a window shorter than one timeout: sent once


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
                                   retransmissions=seams_ice.consent_retransmissions(5.0))
    answer = stun.Message(message_method=stun.Method.BINDING, message_class=stun.Class.RESPONSE,
                          transaction_id=request.transaction_id)
    loop.call_later(1.0, transaction.response_received, answer, ("127.0.0.1", 9))
    response, _ = await asyncio.wait_for(transaction.run(), 5)
    assert response is answer and len(sent) == 2  # the first send, and the one at 0.5 s


def test_each_check_is_on_a_beat_inside_the_randomised_window() -> None:
    for now in (0.0, 12.3, 1000.999, 7.5):
        for _ in range(200):
            at = seams_ice._beat_in_window(now, 5.0, 1.0)
            assert at == math.floor(at) and now + 4.0 <= at <= now + 6.0
    # a window narrower than a beat: aioice's own draw, still inside it
    at = seams_ice._beat_in_window(3.3, 0.2, 1.0)
    assert 3.3 + 0.16 <= at <= 3.3 + 0.24


class Pair:
    def __init__(self, answers: list[bool], times: list[float]) -> None:
        self.remote_addr = ("127.0.0.1", 9)
        self.answers, self.times = answers, times
        self.protocol = self

    async def request(self, request: Any, addr: Any, integrity_key: bytes, retransmissions: int) -> Any:
        assert integrity_key == b"secret" and addr == self.remote_addr
        assert retransmissions == seams_ice.consent_retransmissions(0.25) == 0  # the tests' 0.25 s interval
        self.times.append(asyncio.get_running_loop().time())
        if not self.answers.pop(0):
            raise stun.TransactionError()
        return None


async def test_checks_go_out_on_beats_and_consent_expires_after_aiortcs_count_of_failures() -> None:
    times: list[float] = []
    answers = [True, False, True] + [False] * CONSENT_FAILURES  # an answer resets the count
    closed = asyncio.Event()

    async def close() -> None:
        closed.set()

    connection = SimpleNamespace(remote_password="secret", _nominated={1: Pair(answers, times)},
                                 build_request=lambda pair, nominate: object(), close=close,
                                 _query_consent_task="running")
    task = asyncio.ensure_future(seams_ice.query_consent_on_beat(connection, 0.25, 0.05))  # type: ignore[arg-type]
    await asyncio.wait_for(closed.wait(), 10)
    await asyncio.wait_for(task, 5)
    assert len(times) == 3 + CONSENT_FAILURES and connection._query_consent_task is None
    for earlier, later in zip(times, times[1:], strict=False):
        assert 0.2 - 0.01 <= later - earlier <= 0.3 + 0.06  # the window, plus the loop's own lateness
    assert all(abs(t / 0.05 - round(t / 0.05)) < 0.4 for t in times)  # on the beat, give or take the loop


def consent_checked(connection: Connection) -> bool:
    return connection._query_consent_task is not None


async def test_a_relay_session_checks_consent_with_our_loop() -> None:
    events = RecordedEvents()
    relay = MediaRelay(media_settings(), events)
    publisher = await Publisher.start(relay, "s0")
    try:
        await events.wait_until(lambda: relay.stream("s0") is not None)
        connections = {id(c): c for session in list(relay._sessions.values())
                       for c in [session.pc.getTransceivers()[0].sender.transport.transport._connection]}
        assert connections
        for connection in connections.values():
            query = connection.query_consent
            assert query.func is seams_ice.query_consent_on_beat  # type: ignore[attr-defined]
            await wait_until(functools.partial(consent_checked, connection), message="ICE done, consent checked")
            assert connection._query_consent_task is not None and not connection._query_consent_task.done()
    finally:
        await publisher.close()
        await relay.close()


def test_every_beat_of_the_window_is_drawn() -> None:
    draws = {seams_ice._beat_in_window(0.5, 5.0, 1.0) for _ in range(500)}
    assert draws == {5.0, 6.0}  # 4.5 to 6.5 s after 0.5: the beats at 5 and 6


# --- seam 21: the checks a peer sends us, answered by hub.media.consent ----------------------


def test_the_aioice_answer_it_replaces() -> None:
    check_locked("aioice")
    received = inspect.getsource(Connection.request_received)
    for step in ("if self._closing:", "self._valid_username(message.attributes[\"USERNAME\"])",
                 "message.check_message_integrity(self.local_password.encode(\"utf8\"))",
                 "if self.ice_controlling and \"ICE-CONTROLLING\" in message.attributes:",
                 "elif not self.ice_controlling and \"ICE-CONTROLLED\" in message.attributes:",
                 "response.attributes[\"XOR-MAPPED-ADDRESS\"] = addr",
                 "response.add_message_integrity(self.local_password.encode(\"utf8\"))",
                 "protocol.send_stun(response, addr)", "if not self._early_checks_done:",
                 "self.check_incoming(message, addr, protocol)"):
        assert step in received, step
    # for a check on the nominated pair, without USE-CANDIDATE, check_incoming changes nothing
    incoming = inspect.getsource(Connection.check_incoming)
    assert "if pair.state in [CandidatePair.State.FROZEN, CandidatePair.State.FAILED]:" in incoming
    assert "if \"USE-CANDIDATE\" in message.attributes and not self.ice_controlling:" in incoming
    assert "self.transport.sendto(bytes(message), addr)" in inspect.getsource(StunProtocol.send_stun)


async def test_a_peers_consent_checks_are_answered_by_us_and_the_rest_by_aioice() -> None:
    events = RecordedEvents()
    relay = MediaRelay(media_settings(), events)
    publisher = await Publisher.start(relay, "s0")
    try:
        await events.wait_until(lambda: relay.stream("s0") is not None)
        session = next(iter(relay._sessions.values()))
        hub_side = session.pc.getTransceivers()[0].sender.transport.transport._connection
        peer_side = publisher.pc.getTransceivers()[0].sender.transport.transport._connection
        await wait_until(lambda: bool(peer_side._nominated) and bool(hub_side._nominated), message="ICE done")
        to_aioice: list[Any] = []
        request_received = hub_side.request_received

        def spy(message: Any, addr: Any, protocol: Any) -> None:
            to_aioice.append(message)
            request_received(message, addr, protocol)

        hub_side.request_received = spy  # type: ignore[method-assign]  # shadowed per instance, as a seam would
        pair = peer_side._nominated[1]
        assert peer_side.remote_password is not None
        key = peer_side.remote_password.encode("utf8")

        async def check(nominate: bool) -> Any:
            answer, _ = await pair.protocol.request(peer_side.build_request(pair, nominate=nominate),
                                                    pair.remote_addr, integrity_key=key, retransmissions=2)
            return answer

        for _ in range(3):  # what the publisher's aioice sends every ~5 s: answered, not by aioice
            answer = await check(nominate=False)
            assert answer.message_class == stun.Class.RESPONSE and answer.check_message_integrity(key)
            local = pair.local_candidate
            assert answer.attributes["XOR-MAPPED-ADDRESS"] == (local.host, local.port)
        assert to_aioice == []
        answer = await check(nominate=True)  # a nomination: aioice's to see, and it answers it
        assert answer.message_class == stun.Class.RESPONSE and len(to_aioice) == 1
        assert "USE-CANDIDATE" in to_aioice[0].attributes
    finally:
        await publisher.close()
        await relay.close()
