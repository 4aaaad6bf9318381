"""Which reads of non-public stations' data by operators go to the audit log.

Theory of operation
-------------------
Operators may see every station; the audit log is how an insider watching a private office
gets noticed (docs/security.md). Writes (announce, talk-back, logins, admin commands) and
every WHEP view of a private station are audited one entry each. *Reads* are not: the wall
fetches a tile's thumbnail every few seconds and the watch page polls its station, so one
entry per request would be thousands a day saying the same thing and would bury the rest.

What an auditor needs is *who looked at which private office, and roughly when*. So a read
is recorded when nothing was recorded for the same (operator, subject) in the last
:data:`READ_PERIOD_S`; otherwise it is covered by that entry. The subject is a station id
for one station's data (detail, thumbnail, its daily row), or the path of a list answer that
carried non-public stations (one entry per list, not one per station in it).

:meth:`ReadAudit.claim` decides and marks in one step, so two concurrent reads write one
entry; :meth:`ReadAudit.release` undoes a claim whose entry could not be written, so the
next read tries again. State is per node (in a cluster each node may record its own entry
per period) and bounded: marks older than a period are dropped once there are many.
"""

from __future__ import annotations

READ_PERIOD_S = 3600.0  # one entry per operator, subject and hour: "who, which office, when" to the hour
_PRUNE_ABOVE = 1024  # marks kept before expired ones are dropped (operators × private stations is small)


class ReadAudit:
    """The last time a read of ``subject`` by ``operator`` was recorded; ``now`` is injected."""

    def __init__(self, period_s: float = READ_PERIOD_S) -> None:
        self.period_s = period_s
        self._recorded: dict[tuple[str, str], float] = {}

    def claim(self, operator: str, subject: str, now: float) -> bool:
        """True when this read must be recorded (and it is then marked as recorded at ``now``);
        False when an entry of the last period covers it."""
        key = (operator, subject)
        last = self._recorded.get(key)
        if last is not None and now - last < self.period_s:
            return False
        if len(self._recorded) >= _PRUNE_ABOVE:
            self._recorded = {k: at for k, at in self._recorded.items() if now - at < self.period_s}
        self._recorded[key] = now
        return True

    def release(self, operator: str, subject: str) -> None:
        """Forget a claim whose entry was not written (the store was unavailable)."""
        self._recorded.pop((operator, subject), None)
