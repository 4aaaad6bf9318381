"""Presence: which stations are on, derived from facts, with every change as a transition.

Theory of operation
-------------------
A station's presence state follows from three facts the hub observes:

* ``connection`` — the id of its current authenticated WebSocket, or None;
* ``last_seen`` — when that socket last proved alive (hello, heartbeat, any message);
* ``publishing`` — whether its media (WHIP) is connected;
* ``media`` — what of that media is flowing: ``video``, ``audio`` (only audio: the agent
  stepped down on a weak uplink, or the video stopped) or ``""`` (no RTP at all for longer
  than ``media.stall_s``: the media has stalled). The relay's watchdog reports it.

    state = live          if publishing and media is flowing (video or audio)
            reconnecting  if publishing but the media stalled (a frozen picture is not presence)
            online        if connected and last_seen within the grace (2 heartbeats)
            reconnecting  if connected but quiet past the grace, or the socket died
                          without a close frame, and last_seen is within timeout_s
            offline       otherwise

The table changes only through the methods below; each returns the list of
:class:`Transition` it caused (usually zero or one) so the caller can write them to the
ledger *before* announcing them. Time never advances by itself: the caller passes ``now``
to every method and calls :meth:`PresenceTable.tick` periodically to age connections.

Reasons name why a state was entered (``hello``, ``published``, ``unpublished``,
``heartbeat``, ``silent`` (heartbeats missed), ``lost``, ``timeout``, ``closed``, ``replaced``,
``node_lost``, ``media_stalled``, ``media_resumed``); the ledger stores the reason that *ended* an
interval, which is the reason of the next transition.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OFFLINE = "offline"
ONLINE = "online"
LIVE = "live"
RECONNECTING = "reconnecting"
STATES = (OFFLINE, ONLINE, LIVE, RECONNECTING)
VIDEO, AUDIO, STALLED = "video", "audio", ""  # what of a publisher's media is flowing


def flowing_media(audio_age_s: float, video_age_s: float, stall_s: float) -> str:
    """What a publisher's media is, from how long ago each kind's last RTP packet arrived
    (since it was connected, if none did): VIDEO if any video came within ``stall_s``, else
    AUDIO if audio did, else STALLED. So a resumed stream counts as flowing at its first
    packet, and a stall shows after ``stall_s`` (plus the watchdog's tick)."""
    if video_age_s <= stall_s:
        return VIDEO
    if audio_age_s <= stall_s:
        return AUDIO
    return STALLED


@dataclass(frozen=True)
class Transition:
    station: str
    previous: str
    state: str
    at: float
    reason: str


@dataclass
class StationPresence:
    station: str
    state: str = OFFLINE
    since: float = 0.0
    reason: str = ""
    connection: int | None = None
    last_seen: float = 0.0
    socket_lost: bool = False  # the socket died without a close frame; waiting for a return
    publishing: bool = False
    media: str = STALLED  # while publishing: VIDEO, AUDIO or STALLED
    activity: dict[str, object] | None = field(default=None)


class PresenceTable:
    def __init__(self, heartbeat_s: float, timeout_s: float) -> None:
        self.grace_s = 2 * heartbeat_s
        self.timeout_s = timeout_s
        self._stations: dict[str, StationPresence] = {}

    def get(self, station: str) -> StationPresence:
        record = self._stations.get(station)
        if record is None:
            record = self._stations[station] = StationPresence(station)
        return record

    def records(self) -> list[StationPresence]:
        return list(self._stations.values())

    def connected(self, station: str, connection: int, now: float) -> tuple[int | None, list[Transition]]:
        """A socket authenticated. Returns the connection it replaces (to close with 4409)."""
        record = self.get(station)
        replaced = record.connection
        record.connection = connection
        record.last_seen = now
        record.socket_lost = False
        return replaced, self._settle(record, now, "hello")

    def seen(self, station: str, connection: int, now: float) -> list[Transition]:
        """Any message from the current socket proves it alive."""
        record = self.get(station)
        if record.connection != connection:
            return []
        record.last_seen = now
        return self._settle(record, now, "heartbeat")

    def disconnected(self, station: str, connection: int, now: float, clean: bool) -> list[Transition]:
        record = self.get(station)
        if record.connection != connection:
            return []  # a replaced socket closing says nothing about the station
        if clean:
            record.connection = None
            record.socket_lost = False
            return self._settle(record, now, "closed")
        record.socket_lost = True
        return self._settle(record, now, "lost")

    def publishing(self, station: str, active: bool, now: float) -> list[Transition]:
        """Media connected (taken as video until the watchdog says otherwise) or gone."""
        record = self.get(station)
        record.publishing = active
        record.media = VIDEO if active else STALLED
        return self._settle(record, now, "published" if active else "unpublished")

    def media_flow(self, station: str, media: str, now: float) -> tuple[bool, list[Transition]]:
        """The watchdog saw ``media`` flowing (VIDEO, AUDIO or STALLED). Returns whether the
        record changed (a VIDEO ⇄ AUDIO step changes no state but must be announced)."""
        record = self.get(station)
        if not record.publishing or record.media == media:
            return False, []
        record.media = media
        return True, self._settle(record, now, "media_stalled" if media == STALLED else "media_resumed")

    def forget_connection(self, station: str, now: float, reason: str) -> list[Transition]:
        """Drop whatever the station had (its node died, its token was revoked)."""
        record = self.get(station)
        record.connection = None
        record.socket_lost = False
        record.publishing = False
        record.media = STALLED
        return self._settle(record, now, reason)

    def tick(self, now: float) -> tuple[list[Transition], list[tuple[str, int]]]:
        """Age every station. Returns transitions and the (station, connection) pairs that
        timed out, whose sockets the caller should close."""
        transitions: list[Transition] = []
        expired: list[tuple[str, int]] = []
        for record in self._stations.values():
            if record.connection is None:
                continue
            if now - record.last_seen > self.timeout_s:
                expired.append((record.station, record.connection))
                record.connection = None
                record.socket_lost = False
                transitions += self._settle(record, now, "timeout")
            else:
                transitions += self._settle(record, now, "silent")
        return transitions, expired

    def derive(self, record: StationPresence, now: float) -> str:
        if record.publishing:
            return LIVE if record.media != STALLED else RECONNECTING
        if record.connection is None:
            return OFFLINE
        if record.socket_lost or now - record.last_seen > self.grace_s:
            return RECONNECTING
        return ONLINE

    def _settle(self, record: StationPresence, now: float, reason: str) -> list[Transition]:
        state = self.derive(record, now)
        if state == record.state:
            return []
        transition = Transition(record.station, record.state, state, now, reason)
        record.state = state
        record.since = now
        record.reason = reason
        return [transition]
