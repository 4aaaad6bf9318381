"""aioice's consent freshness checks (RFC 7675) on the hub's beat.

Seams 20 and 21, pinned by ``tests/media/test_seams_ice.py`` (and ``tests/jaga/test_ice_consent.py``)
against the locked aioice:

20. ``consent_on_beat``: aioice's consent loop, made patient by ``jaga.ice_consent`` (shared
    with the station agent: each check sent again while its timeouts end before the next),
    with its checks on whole seconds of the loop's clock (``hub.beat``). aioice sleeps a
    random 0.8-1.2 × ``CONSENT_INTERVAL`` (5 s) between checks, each session on a phase of
    its own: a wake-up of the hub for the timer and another for the answer, per session every
    ~5 s (docs/benchmarks.md section 3: a wake-up costs ~100-200 µs of CPU here, whatever it
    does). Ours go out on a second drawn at random inside the same 0.8-1.2 × window, so RFC
    7675 §5.1's randomisation holds: the checks due in one second leave in one turn of the
    loop, with the hub's other timers, and their answers come back together.
21. ``consent_answerer``: the other way round, the checks a peer sends us on the pair in use
    (``Connection._nominated``) are answered by ``hub.media.consent`` with the bytes aioice's
    ``Connection.request_received`` would send (``local_username``, ``remote_username``,
    ``local_password``, ``ice_controlling``; not once the connection is closing or before its
    early checks are done, ``_closing``, ``_early_checks_done``). For such a request aioice's
    ``check_incoming`` changes nothing (the pair is known, succeeded and nominated), so
    nothing is skipped but the work; anything else still goes to aioice.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable

from aioice.ice import CONSENT_INTERVAL, Connection, StunProtocol
from aiortc import RTCPeerConnection

from hub.beat import SECOND_BEAT_S
from hub.media import consent
from jaga import ice_consent

__all__ = ["beat_in_window", "consent_answerer", "consent_on_beat"]


def consent_on_beat(pc: RTCPeerConnection, interval_s: float = CONSENT_INTERVAL,
                    beat_s: float = SECOND_BEAT_S) -> None:
    """Make every ICE connection of ``pc`` check consent patiently, on the beat. Call after
    ``setLocalDescription`` (the connections exist) and before ICE completes (when aioice
    starts its loop): right after the answer is made, as ``hub.media.peers`` does."""
    ice_consent.patient_consent(pc, functools.partial(beat_in_window, interval_s=interval_s, beat_s=beat_s),
                                interval_s)


def beat_in_window(now: float, interval_s: float, beat_s: float) -> float:
    """A multiple of ``beat_s`` drawn at random from those inside [0.8, 1.2] × ``interval_s``
    after ``now`` (the window is 0.4 × 5 s = 2 s wide: two or three beats of a second)."""
    first = math.ceil((now + 0.8 * interval_s) / beat_s)
    last = math.floor((now + 1.2 * interval_s) / beat_s)
    if last < first:  # a window narrower than a beat: aioice's own draw
        return ice_consent.aioice_draw(now, interval_s)
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
