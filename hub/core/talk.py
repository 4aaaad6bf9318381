"""Talk-back: which stations may listen to the Pendopo right now.

Theory of operation
-------------------
The control room publishes one talk-back stream, ``pendopo`` (an operator's microphone over
WHIP). An operator addresses a station with ``talk.start`` and releases it with
``talk.stop``. The stream itself is not per station, so the only thing that keeps one office
from overhearing what the Pendopo says to another is who may *view* it:

    may_listen(s)  ⇔  s ∈ addressed,   addressed changed only by start(s) and stop(s)

A station's WHEP of ``pendopo`` is refused unless it may listen, and ``stop(s)`` is followed
by ending the sessions ``s`` already has (the caller does that: this module has no I/O).
Operators are not in this table: they may always view the Pendopo.

In a cluster every node keeps its own table and applies the same commands: the bus's
commands channel carries every ``talk.start``/``talk.stop`` to every node (it is how the
station hears them too), and the node that takes the operator's request applies it before
publishing, so the node where the operator talks (and publishes) knows first. A node that
joins during a talk knows nothing of it, and the station is refused there until the next
``talk.start``: refusing is the safe side.
"""

from __future__ import annotations

from dataclasses import dataclass

PENDOPO = "pendopo"  # the control room's talk-back publisher; not in the registry


@dataclass(frozen=True)
class Talk:
    operator: str  # who addressed the station
    since: float


class TalkTable:
    """The stations addressed by an active ``talk.start``. Pure: times are given."""

    def __init__(self) -> None:
        self._addressed: dict[str, Talk] = {}

    def start(self, station: str, operator: str, at: float) -> None:
        """Idempotent: a repeated start (the bus echoing our own) keeps the first time."""
        if station not in self._addressed:
            self._addressed[station] = Talk(operator, at)

    def stop(self, station: str) -> Talk | None:
        """The talk that ended, or None if the station was not addressed."""
        return self._addressed.pop(station, None)

    def may_listen(self, station: str) -> bool:
        return station in self._addressed

    def get(self, station: str) -> Talk | None:
        return self._addressed.get(station)
