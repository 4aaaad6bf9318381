"""What each operator session holds open on this node, so that ending the session ends it.

An HTTP request is checked against the store every time, but a watch socket (the private
view of every office) and a media session (a WHEP view of a private office, the talk-back
WHIP) were authorised once, when they opened. The edges report what they open
(:meth:`OperatorAccess.watch_opened`, :meth:`OperatorAccess.media_opened`) with the session
id that authorised it. A logout on this node ends it at once (:meth:`end_session`); for
everything else — a logout on another node, expiry, ``jaga-hub operators revoke|remove|add``
(the CLI writes the store directly) — the hub's checkpoint timer calls :meth:`end_revoked`,
which asks the store which of those sessions are still valid, as
:class:`~hub.services.whip_tokens.WhipTokens` does for rotated station tokens. A store that
cannot answer (Redis away) ends nothing: an outage is not a revocation.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from hub.media.relay import MediaRelay
from hub.services.auth import AuthService

log = logging.getLogger("jaga.hub")

Closer = Callable[[], Awaitable[None]]


class OperatorAccess:
    def __init__(self, auth: AuthService, media: MediaRelay) -> None:
        self.auth = auth
        self.media = media
        self._media: dict[str, str] = {}  # media session id → operator session id
        self._watchers: dict[str, dict[int, Closer]] = {}  # operator session id → {handle: close}
        self._next_handle = 0

    def media_opened(self, media_session_id: str, session_id: str) -> None:
        self._media[media_session_id] = session_id

    def watch_opened(self, session_id: str, close: Closer) -> int:
        """Register a watch socket's ``close`` (4401); pass the handle to :meth:`watch_closed`."""
        self._next_handle += 1
        self._watchers.setdefault(session_id, {})[self._next_handle] = close
        return self._next_handle

    def watch_closed(self, session_id: str, handle: int) -> None:
        closers = self._watchers.get(session_id, {})
        closers.pop(handle, None)
        if not closers:
            self._watchers.pop(session_id, None)

    async def end_session(self, session_id: str) -> None:
        """Close what ``session_id`` holds open here (it was just logged out)."""
        for close in list(self._watchers.pop(session_id, {}).values()):
            await close()
        for media_session_id, owner in list(self._media.items()):
            if owner == session_id:
                del self._media[media_session_id]
                await self.media.end(media_session_id)

    async def end_revoked(self) -> None:
        # Forget media sessions that ended on their own first, so the map stays as small as the relay's.
        self._media = {m: s for m, s in self._media.items() if self.media.session(m)}
        held = set(self._media.values()) | set(self._watchers)
        if not held:
            return
        live = await self.auth.live_sessions(sorted(held))
        for session_id in held - live:
            log.warning("an operator session ended (logout, expiry or revocation): closing what it held open")
            await self.end_session(session_id)
