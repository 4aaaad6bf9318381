"""Seams 20 and 21 (``hub.media.seams_ice``): aioice's consent checks on the hub's beat, and a
peer's checks answered by us.

Seam 20's loop is ``jaga.ice_consent``'s (pinned in ``tests/jaga/test_ice_consent.py``); here:
checks drawn on beats inside RFC 7675's randomised window, and a real relay session checking
consent with that loop on the beat."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any

from aioice import stun
from aioice.ice import Connection, StunProtocol

from hub.media import seams_ice
from hub.media.relay import MediaRelay
from jaga import ice_consent
from tests.kit import wait_until
from tests.locked import check_locked
from tests.media.conftest import RecordedEvents, media_settings
from tests.media.peers import Publisher


def test_each_check_is_on_a_beat_inside_the_randomised_window() -> None:
    for now in (0.0, 12.3, 1000.999, 7.5):
        for _ in range(200):
            at = seams_ice.beat_in_window(now, 5.0, 1.0)
            assert at == math.floor(at) and now + 4.0 <= at <= now + 6.0
    # a window narrower than a beat: aioice's own draw, still inside it
    at = seams_ice.beat_in_window(3.3, 0.2, 1.0)
    assert 3.3 + 0.16 <= at <= 3.3 + 0.24


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
            assert query.func is ice_consent.query_consent  # type: ignore[attr-defined]
            next_check = query.args[1]  # type: ignore[attr-defined]
            assert next_check.func is seams_ice.beat_in_window and next_check.keywords["beat_s"] == 1.0
            await wait_until(functools.partial(consent_checked, connection), message="ICE done, consent checked")
            assert connection._query_consent_task is not None and not connection._query_consent_task.done()
    finally:
        await publisher.close()
        await relay.close()


def test_every_beat_of_the_window_is_drawn() -> None:
    draws = {seams_ice.beat_in_window(0.5, 5.0, 1.0) for _ in range(500)}
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
