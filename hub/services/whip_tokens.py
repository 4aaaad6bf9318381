"""Which token each WHIP publisher opened its session with, so a rotation ends it.

Rotating a station's token closes its agent's WebSocket (``StationsService.close_revoked``).
A publisher that never opened one (OBS, GStreamer) holds only a WHIP session: the WHIP route
records the token hash it authenticated with (:meth:`WhipTokens.opened`), and the hub's
checkpoint timer calls :meth:`WhipTokens.end_revoked`, which ends every session whose
station's token has since been rotated or removed.
"""

from __future__ import annotations

import logging

from hub.media.relay import MediaRelay
from hub.services.auth import AuthService

log = logging.getLogger("jaga.hub")


class WhipTokens:
    def __init__(self, auth: AuthService, media: MediaRelay) -> None:
        self.auth = auth
        self.media = media
        self.sessions: dict[str, tuple[str, str]] = {}  # WHIP session id → (station, token hash)

    def opened(self, session_id: str, station_id: str, token_hash: str) -> None:
        self.sessions[session_id] = (station_id, token_hash)

    async def end_revoked(self) -> None:
        # Forget sessions that ended on their own first, so the map stays as small as the relay's.
        self.sessions = {sid: c for sid, c in self.sessions.items() if self.media.session(sid)}
        if not self.sessions:
            return
        revoked = set(await self.auth.revoked(dict(self.sessions.values())))
        for session_id, (station_id, _) in list(self.sessions.items()):
            if station_id in revoked:
                log.warning("token of %s was rotated: ending its WHIP session", station_id)
                del self.sessions[session_id]
                await self.media.end(session_id)
