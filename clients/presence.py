"""The presence link: one WebSocket to ``/ws/station`` that never gives up.

Theory of operation
-------------------
``run`` loops forever: wait (jittered backoff, also before the very first attempt), read
the token file, connect with subprotocol ``jaga.v1.msgpack``, send ``hello``, expect
``welcome`` within ``connect_timeout_s``, then send ``hb`` every ``heartbeat_s`` (the hub's
value) while handing every hub message to ``on_message``. How the connection ended decides
the next wait (:func:`classify`):

==========================  ===========================================================
4401 not authenticated      ``rejected``: wait ``auth_retry_s`` (10 min), log what to do;
                            a change to the token file cuts the wait short
4409 replaced               another agent runs with this station id: back off, warn
1012 / 1001 hub restarting  restart: back off from attempt 0 (jittered), media restarts
refused / reset / timeout   back off; the attempt counter grows until a connection
                            stays up for ``stable_s``
TLS: certificate not        ``tls``: logged as an error saying what to fix (``ca_file``),
trusted, ``ca_file``        then backed off like an unreachable hub: the CA file or the
unreadable                  hub's certificate may be fixed while the agent runs
==========================  ===========================================================
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from clients import __version__, whip
from clients.backoff import BackoffPolicy, Uniform
from clients.config import StationConfig, StationConfigError
from jaga import wire
from jaga.errors import ProtocolViolation

log = logging.getLogger("jaga.station.presence")

WS_MAX_SIZE = wire.MAX_THUMB_FRAME + 1024
NOT_AUTHENTICATED = 4401
REPLACED = 4409
# A hub that stops says so: 1012 ("service restart", what uvicorn sends to every socket when
# `jaga-hub serve` stops, before the hub's own shutdown runs) or 1001 ("going away", which
# the protocol once documented, and which a proxy in front of the hub may send when it stops).
# Either way the hub is expected back, and its relay will have forgotten our WHIP session.
SERVICE_RESTART = 1012
GOING_AWAY = 1001
RESTART_CODES = (SERVICE_RESTART, GOING_AWAY)
TOKEN_POLL_S = 1.0


@dataclass(frozen=True)
class Outcome:
    """How one connection attempt ended."""

    kind: str  # "rejected" | "replaced" | "restart" | "lost" | "unreachable" | "tls" | "protocol" | "no_token"
    detail: str
    lasted_s: float = 0.0  # since welcome; 0 when there was none
    refused: bool = False  # TCP refused: nothing listens (the hub process is down)


def classify(code: int | None, reason: str, lasted_s: float) -> Outcome:
    if code == NOT_AUTHENTICATED:
        return Outcome("rejected", reason or "token rejected", lasted_s)
    if code == REPLACED:
        return Outcome("replaced", reason or "replaced by a newer connection", lasted_s)
    if code in RESTART_CODES:
        return Outcome("restart", reason or "hub shutting down", lasted_s)
    if code in (4400, 4429, 1009):
        return Outcome("protocol", f"closed {code}: {reason}", lasted_s)
    return Outcome("lost", f"closed {code}: {reason}" if code else "connection lost", lasted_s)


def next_delay(outcome: Outcome, attempt: int, policy: BackoffPolicy, rng: Uniform) -> tuple[float, int]:
    """(seconds to wait, attempt number to carry) after ``outcome`` of attempt ``attempt``."""
    if outcome.kind in ("rejected", "no_token"):
        return policy.auth_delay(rng), attempt + 1
    if outcome.kind == "restart":
        return policy.delay(0, rng), 1
    attempt = policy.after_connection(attempt, outcome.lasted_s)
    return policy.delay(attempt, rng), attempt


class PresenceLink:
    def __init__(self, config: StationConfig, policy: BackoffPolicy, rng: Uniform,
                 on_welcome: Callable[[dict[str, Any], float, float], None],
                 on_message: Callable[[dict[str, Any]], Awaitable[None]],
                 heartbeat: Callable[[], dict[str, Any]],
                 on_change: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.policy = policy
        self.rng = rng
        self.on_welcome = on_welcome
        self.on_message = on_message
        self.heartbeat = heartbeat
        self.on_change = on_change
        self.clock = clock
        self.state = "starting"  # starting | waiting | connecting | online | rejected
        self.last_error = ""
        self.last_outcome: Outcome | None = None
        self.attempts = 0  # connection attempts made (for tests and the status line)
        self.welcomes = 0
        self.next_attempt_in = 0.0
        self._ws: ClientConnection | None = None
        self.closing = False

    @property
    def online(self) -> bool:
        return self._ws is not None and self.state == "online"

    def _set(self, state: str) -> None:
        self.state = state
        self.on_change()

    async def send(self, message: dict[str, Any]) -> bool:
        """Send one message if connected; False (dropped) otherwise."""
        wire.validate(message, wire.STATION_MESSAGES)  # our own bug, caught before the hub sees it
        ws = self._ws
        if ws is None:
            return False
        try:
            await ws.send(wire.encode_msgpack(message))
            return True
        except ConnectionClosed:
            return False

    async def close(self) -> None:
        """Say goodbye (1000): the hub records a clean ``offline (closed)``, not a timeout."""
        ws, self._ws = self._ws, None
        self.closing = True
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(1000, "agent stopping"), 3)
            except (TimeoutError, ConnectionClosed, OSError):
                pass

    async def run(self) -> None:
        attempt = 0
        delay = self.policy.delay(0, self.rng)  # jitter even the first attempt: no stampede
        rejected_token: str | None = None
        while True:
            self.next_attempt_in = delay
            self._set("rejected" if rejected_token is not None else "waiting")
            await self._wait(delay, rejected_token)
            token: str | None = None
            try:
                token = self.config.read_token()
            except StationConfigError as exc:
                outcome = Outcome("no_token", str(exc))
            else:
                outcome = await self._attempt(token)
            self.last_outcome = outcome
            if self.closing:
                return
            rejected_token = token if outcome.kind in ("rejected", "no_token") else None
            self._report(outcome)
            delay, attempt = next_delay(outcome, attempt, self.policy, self.rng)

    async def _wait(self, delay: float, rejected_token: str | None) -> None:
        """Sleep ``delay``; when the token was rejected, wake early if the token file changes."""
        if rejected_token is None:
            await asyncio.sleep(delay)
            return
        deadline = time.monotonic() + delay
        while time.monotonic() < deadline:
            await asyncio.sleep(min(TOKEN_POLL_S, deadline - time.monotonic()))
            try:
                if self.config.read_token() != rejected_token:
                    log.info("token file changed: trying the new token now")
                    return
            except StationConfigError:
                continue

    def _report(self, outcome: Outcome) -> None:
        self.last_error = outcome.detail if outcome.kind != "restart" else ""
        config = self.config
        if outcome.kind == "rejected":
            log.error("the hub rejected the token for station %s (%s). Ask the Pendopo admin for a new "
                      "token (jaga-hub stations token %s) and write it into %s; retrying in about %.0f min "
                      "or as soon as that file changes", config.station, outcome.detail, config.station,
                      config.token_path, self.policy.auth_retry_s / 60)
        elif outcome.kind == "no_token":
            log.error("%s. Put this station's token (from `jaga-hub stations token %s`) in that file",
                      outcome.detail, config.station)
        elif outcome.kind == "replaced":
            log.warning("another agent connected as station %s and replaced this one: is jaga-station "
                        "running twice, or is the same station id configured on two PCs?", config.station)
        elif outcome.kind == "restart":
            log.info("hub is restarting; reconnecting")
        elif outcome.kind == "tls":
            log.error("presence connection: %s", outcome.detail)
        else:
            log.warning("presence connection: %s", outcome.detail)

    async def _attempt(self, token: str) -> Outcome:
        self.attempts += 1
        self._set("connecting")
        config = self.config
        timeout = config.network.connect_timeout_s
        welcomed_at: float | None = None
        try:
            tls = config.tls_context()  # None: the system's CAs (wss://), or no TLS (ws://)
        except StationConfigError as exc:
            return Outcome("tls", str(exc))
        tls_options: dict[str, Any] = {"ssl": tls} if tls is not None else {}  # ws:// refuses any ssl=
        try:
            async with connect(config.ws_url, subprotocols=[Subprotocol(wire.MSGPACK)],
                               open_timeout=timeout, close_timeout=2, max_size=WS_MAX_SIZE,
                               ping_interval=10, ping_timeout=10,
                               user_agent_header=f"jaga-station/{__version__}", **tls_options) as ws:
                sent_at = self.clock()
                await ws.send(wire.encode_msgpack({"t": "hello", "station": config.station, "token": token,
                                                   "agent": "jaga-station", "version": __version__}))
                first = _decode(await asyncio.wait_for(ws.recv(), timeout))
                if first.get("t") != "welcome":
                    detail = first.get("message") or f"expected welcome, got {first.get('t')!r}"
                    await asyncio.wait_for(ws.wait_closed(), timeout)
                    return classify(ws.close_code, str(detail), 0.0)
                welcomed_at = time.monotonic()
                self.welcomes += 1
                self.on_welcome(first, sent_at, self.clock())
                self._ws = ws
                self._set("online")
                log.info("online: connected to %s as %s", config.ws_url, config.station)
                beats = asyncio.create_task(self._heartbeats(ws, float(first.get("heartbeat_s") or 5.0)))
                try:
                    async for frame in ws:
                        try:
                            await self.on_message(_decode(frame))
                        except ProtocolViolation as exc:
                            log.warning("ignored a malformed message from the hub: %s", exc)
                finally:
                    beats.cancel()
                    self._ws = None
                return classify(ws.close_code, ws.close_reason or "", _since(welcomed_at))
        except ConnectionClosed as exc:
            self._ws = None
            code = exc.rcvd.code if exc.rcvd else None
            return classify(code, exc.rcvd.reason if exc.rcvd else "", _since(welcomed_at))
        except ssl.SSLCertVerificationError as exc:
            self._ws = None
            return Outcome("tls", f"{config.ws_url}: {whip.untrusted_certificate(exc, tls is not None)}")
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ProtocolViolation) as exc:
            self._ws = None
            refused = isinstance(exc, ConnectionRefusedError) or "refused" in str(exc).lower()
            return Outcome("unreachable", f"{config.ws_url}: {type(exc).__name__}: {exc}", _since(welcomed_at),
                           refused=refused)
        finally:
            if self.state == "online":
                self._set("waiting")

    async def _heartbeats(self, ws: ClientConnection, every: float) -> None:
        while True:
            try:
                await ws.send(wire.encode_msgpack({"t": "hb", **self.heartbeat()}))
            except ConnectionClosed:
                return
            await asyncio.sleep(every)  # the hub's heartbeat cadence


def _since(started: float | None) -> float:
    return 0.0 if started is None else time.monotonic() - started


def _decode(frame: bytes | str) -> dict[str, Any]:
    message = wire.decode_msgpack(frame)
    if not isinstance(message, dict) or not isinstance(message.get("t"), str):
        raise ProtocolViolation("message without a type key 't'", code="malformed")
    return message
