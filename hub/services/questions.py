"""Citizens' questions: asking, voting, moderating, and every change reaching every page.

Theory of operation
-------------------
The rules are pure (:mod:`hub.core.questions`, :mod:`hub.core.proof`,
:mod:`hub.core.question_limits`); this service puts them in order around the store, the bus
and the audit log. An ask passes, cheapest check first:

    station public and questions on → text and name clean → proof valid and unused
    → sender not banned → address, device and slow-mode limits → not a duplicate
    → room in the station's queue → stored pending → published

so a script without a proof costs the hub an HMAC, and only a proven ask is counted against
the limits. A refused ask that had a valid proof still used it up.

Every change is published once on the bus channel ``questions`` as msgpack
``{"t": "question", "q": moderator_view, "public": bool}``; ``public`` says whether the public
may hear of it (the question is visible now, or was until this change), which only the node
making the change can tell. Every node, its own change included, hears it in :meth:`run` and
hands it to its own sockets: operators' watch sockets get ``{"t", "q": moderator_view}``;
public watch sockets and the station's own agent socket get ``{"t", "q": public_view}`` only
when ``public``. Each frame is encoded once per audience and codec and shared.

Moderation is audited before it is applied (as the CLI does): an action the audit log cannot
record does not happen.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any

from hub.backends.base import Bus, CredentialStore, PresenceStore, QuestionStore
from hub.core import proof
from hub.core import questions as core
from hub.core.question_limits import SlidingLimiter, UsedTokens
from hub.core.questions import Question, moderator_view, public_view
from hub.core.registry import Registry, Station
from hub.errors import Conflict, Forbidden, NotFound, ProtocolViolation, RateLimited, Unavailable
from hub.services.stations import StationsService
from hub.services.watchers import Outgoing, WatchService
from hub.settings import QuestionsSettings
from jaga import wire

log = logging.getLogger("jaga.questions")

CHANNEL = "questions"
PUBLIC_FIELDS = ("id", "text", "name", "votes", "state", "asked_at", "activity")
DEFAULT_BAN_MIN = 30 * 24 * 60.0  # a ban without a length: 30 days
DEFAULT_TIMEOUT_MIN = 10.0
MAX_BAN_MIN = 366 * 24 * 60.0
MAX_SLOW_MODE_S = 3600.0
VOTES_PER_ADDRESS = 10  # votes per address per minute, as a multiple of questions.per_address_per_min
LIST_LIMIT = 500


def _public_of(view: dict[str, Any]) -> dict[str, Any]:
    return {name: view[name] for name in PUBLIC_FIELDS}


class QuestionsService:
    def __init__(self, settings: QuestionsSettings, registry: Registry, store: QuestionStore, bus: Bus,
                 credentials: CredentialStore, presence: PresenceStore, secret: bytes,
                 watchers: WatchService | None = None, stations: StationsService | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.registry = registry
        self.store = store
        self.bus = bus
        self.credentials = credentials  # the audit log
        self.presence = presence  # claim(): a proof used on one node is used on all
        self.secret = secret
        self.watchers = watchers
        self.stations = stations
        self.clock = clock
        self.per_address = SlidingLimiter(settings.per_address_per_min, 60.0)
        self.per_device = SlidingLimiter(settings.per_device_per_min, 60.0)
        self.slow = SlidingLimiter(1, settings.slow_mode_s)  # window passed per call: it changes
        self.votes = SlidingLimiter(VOTES_PER_ADDRESS * settings.per_address_per_min, 60.0)
        self.used = UsedTokens()

    # Citizens

    async def challenge(self, station: str) -> dict[str, Any]:
        self._public_station(station)
        s = self.settings
        return {"token": proof.issue(self.secret, station, self.clock(), s.challenge_ttl_s, s.difficulty),
                "difficulty": s.difficulty}

    async def ask(self, station: str, text: Any, name: Any, proof_: dict[str, Any], device: str,
                  address: str) -> Question:
        """A new pending question, stored and published; or the ``ClientError`` that refuses it
        (the order of the checks is in the module's docstring)."""
        self._public_station(station)
        if not isinstance(text, str) or not isinstance(name, (str, type(None))):
            raise ProtocolViolation("text and name must be strings", code="bad_field")
        text = core.clean_text(text)
        name = core.clean_name(name or "", self.settings.reserved_names)
        now = self.clock()
        await self._use_proof(station, proof_, now)
        if await self.store.banned(device, address, now):
            raise Forbidden("you may not ask questions here for now", code="banned")
        await self._limit(station, device, address, now)
        key = core.dedupe_key(text)
        since = now - self.settings.duplicate_window_s
        for earlier in await self.store.list(station, core.STATES, LIST_LIMIT):
            if earlier.asked_at >= since and core.dedupe_key(earlier.text) == key:
                raise Conflict("this question was already asked", code="duplicate")
        if await self.store.count_pending(station) >= self.settings.max_pending:
            raise Unavailable("too many questions are waiting; try again later", retry_after=60, code="queue_full")
        held = core.held_reason(text, self.settings.held_words) or core.held_reason(name, self.settings.held_words)
        question = Question(id=secrets.token_urlsafe(9), station=station, text=text, name=name,
                            state=core.PENDING, votes=0, asked_at=now, device=device, address=address,
                            activity=self._activity(station), held=held, decided_by="", decided_at=0.0)
        await self.store.add(question)
        await self._publish(question, public=False)
        return question

    async def vote(self, station: str, question_id: str, device: str, address: str) -> int:
        self._public_station(station)
        if not device:
            raise ProtocolViolation("voting needs the device cookie", code="no_device")
        question = await self.store.get(question_id)
        if question is None or question.station != station or question.state not in core.VISIBLE:
            raise NotFound("no such question")
        now = self.clock()
        if await self.store.banned(device, address, now):
            raise Forbidden("you may not vote here for now", code="banned")
        wait = self.votes.hit(address, now)
        if wait:
            raise RateLimited("too many votes from this address", retry_after=wait)
        votes = await self.store.vote(question_id, device)
        if votes is None:
            raise Conflict("you already voted for this question", code="already_voted")
        # Read again: a moderator may have changed it meanwhile, and the event carries its state.
        current = await self.store.get(question_id) or question
        await self._publish(core.with_votes(current, votes), public=True)
        return votes

    async def public(self, station: str, activity: str | None = None) -> list[dict[str, Any]]:
        """What the public sees of ``station``, in display order; with ``activity``, only the
        questions asked under that exact title ("" = asked while no activity ran). Filtered
        from the newest ``LIST_LIMIT`` shown questions of the station."""
        self._public_station(station)
        listed = await self.store.list(station, core.VISIBLE, LIST_LIMIT)
        if activity is not None:
            listed = [q for q in listed if q.activity == activity]
        return [public_view(q) for q in core.for_display(listed)]

    # Moderators

    async def queue(self, states: Sequence[str], station: str | None = None) -> list[dict[str, Any]]:
        """Questions in ``states`` (of ``station`` or all), newest first, as moderators see them."""
        unknown = [state for state in states if state not in core.STATES]
        if unknown or not states:
            raise ProtocolViolation(f"state must be some of {', '.join(core.STATES)}", code="bad_state")
        if station is not None and self.registry.get(station) is None:
            raise NotFound(f"unknown station {station}")
        return [moderator_view(q) for q in await self.store.list(station, tuple(states), LIST_LIMIT)]

    async def moderate(self, question_id: str, action: str, actor: str, minutes: float | None = None) -> Question:
        """Apply ``action`` by ``actor`` (an operator's name, or ``station:<id>`` for a station
        listed in ``station_moderation``, on its own questions only)."""
        question = await self.store.get(question_id)
        if question is None:
            raise NotFound("no such question")
        self._may_moderate(actor, question.station)
        now = self.clock()
        changed = core.moderate(question, action, actor, now)
        detail = f"{question.station} {question.id}"
        ban_until = 0.0
        if action in ("ban", "timeout"):
            length = minutes if minutes is not None else (DEFAULT_BAN_MIN if action == "ban" else DEFAULT_TIMEOUT_MIN)
            if not isinstance(length, (int, float)) or isinstance(length, bool) or not 0 < length <= MAX_BAN_MIN:
                raise ProtocolViolation(f"minutes must be between 0 and {MAX_BAN_MIN:.0f}", code="bad_field")
            ban_until = now + length * 60
            detail += f" {length:g}min"
        await self.credentials.audit(now, actor, f"question.{action}", f"{detail} {question.text[:80]!r}")
        if ban_until:
            if question.device:
                await self.store.ban("device", question.device, ban_until)
            # The address only briefly: a mobile carrier puts a whole town behind a few.
            address_until = min(ban_until, now + self.settings.ban_address_s)
            if question.address and address_until > now:
                await self.store.ban("address", question.address, address_until)
        await self.store.update(changed)
        await self._publish(changed, public=core.concerns_public(question.state, changed.state))
        return changed

    async def set_slow_mode(self, station: str, seconds: float, actor: str) -> None:
        if self.registry.get(station) is None:
            raise NotFound(f"unknown station {station}")
        self._may_moderate(actor, station)
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool) or not 0 <= seconds <= MAX_SLOW_MODE_S:
            raise ProtocolViolation(f"seconds must be between 0 and {MAX_SLOW_MODE_S:.0f}", code="bad_field")
        await self.credentials.audit(self.clock(), actor, "question.slow_mode", f"{station} {seconds:g}s")
        await self.store.set_slow_mode(station, float(seconds))

    # Every node: the bus to this node's sockets

    async def run(self) -> None:
        subscription = self.bus.subscribe(CHANNEL)
        try:
            async for frame in subscription:
                try:
                    await self.deliver(frame)
                except Exception:
                    log.exception("question event not delivered")
        finally:
            self.bus.unsubscribe(subscription)

    async def deliver(self, frame: bytes) -> None:
        """Hand one published change to this node's watch sockets and station sockets."""
        event = wire.decode_msgpack(frame)
        view: dict[str, Any] = event["q"]
        public = bool(event.get("public"))
        station = self.registry.get(str(view.get("station")))
        public_message = wire.question(_public_of(view)) if public else None
        if self.watchers is not None:
            self._fan_out(station, wire.question(view), public_message)
        if public_message is not None and self.stations is not None and station is not None:
            for session in list(self.stations.sessions.values()):
                if session.station.id == station.id:
                    try:
                        await session.peer.send(public_message)
                    except Exception:
                        log.debug("question not sent to station %s: socket gone", station.id)

    def _fan_out(self, station: Station | None, operator_message: dict[str, Any],
                 public_message: dict[str, Any] | None) -> None:
        assert self.watchers is not None
        built: dict[tuple[bool, bool], Outgoing] = {}  # (operator, binary) → one frame for all
        public = public_message is not None and station is not None and station.public
        sent = 0
        for watcher in list(self.watchers.watchers):
            if not (watcher.operator or public):
                continue
            key = (watcher.operator, watcher.codec.binary)
            out = built.get(key)
            if out is None:
                message = operator_message if watcher.operator else public_message
                assert message is not None
                out = built[key] = Outgoing(watcher.codec.encode(message))
            watcher.push(out)
            sent += 1
        self.watchers.metrics.messages_out.inc(sent)

    # Helpers

    def _public_station(self, station_id: str) -> Station:
        """The station, if citizens may ask there; a private or unknown one is 404 alike."""
        station = self.registry.get(station_id)
        if station is None or not station.public:
            raise NotFound(f"unknown station {station_id}")
        if not self.settings.enabled:
            raise NotFound("questions are switched off", code="questions_off")
        return station

    def _may_moderate(self, actor: str, station: str) -> None:
        if actor.startswith("station:"):
            own = actor.removeprefix("station:")
            if own != station or own not in self.settings.station_moderation:
                raise Forbidden(f"{actor} may not moderate questions of {station}")

    def _activity(self, station: str) -> str:
        if self.watchers is None:
            return ""
        activity = self.watchers.view.get(station, {}).get("activity") or {}
        return str(activity.get("title") or "")

    async def _use_proof(self, station: str, given: Any, now: float) -> None:
        if not isinstance(given, dict):
            raise ProtocolViolation("a question needs a proof of work", code="proof")
        token, nonce = given.get("token"), given.get("nonce")
        if not isinstance(token, str) or not isinstance(nonce, str):
            raise ProtocolViolation("proof needs a token and a nonce", code="proof")
        expires = proof.verify(self.secret, token, nonce, station, now, self.settings.difficulty)
        # Once on this node, and once in the cluster (claim() is per key, cluster-wide).
        if not self.used.use(token, expires, now) or \
                not await self.presence.claim(f"question-proof:{token.rpartition('.')[2]}", expires - now):
            raise ProtocolViolation("proof token already used", code="proof")

    async def _limit(self, station: str, device: str, address: str, now: float) -> None:
        """Count the ask against every limit, or against none when one refuses it."""
        slow_s = await self.store.slow_mode(station)
        slow_s = self.settings.slow_mode_s if slow_s is None else slow_s
        slow_key = f"{station}\x00{device or address}"
        checks: list[tuple[SlidingLimiter, str, float | None, str]] = [
            (self.per_address, address, None, "rate_limited"),
            (self.per_device, device, None, "rate_limited")]
        if slow_s > 0:
            checks.append((self.slow, slow_key, slow_s, "slow_mode"))
        for limiter, key, window, code in checks:
            if not key:
                continue
            wait = limiter.retry_after(key, now, window)
            if wait:
                what = "slow mode: wait before asking again" if code == "slow_mode" else "too many questions"
                raise RateLimited(what, retry_after=wait, code=code)
        for limiter, key, window, _ in checks:
            if key:
                limiter.hit(key, now, window)

    async def _publish(self, question: Question, public: bool) -> None:
        await self.bus.publish(CHANNEL, wire.encode_msgpack(
            {"t": "question", "q": moderator_view(question), "public": public}))
