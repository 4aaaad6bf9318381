"""Recordings: each kegiatan's media kept on disk by remux, indexed, finished, pruned.

The rules are :mod:`hub.core.recording_policy`; this service keeps the facts it needs per
station (the running activity, whether its stream is live here, an operator's override),
asks :func:`~hub.core.recording_policy.decide` after every change, and does what it says
with a recorder (:mod:`hub.media.recorder`, behind the :class:`RecorderKit` seam) and the
index (:class:`~hub.backends.base.RecordingStore`).

Order of work. The stations service reports activities and publishing through
:meth:`RecordingsService.notify_activity` / :meth:`notify_publishing`, which only queue the
change (presence never waits on a disk); :meth:`run` applies them in order. Tests call
:meth:`activity_changed` / :meth:`publishing_changed` directly. Finishing (remuxing the parts
into one file) runs in one worker thread, never on the event loop; the index says
``finishing`` meanwhile, so a crash half-way finishes it again at the next start.

Restarts. At :meth:`start` the index's open recordings whose parts are on this node's disk
are either kept for ``resume_s`` after their last part was written (the station announcing
the same activity title continues them in a new part) or finished at once; :meth:`tick`
finishes those nobody claimed. A clean :meth:`stop` closes the parts and leaves the
recordings open, so a restart (a deploy) can continue them as well.

The hub's timer calls :meth:`tick`: the disk floor (``shutil.disk_usage`` of ``dir``), the
publisher-away deadline, left recordings, and once an hour retention.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import logging
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from hub.backends.base import CredentialStore, Recording, RecordingStore
from hub.core import recording_policy as policy
from hub.core.recording_policy import Action, ActivityKey, DiskFloor, FloorChange, Held, StationFacts
from hub.core.registry import Registry
from hub.errors import JagaError, NotFound, ProtocolViolation
from hub.settings import RecordingSettings

log = logging.getLogger("jaga.recordings")

DISK_CHECK_EVERY_S = 5.0
RETENTION_EVERY_S = 3600.0
RETENTION_BATCH = 500
RETRY_AFTER_ERROR_S = 30.0  # a part that failed to write: the next one not sooner
QUEUE_SIZE = 10_000  # activity and publishing changes waiting for run(); beyond, dropped (logged)
STOP_WAIT_S = 30.0  # how long a stopping hub waits for files being finished
OPERATOR_TITLE = "Rekaman operator"  # the title of a Rekam without an activity
# One remux at a time, process-wide: it copies packets (I/O-bound) and must not take every
# core from the relay.
FINISH_WORKER = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="recording-finish")


class Recorder(Protocol):
    def start(self) -> None: ...
    def stop(self) -> float: ...
    @property
    def cpu_s(self) -> float: ...  # CPU its batches took so far (frames assembled, written)


class Finished(Protocol):
    @property
    def path(self) -> Path: ...
    @property
    def duration_s(self) -> float: ...
    @property
    def bytes(self) -> int: ...
    @property
    def video_codec(self) -> str: ...
    @property
    def audio_codec(self) -> str: ...


class RecorderKit(Protocol):
    """The seam to :mod:`hub.media.recorder` (tests give a fake)."""

    def recorder(self, stream: Any, part_path: Path, start_time_s: float,
                 on_error: Callable[[Exception], None]) -> Recorder: ...
    def finish(self, parts: list[Path], out: Path) -> Finished: ...


class MediaRecorders:
    """The real kit: :class:`hub.media.recorder.StreamRecorder` and ``finish``."""

    def recorder(self, stream: Any, part_path: Path, start_time_s: float,
                 on_error: Callable[[Exception], None]) -> Recorder:
        from hub.media.recorder import StreamRecorder

        return StreamRecorder(stream, part_path, start_time_s, on_error)

    def finish(self, parts: list[Path], out: Path) -> Finished:
        from hub.media.recorder import finish

        return finish(parts, out)


@dataclass
class OpenRecording:
    """A recording this node holds open."""

    recording: Recording
    key: ActivityKey | None
    extension: str  # ".webm" | ".mp4": every part and the finished file
    recorder: Recorder | None = None
    part: Path | None = None
    away_since: float | None = None  # the publisher left (None: here)
    retry_at: float = 0.0  # after a write error, no new part before this


def extension_for(codecs: dict[str, str]) -> str:
    return ".mp4" if "h264" in codecs.get("video", "").lower() else ".webm"


def _extension(recording: Recording) -> str:
    return Path(recording.parts[0]).suffix if recording.parts else ".webm"


class RecordingsService:
    def __init__(self, settings: RecordingSettings, root: Path, registry: Registry, store: RecordingStore,
                 audit: CredentialStore, streams: Callable[[str], Any | None], *, kit: RecorderKit | None = None,
                 timezone: str = "Asia/Jakarta", clock: Callable[[], float] = time.time,
                 shared: bool = False) -> None:
        self.settings = settings
        self.root = root
        self.registry = registry
        self.store = store
        self.audit = audit
        self.streams = streams  # station → its live stream on this node, or None
        self.kit: RecorderKit = kit or MediaRecorders()
        self.zone = ZoneInfo(timezone)
        self.clock = clock
        self.shared = shared  # the index is shared with other nodes (each keeps its own files)
        self.floor = DiskFloor(settings.min_free_bytes)
        self.activities: dict[str, ActivityKey] = {}
        self.live: set[str] = set()
        self.overrides: dict[str, tuple[bool, str]] = {}  # station → (Rekam or stop, by whom)
        self.open: dict[str, OpenRecording] = {}
        self.left: dict[str, tuple[Recording, float]] = {}  # station → (left open by a crash, last written)
        self.errors = 0
        self.bytes_written = 0  # closed parts; live parts are added at scrape time
        self.cpu_s = 0.0  # the same for the recorders' own CPU
        self._finishing: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[tuple[str, str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self._next_disk_check = 0.0
        self._next_retention = 0.0
        self._stopped = False

    # --- events (from the stations service) ------------------------------------------------

    def notify_activity(self, station_id: str, activity: dict[str, Any] | None) -> None:
        self._enqueue(("activity", station_id, activity))

    def notify_publishing(self, station_id: str, active: bool) -> None:
        self._enqueue(("publishing", station_id, active))

    def _enqueue(self, change: tuple[str, str, Any]) -> None:
        try:
            self._queue.put_nowait(change)
        except asyncio.QueueFull:
            self.errors += 1
            log.error("recording changes queue full: dropped %s of %s", change[0], change[1])

    async def run(self) -> None:
        """Apply queued changes in order, for as long as the hub runs."""
        while True:
            kind, station_id, value = await self._queue.get()
            try:
                if kind == "activity":
                    await self.activity_changed(station_id, value)
                else:
                    await self.publishing_changed(station_id, value)
            except Exception:
                self.errors += 1
                log.exception("recording %s change of %s failed", kind, station_id)
            finally:
                self._queue.task_done()

    async def settled(self) -> None:
        """Until every queued change has been applied (tests, shutdown)."""
        await self._queue.join()

    async def activity_changed(self, station_id: str, activity: dict[str, Any] | None) -> None:
        self.overrides.pop(station_id, None)  # an operator's Rekam/stop lasts until the activity changes
        if activity is None:
            self.activities.pop(station_id, None)
        else:
            key = ActivityKey(str(activity["title"]), float(activity["since"]))
            self.activities[station_id] = key
            await self._claim_left(station_id, key)
        await self._reconcile(station_id)

    async def publishing_changed(self, station_id: str, active: bool) -> None:
        held = self.open.get(station_id)
        if active:
            self.live.add(station_id)
            if held is not None:
                held.away_since = None
                if held.recorder is not None:  # a new stream: the old part's tap is gone with the old one
                    self._close_part(held)
        else:
            self.live.discard(station_id)
            if held is not None and held.away_since is None:
                held.away_since = self.clock()
        await self._reconcile(station_id)

    # --- operators -----------------------------------------------------------------------

    async def set_recording(self, station_id: str, record: bool, actor: str) -> dict[str, Any]:
        """*Rekam* (True) or stop (False), until the station's activity next starts or stops."""
        if station_id not in self.registry:
            raise NotFound("no such station")
        self.overrides[station_id] = (record, actor)
        await self.audit.audit(self.clock(), actor, "recording.start" if record else "recording.stop", station_id)
        await self._reconcile(station_id)
        return self.station_status(station_id)

    async def hide(self, recording_id: str, reason: str, actor: str) -> Recording:
        if not reason.strip():
            raise ProtocolViolation("a reason is required to hide a recording", code="missing_field")
        return await self._set_visible(recording_id, False, reason.strip(), actor)

    async def show(self, recording_id: str, actor: str) -> Recording:
        return await self._set_visible(recording_id, True, "", actor)

    async def _set_visible(self, recording_id: str, visible: bool, reason: str, actor: str) -> Recording:
        found = await self.store.get(recording_id)
        if found is None:
            raise NotFound("no such recording")
        changed = replace(found, visible=visible, hidden_reason=reason)
        await self.store.update(changed)
        held = self.open.get(found.station)
        if held is not None and held.recording.id == recording_id:
            held.recording = replace(held.recording, visible=visible, hidden_reason=reason)
        detail = f"{recording_id} {found.station}" + (f": {reason}" if reason else "")
        await self.audit.audit(self.clock(), actor, "recording.show" if visible else "recording.hide", detail)
        return changed

    # --- what the wall and the metrics read ------------------------------------------------

    def station_status(self, station_id: str) -> dict[str, Any]:
        held = self.open.get(station_id)
        return {"station": station_id, "recording": held is not None and held.recorder is not None,
                "id": held.recording.id if held else None,
                "override": self.overrides[station_id][0] if station_id in self.overrides else None}

    async def status(self) -> dict[str, Any]:
        floor = self.floor
        alarm = None
        if floor.low:
            alarm = {"kind": "disk_low", "since": floor.since, "free_bytes": floor.free_bytes,
                     "min_free_bytes": floor.min_free_bytes,
                     "message": "Ruang disk rekaman hampir habis: perekaman dihentikan."}
        return {"enabled": self.settings.enabled, "alarm": alarm, "disk_free_bytes": floor.free_bytes,
                "min_free_bytes": floor.min_free_bytes,
                "active": [{"station": station_id, "id": held.recording.id, "title": held.recording.title,
                            "start": held.recording.start, "reason": held.recording.reason,
                            "writing": held.recorder is not None}
                           for station_id, held in sorted(self.open.items())]}

    def metrics(self) -> dict[str, float]:
        writing = [held for held in self.open.values() if held.recorder is not None]
        live_cpu_s = sum(held.recorder.cpu_s for held in writing if held.recorder is not None)
        live_bytes = 0
        for held in writing:
            with contextlib.suppress(OSError):
                live_bytes += held.part.stat().st_size if held.part else 0
        return {"active": float(len(writing)), "bytes": float(self.bytes_written + live_bytes),
                "errors": float(self.errors), "disk_free": float(self.floor.free_bytes or 0),
                "cpu_s": self.cpu_s + live_cpu_s}

    # --- the decision and its actions -----------------------------------------------------

    def _facts(self, station_id: str) -> StationFacts:
        station = self.registry.get(station_id)
        return StationFacts(station.kind if station else "", self.activities.get(station_id),
                            station_id in self.live and self.streams(station_id) is not None,
                            self.overrides[station_id][0] if station_id in self.overrides else None)

    async def _reconcile(self, station_id: str) -> None:
        if self._stopped:
            return
        facts = self._facts(station_id)
        held = self.open.get(station_id)
        now = self.clock()
        action = policy.decide(facts, None if held is None else Held(held.key, held.recorder is not None,
                                                                   held.away_since),
                               kinds=self.settings.kinds, enabled=self.settings.enabled, disk_low=self.floor.low,
                               now=now, resume_s=self.settings.resume_s)
        if action in (Action.FINISH, Action.RESTART) and held is not None:
            self._finish_later(held, now)
        if action in (Action.START, Action.RESTART):
            reason = f"operator:{self.overrides[station_id][1]}" if facts.override else "activity"
            await self._start(station_id, facts, reason, now)
        elif action == Action.NEW_PART and held is not None and now >= held.retry_at:
            await self._new_part(held, now)
        elif action == Action.PAUSE and held is not None:
            self._close_part(held)

    async def _start(self, station_id: str, facts: StationFacts, reason: str, now: float) -> None:
        stream = self.streams(station_id)
        if stream is None:
            return
        extension = extension_for(stream.codecs())
        day = dt.datetime.fromtimestamp(now, self.zone).date().isoformat()
        title = facts.activity.title if facts.activity else OPERATOR_TITLE
        recording = Recording(id=secrets.token_hex(8), station=station_id, title=title, start=now, end=None,
                              state="recording", reason=reason, day=day)
        held = OpenRecording(recording, facts.activity, extension)
        if not self._open_part(held, stream, 0.0):
            return
        try:
            await self.store.add(held.recording)
        except JagaError as exc:  # no index, no recording: a file nobody can find is worse
            self.errors += 1
            log.error("recording of %s not started: %s", station_id, exc)
            self._close_part(held)
            return
        self.open[station_id] = held
        log.info("recording %s of %s started (%s): %s", recording.id, station_id, reason, title)

    async def _new_part(self, held: OpenRecording, now: float) -> None:
        station_id = held.recording.station
        stream = self.streams(station_id)
        if stream is None:
            return
        if extension_for(stream.codecs()) != held.extension:  # another codec: parts cannot be joined
            self._finish_later(held, now)
            await self._start(station_id, self._facts(station_id), held.recording.reason, now)
            return
        if self._open_part(held, stream, max(0.0, now - held.recording.start)):
            held.away_since = None
            await self._save(held.recording)

    def _open_part(self, held: OpenRecording, stream: Any, start_time_s: float) -> bool:
        r = held.recording
        relative = f"{r.station}/{r.day}/{r.id}/part-{len(r.parts) + 1}{held.extension}"
        path = self.root / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            recorder = self.kit.recorder(stream, path, start_time_s,
                                         lambda exc: self._part_failed(held, recorder, exc))
            recorder.start()
        except Exception as exc:
            self.errors += 1
            log.error("recording %s: part %s not opened: %s", r.id, relative, exc)
            return False
        codecs = stream.codecs()
        held.recorder, held.part = recorder, path
        held.recording = replace(r, parts=(*r.parts, relative), video_codec=codecs.get("video", r.video_codec),
                                 audio_codec=codecs.get("audio", r.audio_codec))
        return True

    def _close_part(self, held: OpenRecording) -> None:
        recorder, part = held.recorder, held.part
        held.recorder = held.part = None
        if recorder is None:
            return
        try:
            recorder.stop()
        except Exception as exc:
            self.errors += 1
            log.error("recording %s: closing its part failed: %s", held.recording.id, exc)
        self.cpu_s += recorder.cpu_s
        with contextlib.suppress(OSError):
            self.bytes_written += part.stat().st_size if part else 0

    def _part_failed(self, held: OpenRecording, recorder: Recorder, exc: Exception) -> None:
        """A write failed (disk full, a bad packet): count it; the part ends, the recording stays
        open and continues at the publisher's next change (or the disk's recovery)."""
        self.errors += 1
        log.error("recording %s: writing failed: %s", held.recording.id, exc)
        if held.recorder is recorder:
            self._close_part(held)
            held.retry_at = self.clock() + RETRY_AFTER_ERROR_S

    async def _save(self, recording: Recording) -> None:
        try:
            await self.store.update(recording)
        except JagaError as exc:
            self.errors += 1
            log.error("recording %s: index not updated: %s", recording.id, exc)

    # --- finishing -----------------------------------------------------------------------

    def _finish_later(self, held: OpenRecording, now: float) -> None:
        self._close_part(held)
        if self.open.get(held.recording.station) is held:
            del self.open[held.recording.station]
        self._spawn_finish(held.recording, now, held.extension)

    def _spawn_finish(self, recording: Recording, end: float, extension: str) -> None:
        task = asyncio.get_running_loop().create_task(self._finish(recording, end, extension))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    async def _finish(self, recording: Recording, end: float, extension: str) -> None:
        recording = replace(recording, state="finishing", end=end)
        await self._save(recording)
        parts = [self.root / part for part in recording.parts if (self.root / part).exists()]
        relative = f"{recording.station}/{recording.day}/{recording.id}{extension}"
        try:
            if not parts:
                raise FileNotFoundError("no part was written")
            loop = asyncio.get_running_loop()
            done = await loop.run_in_executor(FINISH_WORKER, self.kit.finish, parts, self.root / relative)
        except Exception as exc:
            self.errors += 1
            log.error("recording %s of %s could not be finished (parts kept): %s", recording.id,
                      recording.station, exc)
            await self._save(replace(recording, state="failed"))
            return
        for part in parts:
            part.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            parts[0].parent.rmdir()
        await self._save(replace(recording, state="done", duration_s=done.duration_s, bytes=done.bytes,
                                 video_codec=done.video_codec or recording.video_codec,
                                 audio_codec=done.audio_codec or recording.audio_codec, parts=(),
                                 path=relative))
        log.info("recording %s of %s finished: %.0f s, %d bytes", recording.id, recording.station,
                 done.duration_s, done.bytes)

    async def finished(self) -> None:
        """Until every recording being finished is (tests, shutdown)."""
        while self._finishing:
            await asyncio.gather(*list(self._finishing), return_exceptions=True)

    # --- restarts ------------------------------------------------------------------------

    async def start(self) -> None:
        """Pick up what a previous process of this node left open (see the module's doc)."""
        now = self.clock()
        for recording in await self.store.open_recordings():
            parts = [self.root / part for part in recording.parts]
            here = [part for part in parts if part.exists()]
            if not here and (self.shared or not parts):
                if not self.shared:  # nothing was ever written: nothing to finish
                    await self._save(replace(recording, state="failed", end=recording.start))
                continue  # in a cluster: another node's
            last_written = max([recording.start, *(part.stat().st_mtime for part in here)])
            extension = _extension(recording)
            if recording.station in self.left:  # two left open: the newer one may continue
                older, older_written = self.left.pop(recording.station)
                self._spawn_finish(older, older_written, _extension(older))
            if recording.state == "finishing" or now - last_written > self.settings.resume_s:
                log.warning("recording %s of %s left open by a crash: finishing it", recording.id,
                            recording.station)
                self._spawn_finish(recording, last_written, extension)
            else:
                self.left[recording.station] = (recording, last_written)

    async def _claim_left(self, station_id: str, key: ActivityKey) -> None:
        found = self.left.pop(station_id, None)
        if found is None:
            return
        recording, last_written = found
        extension = _extension(recording)
        if station_id in self.open or not policy.may_resume(recording.title, last_written, key.title, self.clock(),
                                                            self.settings.resume_s):
            self._spawn_finish(recording, last_written, extension)
            return
        log.info("recording %s of %s continues after a restart", recording.id, station_id)
        self.open[station_id] = OpenRecording(recording, key, extension, away_since=last_written)

    async def stop(self) -> None:
        """Close every part; recordings stay open for the next start. Waits (a while) for
        files being finished."""
        self._stopped = True
        for held in self.open.values():
            self._close_part(held)
        self.open.clear()
        if self._finishing:
            await asyncio.wait(list(self._finishing), timeout=STOP_WAIT_S)

    # --- the timer -----------------------------------------------------------------------

    async def tick(self) -> None:
        now = self.clock()
        if now >= self._next_disk_check:
            self._next_disk_check = now + DISK_CHECK_EVERY_S
            self._check_disk(now)
        for station_id, (recording, last_written) in list(self.left.items()):
            if now - last_written > self.settings.resume_s:
                del self.left[station_id]
                self._spawn_finish(recording, last_written, _extension(recording))
        for station_id in sorted({*self.open, *self.activities, *self.overrides}):
            await self._reconcile(station_id)
        if now >= self._next_retention:
            self._next_retention = now + RETENTION_EVERY_S
            await self.sweep_retention(now)

    def _check_disk(self, now: float) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(self.root).free
        except OSError as exc:
            self.errors += 1
            log.error("recordings' disk %s unreadable: %s", self.root, exc)
            return
        change = self.floor.observe(free, now)
        if change == FloorChange.LOW:
            log.error("recording stopped: %d bytes free on %s, below recording.min_free_bytes (%d)",
                      free, self.root, self.floor.min_free_bytes)
        elif change == FloorChange.RECOVERED:
            log.warning("recording resumes: %d bytes free on %s", free, self.root)

    async def sweep_retention(self, now: float) -> list[str]:
        """Delete what retention says (oldest first), files first; audited. Returns the ids."""
        deleted: list[str] = []
        for _ in range(20):  # a bounded amount per sweep; the next sweep goes on
            oldest = await self.store.oldest(RETENTION_BATCH)
            total = await self.store.total_bytes()
            kept = [policy.Kept(r.id, r.start, r.bytes, r.state in policy.FINISHED_STATES) for r in oldest]
            chosen = set(policy.expired(kept, now, self.settings.retention_days, self.settings.max_bytes, total))
            done_here = 0
            for r in oldest:
                if r.id not in chosen:
                    continue
                files = [self.root / p for p in (r.path, *r.parts) if p]
                if self.shared and not any(f.exists() for f in files):
                    continue  # another node's files: that node deletes them
                for file in files:
                    file.unlink(missing_ok=True)
                await self.store.delete(r.id)
                await self.audit.audit(now, "system", "recording.delete",
                                       f"{r.id} {r.station} {r.title[:80]}: retention")
                deleted.append(r.id)
                done_here += 1
            if done_here == 0 or len(oldest) < RETENTION_BATCH:
                break
        if deleted:
            log.info("retention deleted %d recordings", len(deleted))
        return deleted
