"""aioice's consent freshness checks (RFC 7675) on the hub's beat.

Seam 20, pinned by ``tests/media/test_seams_ice.py`` against the locked aioice:

20. ``consent_on_beat``: once ICE completes, ``Connection.connect`` starts
    ``self.query_consent()`` as a task (an instance lookup). aioice's loop sleeps a random
    0.8-1.2 × ``CONSENT_INTERVAL`` (5 s) between checks, each session on a phase of its own:
    a wake-up of the hub for the timer and another for the answer, per session every ~5 s
    (docs/benchmarks.md section 3: a wake-up costs ~100-200 µs of CPU here, whatever it does).
    We shadow it per connection with the same loop whose checks go out on whole seconds of
    the loop's clock (``hub.beat``), on a second drawn at random inside the same 0.8-1.2 ×
    window, so RFC 7675 §5.1's randomisation holds: the checks due in one second leave in
    one turn of the loop, with the hub's other timers, and their answers come back together.
    What a check is, and when consent is lost (``CONSENT_FAILURES`` checks in a row without
    an answer: the connection closes), is aioice's, with one change: aioice sends each check
    once (``retransmissions=0``: one ``stun.Transaction`` try, ``RETRY_RTO`` = 0.5 s), so a
    hub whose receive queue runs more than half a second behind (a full media socket buffer
    under load: "A Jember day", sixth step) lost every check and, 30 s later, every session
    at once. Ours is sent again on aioice's doubling timeouts as long as they end before the
    earliest next check (``consent_retransmissions``: twice, 3.5 s, for the 5 s interval), so
    a late answer still counts; RFC 7675 §5.1 leaves retransmission to STUN's rules and lets
    consent expire only after 30 s without an answer.
21. ``consent_answerer``: the other way round, the checks a peer sends us on the pair in use
    (``Connection._nominated``) are answered by ``hub.media.consent`` with the bytes aioice's
    ``Connection.request_received`` would send (``local_username``, ``remote_username``,
    ``local_password``, ``ice_controlling``; not once the connection is closing or before its
    early checks are done, ``_closing``, ``_early_checks_done``). For such a request aioice's
    ``check_incoming`` changes nothing (the pair is known, succeeded and nominated), so
    nothing is skipped but the work; anything else still goes to aioice.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
from collections.abc import Callable

from aioice import stun
from aioice.ice import CONSENT_FAILURES, CONSENT_INTERVAL, Connection, StunProtocol
from aiortc import RTCPeerConnection

from hub.beat import SECOND_BEAT_S
from hub.media import consent

logger = logging.getLogger(__name__)

__all__ = ["consent_answerer", "consent_on_beat", "consent_retransmissions", "query_consent_on_beat"]


def consent_on_beat(pc: RTCPeerConnection, interval_s: float = CONSENT_INTERVAL,
                    beat_s: float = SECOND_BEAT_S) -> None:
    """Make every ICE connection of ``pc`` check consent on the beat. Call after
    ``setLocalDescription`` (the connections exist) and before ICE completes (when aioice
    starts its loop): right after the answer is made, as ``hub.media.peers`` does."""
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is None:  # a section aiortc left without a transport: nothing to check
            continue
        connection = dtls.transport._connection
        # Connection.connect: self._query_consent_task = asyncio.create_task(self.query_consent())
        connection.query_consent = functools.partial(  # type: ignore[method-assign]  # shadowed per instance
            query_consent_on_beat, connection, interval_s, beat_s)


async def query_consent_on_beat(connection: Connection, interval_s: float = CONSENT_INTERVAL,
                                beat_s: float = SECOND_BEAT_S) -> None:
    """``Connection.query_consent``, with each check on a beat inside its random window."""
    assert connection.remote_password is not None  # as aioice's: checks start once connect() has it
    loop = asyncio.get_running_loop()
    retransmissions = consent_retransmissions(interval_s)
    failures = 0
    while True:
        now = loop.time()
        await asyncio.sleep(_beat_in_window(now, interval_s, beat_s) - now)
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(request, pair.remote_addr,
                                            integrity_key=connection.remote_password.encode("utf8"),
                                            retransmissions=retransmissions)
                failures = 0
            except stun.TransactionError:
                failures += 1
            if failures >= CONSENT_FAILURES:
                logger.info("ICE consent to send expired")
                connection._query_consent_task = None
                await connection.close()
                return


def consent_retransmissions(interval_s: float, rto_s: float = stun.RETRY_RTO) -> int:
    """How many times a check is sent again without an answer: as many as aioice's doubling
    timeouts (RTO, 2 RTO, 4 RTO, ...) allow before the earliest next check (0.8 × interval)."""
    retransmissions = 0
    while rto_s * (2 ** (retransmissions + 2) - 1) < 0.8 * interval_s:
        retransmissions += 1
    return retransmissions


def _beat_in_window(now: float, interval_s: float, beat_s: float) -> float:
    """A multiple of ``beat_s`` drawn at random from those inside [0.8, 1.2] × ``interval_s``
    after ``now`` (the window is 0.4 × 5 s = 2 s wide: two or three beats of a second)."""
    first = math.ceil((now + 0.8 * interval_s) / beat_s)
    last = math.floor((now + 1.2 * interval_s) / beat_s)
    if last < first:  # a window narrower than a beat: aioice's own draw
        return now + interval_s * (0.8 + 0.4 * random.random())
    return random.randint(first, last) * beat_s


def consent_answerer(connection: Connection, protocol: StunProtocol) -> Callable[[bytes, tuple[str, int]], bool]:
    """What answers a STUN request arriving on ``protocol`` from the remote end of the pair in
    use: True if it answered (``consent.answer_check``), False to leave it to aioice."""
    component = protocol.local_candidate.component
    credentials: list[bytes] = []  # username, key: the remote ufrag is known once checks start

    def answered(data: bytes, address: tuple[str, int]) -> bool:
        pair = connection._nominated.get(component)
        if (pair is None or pair.protocol is not protocol or pair.remote_addr != address
                or connection._closing or not connection._early_checks_done):
            return False
        if not credentials:
            credentials[:] = (f"{connection.local_username}:{connection.remote_username}".encode(),
                              connection.local_password.encode())
        response = consent.answer_check(data, address, credentials[0], credentials[1], connection.ice_controlling)
        if response is None:
            return False
        protocol.transport.sendto(response, address)
        return True

    return answered
