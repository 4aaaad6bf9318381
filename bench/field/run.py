"""One field scenario end to end: a lab, a hub on its host side, a real agent, viewers, polls.

:class:`Field` owns the processes of one scenario run (each run gets a fresh lab and hub, so
one scenario's ledger and sessions never leak into the next): the hub (``python -m hub serve``
bound to the lab's host address, announcing it for ICE), one ``jaga-station --source test
--always-on`` agent (inside the namespace, or on the host for scenario c), WHEP viewers
(:mod:`bench.field.viewer`, each its own process), and a poll of ``GET
/api/v1/stations/{id}`` every 0.5 s. The scenario functions change the link and mark the
moments; :mod:`bench.field.metrics` turns the samples into figures.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import secrets
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import PY, REPO, http_client, log, mint_tokens, own, start_hub, stop, temp_dir
from bench.field import metrics
from tests.netlab import Lab, LinkSpec

POLL_S = 0.5
NOMINAL_FPS = 15  # the agent's default video.fps
WARMUP_CAP_S = 90.0

# The links (one-way delay is half the RTT).
WEAK = (LinkSpec(rate_kbps=1000, loss=0.05, delay_ms=100), LinkSpec(rate_kbps=4000, loss=0.05, delay_ms=100))
THIN = (LinkSpec(rate_kbps=150, loss=0.02, delay_ms=150), LinkSpec(rate_kbps=4000, loss=0.02, delay_ms=150))
PHONE = (LinkSpec(rate_kbps=700, loss=0.03, delay_ms=150), LinkSpec(rate_kbps=700, loss=0.03, delay_ms=150))


def link_text(link: tuple[LinkSpec, LinkSpec]) -> str:
    up, down = link
    return (f"up {up.rate_kbps:g} kbps {up.loss:.0%} loss, down {down.rate_kbps:g} kbps {down.loss:.0%} loss, "
            f"RTT {up.delay_ms + down.delay_ms:g} ms")


def first_public_station() -> str:
    with open(REPO / "data" / "jember_stations.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["public"].strip().lower() == "true":
                return row["id"]
    raise RuntimeError("no public station in the registry")


@dataclass
class ViewerFeed:
    """What one viewer process reported: decoded frame times (with the join each came on),
    audio frames, joins."""

    name: str
    proc: asyncio.subprocess.Process
    frames: list[float] = field(default_factory=list)
    frame_joins: list[int] = field(default_factory=list)  # the viewer's join count when each frame came
    reports: list[tuple[float, int]] = field(default_factory=list)  # (t, joins) per report line
    audio: int = 0
    joins: int = 0
    state: str = ""
    error: str = ""
    task: asyncio.Task[None] | None = None

    async def follow(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            report = json.loads(line)
            self.frames.extend(report["frames"])
            self.frame_joins.extend([report["joins"]] * len(report["frames"]))
            self.reports.append((report["t"], report["joins"]))
            self.audio, self.joins = report["audio"], report["joins"]
            self.state, self.error = report["state"], report["error"]

    def joins_by(self, moment: float) -> int:
        return max((j for t, j in self.reports if t <= moment), default=0)

    def first_frame_after(self, moment: float) -> tuple[float, int] | None:
        """The first frame at or after ``moment``, and the join it came on."""
        return next(((t, j) for t, j in zip(self.frames, self.frame_joins, strict=True) if t >= moment), None)


@dataclass
class Field:
    """The processes and samples of one scenario run."""

    workdir: Path
    lab: Lab
    agent_inside: bool
    station: str = field(default_factory=first_public_station)
    hub: asyncio.subprocess.Process | None = None
    base: str = ""
    config: Path | None = None
    agent: asyncio.subprocess.Process | None = None
    agent_started: float = 0.0
    viewers: dict[str, ViewerFeed] = field(default_factory=dict)
    polls: list[tuple[float, str, str | None]] = field(default_factory=list)
    thumbs: list[float] = field(default_factory=list)  # when a new thumb_at was first seen
    marks: dict[str, float] = field(default_factory=dict)  # monotonic
    wall: dict[str, float] = field(default_factory=dict)  # the same moments, epoch (the ledger's clock)
    daily: dict[str, dict[str, Any]] = field(default_factory=dict)
    link_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    hub_counters: dict[str, dict[str, float]] = field(default_factory=dict)
    metrics_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    _poller: asyncio.Task[None] | None = None
    _http: httpx.AsyncClient | None = None

    def mark(self, name: str) -> float:
        self.marks[name], self.wall[name] = time.monotonic(), time.time()
        return self.marks[name]

    # -- start and stop

    async def start(self) -> None:
        host = self.lab.host_address
        self.hub, port, self.config = await start_hub(
            self.workdir, hub={"host": host, "metrics_token": self.metrics_token},
            media={"host_addresses": [host], "ice_servers": []},
            schedule={"workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00", "end": "23:59",
                      "national_holidays": False})
        self.base = f"http://{host}:{port}"
        self._http = http_client(base_url=self.base, timeout=10)
        token = (await asyncio.to_thread(mint_tokens, self.config, [self.station]))[self.station]
        (self.workdir / "token.txt").write_text(token + "\n")
        addresses = [] if self.agent_inside else [host]  # inside, aioice finds the namespace's own address
        toml = self.workdir / "station.toml"
        toml.write_text(
            f'hub = "{self.base}"\nstation = "{self.station}"\ntoken_file = "token.txt"\nsource = "test"\n'
            f'always_on = true\ncontrol_port = 0\nquestions_port = 0\nlog_file = "agent.log"\n\n'
            f"[network]\nice_servers = []\nhost_addresses = {json.dumps(addresses)}\n")
        args = [PY, "-m", "clients", "--config", str(toml), "run"]
        self.agent_started = self.mark("agent_start")
        with open(self.workdir / "agent.console", "ab") as out:  # the child keeps its own copy
            if self.agent_inside:
                self.agent = await self.lab.spawn(args, stdout=out, stderr=out)
            else:
                self.agent = own(await asyncio.create_subprocess_exec(*args, cwd=REPO, stdout=out, stderr=out,
                                                                      start_new_session=True))
        self._poller = asyncio.create_task(self._poll())

    async def add_viewer(self, name: str, inside: bool) -> ViewerFeed:
        args = [PY, "-m", "bench.field.viewer", "--base", self.base, "--station", self.station, "--rejoin"]
        with open(self.workdir / f"{name}.log", "ab") as errors:
            if inside:  # aioice finds the namespace's own address
                proc = await self.lab.spawn(args, stdout=asyncio.subprocess.PIPE, stderr=errors)
            else:
                proc = own(await asyncio.create_subprocess_exec(
                    *args, "--address", self.lab.host_address, cwd=REPO, start_new_session=True,
                    stdout=asyncio.subprocess.PIPE, stderr=errors))
        feed = ViewerFeed(name, proc)
        feed.task = asyncio.create_task(feed.follow())
        self.viewers[name] = feed
        return feed

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
        for feed in self.viewers.values():
            await stop(feed.proc, 5)
            if feed.task is not None:
                feed.task.cancel()
        if self.agent is not None:
            await stop(self.agent, 10)
        if self.hub is not None:
            await stop(self.hub, 10)
        if self._http is not None:
            await self._http.aclose()

    # -- samples

    async def _poll(self) -> None:
        assert self._http is not None
        last_thumb = None
        while True:
            started = time.monotonic()
            try:
                station = (await self._http.get(f"/api/v1/stations/{self.station}")).json()
                self.polls.append((started, station.get("state", "?"), station.get("media")))
                thumb = station.get("thumb_at")
                if thumb is not None and thumb != last_thumb:
                    self.thumbs.append(started)
                    last_thumb = thumb
            except (httpx.HTTPError, ValueError):
                self.polls.append((started, "?", None))
            await asyncio.sleep(max(0.0, started + POLL_S - time.monotonic()))  # the poll's own period

    def state(self) -> str:
        return self.polls[-1][1] if self.polls else ""

    async def warm_up(self, viewer: str) -> dict[str, float | None]:
        """Wait (at most WARMUP_CAP_S) until the station is live and ``viewer`` decodes frames."""
        feed = self.viewers[viewer]
        deadline = time.monotonic() + WARMUP_CAP_S
        while time.monotonic() < deadline and not (self.state() == "live" and feed.frames):
            await asyncio.sleep(POLL_S)  # polled state: no event to wait on
        live = metrics.first_live_after(self.polls, self.agent_started)
        return {"to_live_s": None if live is None else live - self.agent_started,
                "to_first_frame_s": feed.frames[0] - self.agent_started if feed.frames else None}

    async def attendance(self, name: str) -> None:
        assert self._http is not None
        try:
            rows = (await self._http.get("/api/v1/attendance/daily", params={"station": self.station})).json()["rows"]
            self.daily[name] = rows[0] if rows else {}
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            self.daily[name] = {}

    async def snapshot(self, name: str) -> None:
        """The lab's link counters and the hub's media counters (``/metrics``) at a moment."""
        assert self._http is not None
        self.link_stats[name] = await self.lab.stats()
        try:
            text = (await self._http.get("/metrics", headers={"Authorization": f"Bearer {self.metrics_token}"})).text
            self.hub_counters[name] = {m.group(1): float(m.group(2)) for m in re.finditer(
                r'^jaga_media\{counter="([a-z_]+)"\} ([0-9.e+]+)$', text, re.MULTILINE)}
        except httpx.HTTPError:
            self.hub_counters[name] = {}

    def ledger(self) -> list[tuple[str, float, float | None]]:
        database = self.workdir / "data" / "jaga.db"
        if not database.exists():
            return []
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            return [(state, start, end) for state, start, end in connection.execute(
                "SELECT state, start, end FROM intervals WHERE station = ? ORDER BY start", (self.station,))]
        except sqlite3.Error:
            return []
        finally:
            connection.close()

    # -- figures

    def window(self, start: str, end: str, viewers: list[str]) -> dict[str, Any]:
        a, b = self.marks[start], self.marks[end]
        out: dict[str, Any] = {"seconds": b - a, "live_fraction": metrics.live_fraction(self.polls, a, b),
                               "media": metrics.media_fractions(self.polls, a, b),
                               "thumbs": sum(1 for t in self.thumbs if a <= t < b)}
        for name in viewers:
            out[name] = metrics.viewer_summary(self.viewers[name].frames, a, b)
        return out

    def timeline(self) -> dict[str, Any]:
        """Per second since the agent started: each viewer's decoded fps, the station's state
        and media at that second's first poll; the moments marked; the agent's console lines."""
        origin = self.agent_started
        end = time.monotonic()
        seconds = int(end - origin)
        polled: dict[int, str] = {}
        for t, state, media in self.polls:
            polled.setdefault(int(t - origin), state if media is None else f"{state}/{media or 'none'}")
        console = self.workdir / "agent.console"
        return {
            "marks_s": {name: round(t - origin, 2) for name, t in self.marks.items()},
            "fps": {name: [int(x) for x in metrics.fps_bins(feed.frames, origin, origin + seconds, 1.0)]
                    for name, feed in self.viewers.items()},
            "station": [polled.get(i, "") for i in range(seconds)],
            "agent": console.read_text(errors="replace").splitlines()[-200:] if console.exists() else [],
        }

    def hub_delta(self, start: str, end: str) -> dict[str, float]:
        """The hub's media counters that moved between two snapshots."""
        first, last = self.hub_counters.get(start, {}), self.hub_counters.get(end, {})
        return {k: v - first.get(k, 0.0) for k, v in sorted(last.items()) if v != first.get(k, 0.0)}

    def link_delta(self, start: str, end: str) -> dict[str, Any]:
        """What the lab's link did between two snapshots, per direction."""
        out = {}
        for direction in ("up", "down"):
            first, last = self.link_stats[start][direction], self.link_stats[end][direction]
            seconds = last_at(self.link_stats[end]) - last_at(self.link_stats[start])
            out[direction] = {
                "kbps": (last["forwarded"]["bytes"] - first["forwarded"]["bytes"]) * 8 / seconds / 1000,
                "dropped": {k: last["dropped"][k] - first["dropped"][k] for k in last["dropped"]},
            }
        return out


def last_at(stats: dict[str, Any]) -> float:
    return float(stats["at"])


# -- the scenarios


async def scenario_a(workdir: Path, window_s: float, outage_s: float, after_s: float) -> dict[str, Any]:
    """(a) A weak village link for ``window_s``, then a ``outage_s`` outage and the recovery."""
    async with Lab(*WEAK) as lab:
        run = Field(workdir, lab, agent_inside=True)
        try:
            await run.start()
            await run.add_viewer("host", inside=False)
            startup = await run.warm_up("host")
            log(f"(a) warm-up: {startup}")
            await run.attendance("start")
            await run.snapshot("start")
            run.mark("start")
            await asyncio.sleep(window_s)  # the measurement window
            run.mark("end")
            await run.snapshot("end")
            await lab.outage(True)
            cut = run.mark("cut")
            await asyncio.sleep(outage_s)  # the outage itself
            await lab.outage(False)
            back = run.mark("back")
            await run.snapshot("back")
            await asyncio.sleep(after_s)  # the recovery window
            run.mark("after")
            await run.snapshot("after")
            await run.attendance("after")
            host = run.viewers["host"]
            live_again = metrics.first_live_after(run.polls, back)
            not_live = next((t for t, state, _ in run.polls if t >= cut and state != "live"), None)
            resumed = host.first_frame_after(back)
            first_frame = resumed[0] if resumed else None
            video_back = metrics.video_back_after(host.frames, back, NOMINAL_FPS / 2)
            ledger = run.ledger()
            return {
                "scenario": "a", "link": link_text(WEAK), "startup": startup,
                "window": run.window("start", "end", ["host"]), "link_used": run.link_delta("start", "end"),
                "hub_media": run.hub_delta("start", "end"),
                "outage": {
                    "seconds": outage_s,
                    "not_live_after_cut_s": None if not_live is None or not_live > back else not_live - cut,
                    "live_again_after_s": None if live_again is None else live_again - back,
                    "first_frame_after_s": None if first_frame is None else first_frame - back,
                    "video_back_after_s": None if video_back is None else video_back - back,
                    "frames_without_rejoin": resumed is not None and resumed[1] == host.joins_by(cut),
                    "viewer_joins": host.joins,
                    "ledger_gaps": metrics.ledger_gaps(ledger, run.wall["cut"], run.wall["after"]),
                    "interruptions": _delta(run.daily, "interruptions"),
                    "after": run.window("back", "after", ["host"]),
                    "hub_media": run.hub_delta("back", "after"),
                },
                "daily": run.daily.get("after", {}), "timeline": run.timeline(),
            }
        finally:
            await run.close()


async def scenario_b(workdir: Path, window_s: float, after_s: float) -> dict[str, Any]:
    """(b) A 150 kbps uplink for ``window_s`` (after a warm-up on link a), then link a again."""
    async with Lab(*WEAK) as lab:
        run = Field(workdir, lab, agent_inside=True)
        try:
            await run.start()
            await run.add_viewer("host", inside=False)
            startup = await run.warm_up("host")
            log(f"(b) warm-up on link a: {startup}")
            await lab.set(*THIN)
            await run.snapshot("start")
            run.mark("start")
            await asyncio.sleep(window_s)  # the measurement window
            run.mark("end")
            await run.snapshot("end")
            await lab.set(*WEAK)
            back = run.mark("back")
            await run.snapshot("back")
            fresh = await run.add_viewer("fresh", inside=False)  # joins now: is it the old session or the stream?
            await asyncio.sleep(after_s)  # the recovery window
            run.mark("after")
            await run.snapshot("after")
            host = run.viewers["host"]
            video_back = metrics.video_back_after(host.frames, back, NOMINAL_FPS / 2)
            fresh_back = metrics.video_back_after(fresh.frames, back, NOMINAL_FPS / 2)
            live_video = metrics.first_live_after(run.polls, back, media="video")
            return {
                "scenario": "b", "link": link_text(THIN), "startup": startup,
                "window": run.window("start", "end", ["host"]), "link_used": run.link_delta("start", "end"),
                "hub_media": run.hub_delta("start", "end"),
                "recovery": {
                    "link": link_text(WEAK),
                    "video_back_after_s": None if video_back is None else video_back - back,
                    "fresh_viewer_video_after_s": None if fresh_back is None else fresh_back - back,
                    "live_video_after_s": None if live_video is None else live_video - back,
                    "viewer_joins": host.joins,
                    "after": run.window("back", "after", ["host", "fresh"]),
                    "hub_media": run.hub_delta("back", "after"),
                },
                "timeline": run.timeline(),
            }
        finally:
            await run.close()


async def scenario_c(workdir: Path, window_s: float) -> dict[str, Any]:
    """(c) The agent on a good link; one viewer behind a phone-like link, one on the host."""
    async with Lab(*PHONE) as lab:
        run = Field(workdir, lab, agent_inside=False)
        try:
            await run.start()
            await run.add_viewer("host", inside=False)
            await run.add_viewer("phone", inside=True)
            startup = await run.warm_up("host")
            log(f"(c) warm-up: {startup}")
            await run.snapshot("start")
            run.mark("start")
            await asyncio.sleep(window_s)  # the measurement window
            run.mark("end")
            await run.snapshot("end")
            phone = run.viewers["phone"]
            return {
                "scenario": "c", "link": f"phone viewer: {link_text(PHONE)}", "startup": startup,
                "window": run.window("start", "end", ["host", "phone"]), "link_used": run.link_delta("start", "end"),
                "hub_media": run.hub_delta("start", "end"),
                "phone": {"audio_frames": phone.audio, "joins": phone.joins, "state": phone.state,
                          "error": phone.error},
                "timeline": run.timeline(),
            }
        finally:
            await run.close()


def _delta(daily: dict[str, dict[str, Any]], key: str) -> float | None:
    before, after = daily.get("start", {}).get(key), daily.get("after", {}).get(key)
    return None if before is None or after is None else after - before


async def run_scenario(name: str, quick: bool, keep: bool = False) -> dict[str, Any]:
    """Run one scenario; ``keep``: leave its folder (hub, agent and viewer logs) behind."""
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-field-{name}-")) if keep else temp_dir(f"bench-field-{name}-")
    started = time.monotonic()
    if name == "a":
        result = await scenario_a(workdir, 60 if quick else 600, 30, 45 if quick else 90)
    elif name == "b":
        result = await scenario_b(workdir, 45 if quick else 300, 90 if quick else 120)
    elif name == "c":
        result = await scenario_c(workdir, 45 if quick else 300)
    else:
        raise ValueError(f"no scenario {name!r}")
    result["wall_s"] = time.monotonic() - started
    result["logs"] = str(workdir)
    return result


if __name__ == "__main__":
    sys.exit("run python -m bench.field")
