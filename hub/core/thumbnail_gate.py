"""How often a station's own thumbnails are taken: at most one per ``interval_s`` each.

An agent sends one every ``thumbnail_s``; each accepted one is re-encoded (hub CPU) and
announced to every watcher (every wall and portal page then fetches it). So the gate admits
one per half ``thumbnail_s`` per station (an agent on the hub's period never meets it, even
with its extra one after a reconnection, unless that follows within half a period) and the
rest are dropped before any decoding. A thumbnail that turns out bad
still used its turn: decoding it is the cost being bounded. Pure: times are given.
"""

from __future__ import annotations


class ThumbnailGate:
    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._last: dict[str, float] = {}  # station → when its last thumbnail was admitted

    def admit(self, station: str, now: float) -> bool:
        last = self._last.get(station)
        if last is not None and now - last < self.interval_s:
            return False
        self._last[station] = now
        return True

    def wait_s(self, station: str, now: float) -> float:
        """Seconds until ``station`` may send again (0 when it may now)."""
        last = self._last.get(station)
        return 0.0 if last is None else max(0.0, self.interval_s - (now - last))
