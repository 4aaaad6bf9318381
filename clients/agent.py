"""The station agent: presence, office hours, media, thumbnails, talk-back, control.

Theory of operation
-------------------
Five long-lived tasks share one small state (this class), each simple on its own:

- ``presence`` (:class:`~clients.presence.PresenceLink`): the WebSocket, forever. Each
  ``welcome`` updates the server clock offset and the office hours.
- ``hours``: decides *on air* = ``--always-on`` or inside today's window by the hub's clock;
  sleeps until the next window edge (at most a minute, so a corrected clock is noticed) or
  until a new ``welcome``. Going on air starts the sources; going off air stops them (the
  camera light goes off outside office hours).
- ``media``: while on air, keeps one WHIP session up; retries with jittered backoff; ends
  it (DELETE) when off air. A ``welcome`` after the hub restarted (1012/1001, or TCP refused)
  restarts the session at once, since the hub's relay forgot it. While a session is up, its
  quality loop (:mod:`clients.adapt`) measures the link once a second and moves between the
  quality levels of :mod:`clients.quality` (down to audio only on a weak uplink); a new
  session starts at the level the last one had settled on, and a new day at the top.
- ``thumbs``: while on air, the first JPEG as soon as a frame exists, then every
  ``thumbnail_s``; one more right after each (re)connection.
- ``status``: the one-line status on a console, and every minute in the log.

Hub messages: ``announce`` (logged and shown), ``talk.start``/``talk.stop`` (WHEP-view the
Pendopo and play it), ``question`` (a citizen's question of this station, approved or changed:
kept on the board of :mod:`clients.questions`, shown on the page at 127.0.0.1:``questions_port``
and printed once when newly approved; every welcome reloads the hub's list; it also wakes
the poll of the moderation queue, :mod:`clients.moderation`, where the hub lets this office
moderate from that page), ``error``
(logged). Nothing here blocks the event loop for long: device opening, JPEG encoding and
HTTP run in worker threads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
import time
from collections.abc import Callable
from typing import Any
from zoneinfo import ZoneInfo

from aiortc import RTCIceServer

from clients import adapt, control, ice, moderation, publisher, questions, talkback, whip
from clients.backoff import BackoffPolicy, Uniform, retry_after_delay
from clients.config import StationConfig, StationConfigError
from clients.hours import OfficeHours, ServerClock, wants_media
from clients.presence import PresenceLink
from clients.quality import Change, Level, QualityController, QualityPolicy, ladder
from clients.quality_track import LevelledVideo
from clients.rtc import RateControl
from clients.sources import StationAudio, StationVideo
from clients.tee import Tee
from clients.thumbs import thumbnail

log = logging.getLogger("jaga.station")
console = logging.getLogger("jaga.station.console")  # announcements, also printed on the console
status_log = logging.getLogger("jaga.station.status")  # the status line every minute; the file, if any, only

MAX_EDGE_SLEEP_S = 60.0


def policy_from(config: StationConfig) -> BackoffPolicy:
    net = config.network
    return BackoffPolicy(net.backoff_base_s, net.backoff_cap_s, net.stable_s, net.auth_retry_s)


class Agent:
    def __init__(self, config: StationConfig, rng: Uniform | None = None,
                 clock: Callable[[], float] = time.time, quality_policy: QualityPolicy | None = None,
                 signal_filter: adapt.SignalFilter | None = None) -> None:
        """``quality_policy`` and ``signal_filter`` are for tests: the quality controller's
        times, and a function every tick's measured link signals pass through."""
        self.config = config
        self.rng = rng or random.Random()
        self.clock = clock
        self.policy = policy_from(config)
        self.server_clock = ServerClock()
        self.ice = ice.HubIceServers()  # the hub's STUN/TURN servers, from each welcome (TURN credentials)
        self.hours: OfficeHours | None = None
        self.presence = PresenceLink(config, self.policy, self.rng, self._on_welcome, self._on_message,
                                     self._heartbeat_fields, self._changed, clock)
        self.on_air = asyncio.Event()
        self.off_air = asyncio.Event()
        self.off_air.set()
        self.media_state = "off"  # off | connecting | live | waiting
        self.media_error = ""
        self.activity: str | None = None
        self.announcements: list[str] = []
        self.talking = False
        self.thumbs_sent = 0
        self.live_since: float | None = None
        self.started_at = time.monotonic()
        self.video: Tee | None = None
        self.audio: Tee | None = None
        self.session: publisher.MediaSession | None = None
        video = config.video
        self.levels = ladder(video.width, video.height, video.fps, video.bitrate_kbps * 1000)
        self.quality_policy = quality_policy or QualityPolicy()
        self.signal_filter = signal_filter
        self.adapter: adapt.QualityAdapter | None = None  # while a session is up and video.adaptive
        self._quality_start = 0  # the level index the next session starts at
        self._wake_hours = asyncio.Event()
        self._restart_media = asyncio.Event()
        self._thumb_now = asyncio.Event()
        self._change = asyncio.Event()
        self._talk_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._presence_task: asyncio.Task[None] | None = None
        self.welcomed = asyncio.Event()  # set by the first welcome
        self._control: asyncio.Server | None = None
        self.questions = questions.QuestionBoard()
        self.questions_port: int | None = None  # the page's port once it listens
        self._questions_page: asyncio.Server | None = None
        self._questions_load: asyncio.Task[None] | None = None
        self.moderation = moderation.ModerationQueue()
        self._moderation_wake = asyncio.Event()  # a question event or the page's action: poll now
        self._reannounce: asyncio.Task[bool] | None = None  # the kegiatan, again after a welcome
        self._welcome_seen = asyncio.Event()  # set by every welcome: ask again whether we moderate

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        config = self.config
        log.info("jaga-station for %s → %s (source %s, %s)", config.station, config.hub, config.source,
                 "always on" if config.always_on else "office hours")
        if config.control_port:
            self._control = await control.serve(config.control_port, self._control_command)
        if config.questions_port:
            self._questions_page = await questions.serve(config.questions_port, self._questions_state,
                                                         act=self._moderate)
            if self._questions_page is not None:
                self.questions_port = questions.bound_port(self._questions_page)
                log.info("pertanyaan warga: http://127.0.0.1:%d/", self.questions_port)
        self._presence_task = asyncio.create_task(self.presence.run())
        jobs = [self._hours_loop(), self._status_loop()]
        if config.media:
            jobs += [self._media_loop(), self._thumb_loop()]
        if self._questions_page is not None:
            jobs.append(self._moderation_loop())
        self._tasks = [self._presence_task, *(asyncio.create_task(job) for job in jobs)]

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.gather(*self._tasks)
        finally:
            await self.stop()

    async def stop(self) -> None:
        """Media first (DELETE), then a clean WebSocket close: the hub logs live → online → offline."""
        log.info("stopping")
        talk = [self._talk_task] if self._talk_task else []
        talk += [self._questions_load] if self._questions_load else []
        others = [t for t in self._tasks if t is not self._presence_task]
        for task in [*others, *talk]:
            task.cancel()
        await asyncio.gather(*others, *talk, return_exceptions=True)
        if self.session is not None:
            await self.session.close()
            self.session = None
        await self._stop_sources()
        await self.presence.close()
        if self._presence_task is not None:
            self._presence_task.cancel()
            await asyncio.gather(self._presence_task, return_exceptions=True)
        self._tasks = []
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._questions_page is not None:
            self._questions_page.close()
            self._questions_page = None

    # --- state for tests and the status line -----------------------------------------------

    def _changed(self) -> None:
        self._change.set()
        self._change = asyncio.Event()

    async def wait_until(self, predicate: Callable[[Agent], bool], timeout: float | None) -> None:
        """Wait (event-driven) until ``predicate(self)`` holds; TimeoutError after ``timeout``."""
        async def watch() -> None:
            while not predicate(self):
                await self._change.wait()

        await asyncio.wait_for(watch(), timeout)

    @property
    def state(self) -> str:
        if self.presence.state == "rejected":
            return "token-rejected"
        if self.media_state == "live":
            return "live"
        if self.presence.online:
            return "online" if self.on_air.is_set() or self.config.always_on else "off-hours"
        return "offline"

    def status(self) -> dict[str, Any]:
        session = self.session
        return {
            "station": self.config.station, "state": self.state, "presence": self.presence.state,
            "media": self.media_state, "uptime_s": round(time.monotonic() - self.started_at, 1),
            "bitrate_bps": round(session.bitrate_bps) if session else 0,
            "camera": self.camera_status, "activity": self.activity,
            "clock_offset_s": round(self.server_clock.offset, 3) if self.server_clock.known else None,
            "last_error": self.media_error or self.presence.last_error,
            "questions": len(self.questions),
            "questions_url": f"http://127.0.0.1:{self.questions_port}/" if self.questions_port else None,
            "quality": self.quality.name if self.quality else None,
            "quality_detail": self.quality.describe() if self.quality else None,
        }

    def status_line(self) -> str:
        s = self.status()
        uptime = int(s["uptime_s"])
        return (f"[{s['station']}] {s['state'].upper()} | up {uptime // 3600}h{uptime % 3600 // 60:02d}m"
                f" | {s['bitrate_bps'] / 1000:.0f} kbps"
                + (f" | {self.quality.name} {self.quality.picture()}" if self.quality else "")
                + f" | camera {s['camera']}"
                + (f" | kegiatan: {s['activity']}" if s["activity"] else "")
                + (f" | last error: {s['last_error'][:80]}" if s["last_error"] else ""))

    @property
    def camera_status(self) -> str:
        if not self.config.media:
            return "off"
        if self.video is None:
            return "off"  # outside office hours the camera is closed
        source = self.video.source
        return source.camera_status if isinstance(source, StationVideo) else "ok"

    @property
    def quality(self) -> Level | None:
        """The quality level being sent, while a media session is up."""
        if self.session is None:
            return None
        return self.adapter.level if self.adapter is not None else self.levels[0]

    def _heartbeat_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"camera": self.camera_status}
        if self.session is not None:
            fields["bitrate"] = round(self.session.bitrate_bps)
        if self.quality is not None:
            fields["quality"] = self.quality.name
        return fields

    # --- hub messages ---------------------------------------------------------------------

    def _on_welcome(self, welcome: dict[str, Any], sent_at: float, received_at: float) -> None:
        offset = self.server_clock.update(float(welcome["server_time"]), sent_at, received_at)
        self.ice.welcome(welcome.get("ice_servers"))
        if abs(offset) > 60:
            log.warning("this PC's clock is off by %.0f s from the hub; following the hub's time "
                        "(fix the clock: Windows → Date & time → Sync now)", offset)
        try:
            self.hours = OfficeHours.from_welcome(welcome.get("schedule") or {})
            log.info("office hours today: %s", self.hours.describe_today(self.server_clock.server_now(received_at)))
        except ValueError as exc:
            log.error("%s; keeping the previous schedule", exc)
        outcome = self.presence.last_outcome
        if outcome is not None and (outcome.kind == "restart" or outcome.refused) and self.session is not None:
            self._restart_media.set()  # the hub restarted: its relay no longer has our session
        self.welcomed.set()
        self._wake_hours.set()
        self._thumb_now.set()
        self._welcome_seen.set()
        self._load_questions()
        if self.activity is not None:
            # A restarted hub forgot the kegiatan; one that kept it ignores the same title again.
            # Either way its recording continues instead of ending after recording.resume_s.
            self._reannounce = asyncio.create_task(self._send_activity(self.activity))

    async def _on_message(self, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "announce":
            text = str(message.get("text", ""))
            self.announcements.append(text)
            console.warning("PENGUMUMAN dari %s: %s", message.get("from") or "Pendopo", text)
        elif kind == "talk.start":
            self._start_talk()
        elif kind == "talk.stop":
            await self._stop_talk()
        elif kind == "question":
            newly = self.questions.apply(message.get("q"))
            if newly is not None:
                self._tell_question(newly)
            self._moderation_wake.set()  # it may have left the queue (moderated on the wall)
        elif kind == "error" and message.get("code") == "thumb_dropped":
            # Our extra thumbnail right after a reconnection can come sooner than the hub takes
            # them; the next one on the period is taken. Nothing for a person to do.
            log.info("hub dropped a thumbnail: %s", message.get("message"))
        elif kind == "error":
            log.error("hub error %s: %s", message.get("code"), message.get("message"))
        elif kind != "pong":
            log.debug("ignored hub message %s", kind)
        self._changed()

    # --- citizens' questions ----------------------------------------------------------------

    def _tell_question(self, question: questions.ShownQuestion) -> None:
        console.info("Pertanyaan warga: %s — %s", questions.printable(question.text),
                     questions.printable(question.who))

    def _questions_state(self) -> dict[str, Any]:
        return {"station": self.config.station, "online": self.presence.online, "questions": self.questions.views(),
                "moderation": self.moderation.view()}

    async def _moderation_loop(self) -> None:
        """Whether this office moderates, and its pending questions (see :mod:`clients.moderation`)."""
        while True:
            await self.wait_until(lambda a: a.presence.online, None)
            self._welcome_seen.clear()
            self._moderation_wake.clear()
            await moderation.poll(self.config, self.moderation)
            self._changed()
            if self.moderation.enabled is False:
                await self._welcome_seen.wait()  # the hub's settings change only with a restart
                continue
            try:
                await asyncio.wait_for(self._moderation_wake.wait(), moderation.POLL_S)
            except TimeoutError:
                pass

    async def _moderate(self, question_id: str, action: str) -> tuple[int, dict[str, Any]]:
        """A decision from the page's buttons, forwarded with this station's token."""
        status, answer = await moderation.forward(self.config, self.moderation, question_id, action)
        self._moderation_wake.set()
        self._changed()
        return status, answer

    def _load_questions(self) -> None:
        """After each welcome: the hub's list, since events only carry what changed while connected."""
        if self._questions_load is not None:
            self._questions_load.cancel()
        self._questions_load = asyncio.create_task(self._fetch_questions())

    async def _fetch_questions(self) -> None:
        since = self.questions.version
        url = self.config.http_url(f"/api/v1/stations/{self.config.station}/questions")
        try:
            status, body = await whip.get(url, self.config.network.connect_timeout_s, context=self.config.tls_context())
        except whip.MediaHttpError as exc:
            log.warning("questions not loaded: %s", exc)
            return
        if status != 200:  # a hub without questions, or a private station: events still come
            log.info("questions not loaded: %s answered HTTP %d", url, status)
            return
        try:
            views = json.loads(body)["questions"]
            if not isinstance(views, list):
                raise TypeError("questions is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("questions not loaded: unexpected answer from %s (%s)", url, exc)
            return
        for question in self.questions.load(views, since):
            self._tell_question(question)
        self._changed()

    def _start_talk(self) -> None:
        if self._talk_task is not None and not self._talk_task.done():
            return
        log.info("talk-back: the Pendopo is speaking")
        self.talking = True

        async def talk() -> None:
            try:
                await talkback.play_pendopo(self.config, self.config.read_token(), await self._ice_servers())
            except (whip.MediaHttpError, ConnectionError, StationConfigError, OSError) as exc:
                log.warning("talk-back failed: %s", exc)
            finally:
                self.talking = False
                self._changed()

        self._talk_task = asyncio.create_task(talk())

    async def _stop_talk(self) -> None:
        task, self._talk_task = self._talk_task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            log.info("talk-back: the Pendopo stopped speaking")

    async def _control_command(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request.get("cmd")
        if command == "status":
            return {"ok": True, "status": self.status()}
        if command == "activity.start":
            title = str(request.get("title") or "").strip()
            if not title:
                return {"ok": False, "error": "title is empty"}
            self.activity = title
            sent = await self._send_activity(title)
            log.info("kegiatan dimulai: %s", title)
            return {"ok": True, "sent": sent, **({} if sent else {"note": "not connected; announced on connect"})}
        if command == "activity.stop":
            self.activity = None
            sent = await self.presence.send({"t": "activity.stop"})
            log.info("kegiatan selesai")
            return {"ok": True, "sent": sent}
        return {"ok": False, "error": f"unknown command {command!r}"}

    async def _send_activity(self, title: str) -> bool:
        return await self.presence.send({"t": "activity.start", "title": title[:500]})

    # --- office hours ---------------------------------------------------------------------

    def wants_media(self) -> bool:
        now = self.server_clock.server_now(self.clock())
        return self.config.media and wants_media(self.hours, now, self.config.always_on)

    async def _hours_loop(self) -> None:
        while True:
            want = self.wants_media()
            if want and not self.on_air.is_set():
                log.info("going on air (%s)", "always on" if self.config.always_on else "office hours")
                await self._start_sources()
                self.off_air.clear()
                self.on_air.set()
                self._changed()
            elif not want and self.on_air.is_set():
                log.info("going off air (office hours ended)")
                self.on_air.clear()
                self.off_air.set()
                self._changed()
            sleep = MAX_EDGE_SLEEP_S
            if self.hours is not None and not self.config.always_on:
                now = self.server_clock.server_now(self.clock())
                sleep = max(0.05, min(sleep, self.hours.next_edge(now) - now))
            self._wake_hours.clear()
            try:
                await asyncio.wait_for(self._wake_hours.wait(), sleep)
            except TimeoutError:
                pass

    async def _start_sources(self) -> None:
        if self.video is not None:
            return
        video = StationVideo(self.config, self.config.station, now=lambda: self.server_clock.server_now(self.clock()),
                             timezone=lambda: ZoneInfo(self.hours.timezone) if self.hours else None)
        self.video = Tee(video)
        self.video.start()
        if self.config.audio.enabled:
            self.audio = Tee(StationAudio(self.config))
            self.audio.start()

    async def _stop_sources(self) -> None:
        for tee in (self.video, self.audio):
            if tee is not None:
                await tee.stop()
        self.video = self.audio = None

    # --- media ----------------------------------------------------------------------------

    async def _media_loop(self) -> None:
        attempt = 0
        while True:
            await self.on_air.wait()
            # New sessions only while the presence link is up, so the hub sees online before
            # live; a session that is already up survives a presence outage.
            await self.wait_until(lambda a: a.presence.online or a.off_air.is_set(), None)
            if self.off_air.is_set():
                continue
            self._restart_media.clear()
            delay = await self._publish_once(attempt)
            if delay is None:
                attempt = 0
                delay = self.policy.delay(0, self.rng)
            else:
                attempt += 1
            if not self.on_air.is_set():
                await self._stop_sources()
                self._set_media("off")
                attempt = 0
                self._quality_start = 0  # a new day starts at the top
                continue
            self._set_media("waiting")
            try:
                await asyncio.wait_for(self.off_air.wait(), delay)
            except TimeoutError:
                pass

    def _set_media(self, state: str, error: str | None = None) -> None:
        self.media_state = state
        if error is not None:
            self.media_error = error
        self._changed()

    async def _publish_once(self, attempt: int) -> float | None:
        """One WHIP session, start to end. The delay before the next, or None for "stable"."""
        assert self.video is not None
        self._set_media("connecting")
        video_track = LevelledVideo(self.video.subscribe(), self.levels[self._quality_start])
        audio_track = self.audio.subscribe() if self.audio else None
        rate = publisher.rate_control(self.config)
        adapter = self._quality_adapter(video_track, rate)
        try:
            token = self.config.read_token()
            self.session = await publisher.publish(self.config, token, video_track, audio_track, rate,
                                                   await self._ice_servers(attempt))
        except StationConfigError as exc:
            self._set_media("waiting", str(exc))
            return self.policy.auth_delay(self.rng)
        except whip.HttpError as exc:
            self._set_media("waiting", f"WHIP {exc}")
            return self._http_delay(exc, attempt)
        except (whip.Unreachable, ConnectionError, OSError, ValueError) as exc:
            log.warning("media: %s", exc)
            self._set_media("waiting", f"media: {exc}")
            return self.policy.delay(attempt, self.rng)
        finally:
            if self.session is None:
                video_track.stop()
                if audio_track:
                    audio_track.stop()
        session = self.session
        self.live_since = time.monotonic()
        self.adapter = adapter
        adapting = asyncio.create_task(adapter.run(session.pc)) if adapter is not None else None
        self._set_media("live", "")
        log.info("live: publishing %dx%d@%d %s ≤%d kbps to %s, %s", self.config.video.width, self.config.video.height,
                 self.config.video.fps, self.config.video.codec, self.config.video.bitrate_kbps, session.location,
                 f"starting at {adapter.level.describe()}" if adapter else "fixed quality (video.adaptive = false)")
        waiters = {asyncio.ensure_future(e.wait()) for e in (session.ended, self.off_air, self._restart_media)}
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            if adapting is not None:
                adapting.cancel()
                await asyncio.gather(adapting, return_exceptions=True)
            if adapter is not None:
                self._quality_start = adapter.controller.settled_index
            self.adapter = None
            lasted = time.monotonic() - self.live_since
            restarted = self._restart_media.is_set()
            task = asyncio.current_task()
            why = ("agent stopping" if task is not None and task.cancelling() else "off air" if self.off_air.is_set()
                   else "hub restarted" if restarted else f"connection {session.state}")
            log.info("media session ended after %.0f s (%s)", lasted, why)
            await session.close(delete=not session.ended.is_set())
            self.session = None
            self.live_since = None
            video_track.stop()
            if audio_track:
                audio_track.stop()
        if not self.off_air.is_set() and not restarted:
            self.media_error = f"media connection {session.state}"
        return None if lasted >= self.policy.stable_s or restarted else self.policy.delay(attempt, self.rng)

    async def _ice_servers(self, attempt: int = 0) -> list[RTCIceServer]:
        """A new session's ICE servers: this station's own and the hub's, TURN credentials
        fresh; ``attempt`` (failures in a row) picks which TURN URL aiortc uses (clients/ice.py)."""
        hubs = await self.ice.current(self.config, self.server_clock.server_now(self.clock()))
        return ice.arrange(self.config.network.ice_servers, hubs, attempt)

    def _quality_adapter(self, track: LevelledVideo, rate: RateControl) -> adapt.QualityAdapter | None:
        """The session's quality loop, set to its first level (before the encoder exists)."""
        if not self.config.video.adaptive:
            return None
        controller = QualityController(self.levels, self.config.audio.bitrate_kbps * 1000 if self.audio else 0,
                                       self.quality_policy, start=self._quality_start, now=time.monotonic())
        return adapt.QualityAdapter(controller, track, rate, signal_filter=self.signal_filter,
                                    on_change=self._quality_changed)

    def _quality_changed(self, change: Change) -> None:
        self._changed()

    def _http_delay(self, exc: whip.HttpError, attempt: int) -> float:
        if exc.status in (401, 403):
            log.error("WHIP publish refused (%s): the token for %s is not accepted for media; ask the "
                      "Pendopo admin for a new token and write it into %s", exc, self.config.station,
                      self.config.token_path)
            return self.policy.auth_delay(self.rng)
        if exc.retry_after is not None:
            log.warning("WHIP: hub busy (%s); retrying after %.0f s", exc, exc.retry_after)
            return retry_after_delay(exc.retry_after, self.policy, self.rng)
        log.warning("WHIP publish failed: %s", exc)
        return self.policy.delay(attempt, self.rng)

    # --- thumbnails -----------------------------------------------------------------------

    async def _thumb_loop(self) -> None:
        while True:
            await self.on_air.wait()
            tee = self.video
            if tee is None:
                await asyncio.sleep(0.05)  # sources are being started by the hours loop
                continue
            first = asyncio.ensure_future(tee.first_frame.wait())
            off = asyncio.ensure_future(self.off_air.wait())
            await asyncio.wait({first, off}, return_when=asyncio.FIRST_COMPLETED)
            first.cancel()
            off.cancel()
            if self.off_air.is_set() or tee.latest is None:
                continue
            self._thumb_now.clear()
            try:
                jpeg = await asyncio.to_thread(thumbnail, tee.latest)
                if await self.presence.send({"t": "thumb", "jpeg": jpeg}):
                    self.thumbs_sent += 1
                    self._changed()
            except Exception:
                log.exception("thumbnail failed")
            try:
                await asyncio.wait_for(self._thumb_now.wait(), self.config.thumbnail_s)
            except TimeoutError:
                pass

    # --- status ---------------------------------------------------------------------------

    async def _status_loop(self) -> None:
        tty = sys.stderr.isatty()
        last_logged = 0.0
        while True:
            if self.session is not None:
                await self.session.measure()
            line = self.status_line()
            if tty:
                print("\r" + line.ljust(110)[:160], end="", file=sys.stderr, flush=True)
            if time.monotonic() - last_logged >= 60:
                status_log.info("status: %s", line)
                last_logged = time.monotonic()
            await asyncio.sleep(self.config.status_s)  # refresh cadence
