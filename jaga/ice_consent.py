"""aioice's consent freshness checks (RFC 7675), patient: the reach into aioice that the hub
and the station agent share for them.

Seam 20 (docs/media.md), pinned by ``tests/jaga/test_ice_consent.py`` against the locked aioice. Once ICE
completes, ``Connection.connect`` starts ``self.query_consent()`` as a task (an instance
lookup). aioice's loop sleeps a random 0.8-1.2 × ``CONSENT_INTERVAL`` (5 s), then sends one
Binding request on each nominated pair (``_nominated``, ``build_request``), and after
``CONSENT_FAILURES`` (6) checks in a row without an answer closes the connection. It sends
each check once (``retransmissions=0``: one ``stun.Transaction`` try, ``RETRY_RTO`` = 0.5 s),
so a peer whose answers wait more than half a second anywhere — a hub whose media socket's
queue runs a second behind under load ("A Jember day", sixth step, docs/benchmarks.md), a
village uplink whose modem buffers seconds of video — loses every check, and 30 s later the
session, though both ends are up.

``patient_consent`` shadows that loop per connection with the same one, except that a check
is sent again on aioice's doubling timeouts as long as they end before the earliest next
check (``consent_retransmissions``: twice, 3.5 s, for the 5 s interval): a late answer still
counts. RFC 7675 §5.1 leaves retransmission to STUN's rules and lets consent expire only after
30 s without an answer; what a check is and when consent is lost stay aioice's. When the
next check goes out is the caller's (``next_check``): aioice's own draw for the agent, a
whole second inside the same window for the hub (``hub.media.seams_ice``).

Imports nothing but aioice and the standard library: the hub and the agent both use it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable
from typing import TYPE_CHECKING

from aioice import stun
from aioice.ice import CONSENT_FAILURES, CONSENT_INTERVAL, Connection

if TYPE_CHECKING:  # the agent and the hub both have aiortc; this module needs only its shape
    from aiortc import RTCPeerConnection

logger = logging.getLogger(__name__)

__all__ = ["NextCheck", "aioice_draw", "consent_retransmissions", "patient_consent", "query_consent"]

NextCheck = Callable[[float], float]
"""The loop time of the next check, given the loop time now: inside [0.8, 1.2] × the interval
after it (RFC 7675 §5.1)."""


def aioice_draw(now: float, interval_s: float = CONSENT_INTERVAL) -> float:
    """aioice's own: a uniform draw from the window."""
    return now + interval_s * (0.8 + 0.4 * random.random())


def patient_consent(pc: RTCPeerConnection, next_check: NextCheck | None = None,
                    interval_s: float = CONSENT_INTERVAL) -> None:
    """Make every ICE connection of ``pc`` check consent with :func:`query_consent`. Call after
    ``setLocalDescription`` (the connections exist) and before ICE completes (when aioice
    starts its loop, inside ``setRemoteDescription`` for an offerer)."""
    draw = next_check or functools.partial(aioice_draw, interval_s=interval_s)
    for transceiver in pc.getTransceivers():
        dtls = transceiver.sender.transport
        if dtls is None:  # a section aiortc left without a transport: nothing to check
            continue
        connection = dtls.transport._connection
        # Connection.connect: self._query_consent_task = asyncio.create_task(self.query_consent())
        connection.query_consent = functools.partial(  # type: ignore[method-assign]  # shadowed per instance
            query_consent, connection, draw, interval_s)


async def query_consent(connection: Connection, next_check: NextCheck,
                        interval_s: float = CONSENT_INTERVAL) -> None:
    """``Connection.query_consent``, each check sent again while its timeouts end before the
    earliest next one, at the times ``next_check`` draws."""
    assert connection.remote_password is not None  # as aioice's: checks start once connect() has it
    loop = asyncio.get_running_loop()
    retransmissions = consent_retransmissions(interval_s)
    failures = 0
    while True:
        now = loop.time()
        await asyncio.sleep(next_check(now) - now)
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
