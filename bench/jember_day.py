"""A Jember day on one machine (issue 20): every kind of load at once on one hub process.

One hub (``python -m hub serve``, memory backend, the 303-station registry, recording on, HLS
on) and its load, ramped up in steps; each step is held (a warm-up, then a measured window):

1. **agents**: every station's ``/ws/station`` socket (hello, ``hb`` every 5 s, and the agent's
   own ``thumb`` every ``media.thumbnail_s``, 10 s: a 320 px JPEG made by ``clients.thumbs``),
   as the office agents hold them all day: a ``bench/wsload.py stations`` process, and this
   process for the stations that record (it starts their activities); 50 probe watchers on
   ``/ws/watch``. With ``--relay-thumbnails`` the sockets send no thumbnails and the relay
   decodes a keyframe of every publisher every 10 s instead (the setup of the eighth step and
   before: what a hub does for publishers without the agent, OBS or a browser);
2. **publishers** 100, 200, 303: light publishers (``bench/light_publisher.py``, the
   pre-encoded 640×360 @ 15 fps VP8 clip, ~490 kbps, and a station's microphone: Opus at 32 kbps
   in 60 ms packets as the agent sends them, ``--audio-ms 20`` as browsers do; ``--no-audio``:
   video only, the setup before the thirteenth step) spread
   over client processes (``bench/loadgen.py publishers``); the last ``--hls`` stations
   publish the same pictures in H.264 instead (aiortc senders replaying the cached libx264
   clip, and the Opus clip unless ``--no-audio``, in this module's own worker process), so
   that HLS has something to package;
3. **viewers**: 300 light WHEP viewers (``bench/loadgen.py viewers``: aiortc ICE + DTLS, RTP
   counted from its clear header without decrypting; the station's sound too unless
   ``--no-audio``), 10 on each of 30 stations; as the
   portal's player (``watch.js``), a viewer whose connection fails or is closed by the hub
   joins again 5 s later, one refused 429/503 after 30 s or the ``Retry-After`` (``busy``:
   the ``Retry-After`` plus 0–5 s) (``--no-viewer-retry``: it stays gone, the setup before);
4. **recordings**: an activity started on 10 stations over their ``/ws/station`` (the hub
   records them: RTP → WebM by remux);
5. **HLS**: 10 players per H.264 station polling ``/hls/{id}/plain.m3u8`` and fetching every
   new segment;
6. **watchers**: presence watchers on ``/ws/watch`` up to 1,000, 2,000, 5,000
   (``bench/wsload.py watch``), last, because the fan-out of every station's thumbnail event
   to every watcher is what a single hub cannot carry (docs/benchmarks.md, "A Jember day").

In every window, presence changes go on at ``--flip-rate`` events/s (a station socket closed
cleanly → offline, a new session → online/live: ``wsload`` ``flip``), and the watchers that
sample (the 50 probes decode every event) record receive time − ``since`` (one clock).
Measured per window: the hub's CPU (all threads, and its event-loop thread alone), RSS, the
machine's CPU and load average, the load generators' CPU, frames sent by the publishers vs
counted by the hub, the hub's RTCP-reported loss, each viewer's frame rate, the hub's
``jaga_media`` counters (dropped packets, dropped datagrams on the shared UDP port,
retransmissions), datagrams the kernel dropped on the hub's own UDP sockets (their receive
buffer full: ``/proc/net/udp``) and machine-wide (``/proc/net/snmp``), RTX packets the
publishers sent in answer to the hub's NACKs, presence delivery latency, recorder and HLS CPU
timed by the hub, HLS segments fetched. Results: ``bench/results/jember_day.json`` (and the
hub's log beside it).

    python -m bench.jember_day            # the full day (≈ 10 min)
    python -m bench.jember_day --quick    # 20 publishers, 20 viewers, 200 watchers (≈ 2 min)
    python -m bench.jember_day --publishers 100,200 --result-name jember_day_200
    python -m bench.jember_day --generators-nice 10   # the load generators yield the CPU to the hub
    python -m bench.jember_day --pin-hub              # the hub alone on CPU 0, everything else on CPU 1
    python -m bench.jember_day --relay-thumbnails     # no agent thumbnails: the relay decodes keyframes
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import logging
import os
import random
import re
import shutil
import sys
import time
from typing import Any

from bench.common import (
    RESULTS,
    Worker,
    cpu_seconds,
    fmt,
    http_client,
    install_cleanup,
    log,
    metrics_text,
    mint_tokens,
    percentile,
    raise_fd_limit,
    rss_bytes,
    serve_worker,
    start_hub,
    station_ids,
    stop,
    temp_dir,
    write_result,
)
from bench.ingest import pin

PROBES = 50  # watchers that decode every event (latency), connected from the first step
PER_WATCH_PROC = 1250
PER_VIEWER_PROC = 100
HOLD_FPS = 0.9 * 15  # a viewer "keeps up" at ≥ 90 % of the 15 fps sent
VIEWER_RETRY_S = 5.0  # watch.js RETRY_MS: a viewer whose connection failed joins again after it
CONSENT_EXPIRED = b"ICE consent to send expired"  # jaga.ice_consent's log line
AGENT_THUMBNAIL_S = 10.0  # the hub's media.thumbnail_s, which the agent follows


# ---------------------------------------------------------------- readings

def thread_cpu(pid: int, tid: int) -> float:
    """CPU seconds of one thread (the hub's main thread runs the asyncio loop)."""
    from bench.common import CLK_TCK

    try:
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            fields = f.read().rsplit(") ", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError):
        return 0.0


def machine_cpu() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def udp_snmp() -> dict[str, int]:
    with open("/proc/net/snmp") as f:
        rows = [line.split() for line in f if line.startswith("Udp:")]
    return {k: int(v) for k, v in zip(rows[0][1:], rows[1][1:], strict=True)}


def drop_runs(samples: list[tuple[float, int]], since: float, until: float) -> dict[str, int]:
    """From once-a-second readings (time, drops so far) of the hub's socket: the seconds in
    ``since``–``until`` whose reading rose, and the longest run of them in a row (the hub's
    shedding waits for ``SUSTAINED_LOOKS`` in a row: a stall's burst spans one or two). Pure."""
    seconds = longest = run = 0
    for (_, before), (t, after) in itertools.pairwise(samples):
        if not since < t <= until:
            continue
        if after > before:
            seconds += 1
            run += 1
            longest = max(longest, run)
        else:
            run = 0
    return {"seconds": seconds, "longest_run": longest}


def socket_drops(pid: int) -> int:
    """Datagrams the kernel dropped on ``pid``'s own UDP sockets (its receive buffer full):
    the ``drops`` column of /proc/net/udp for the socket inodes the process holds."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return 0
    drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[9] in inodes:
                        drops += int(fields[-1])
        except (OSError, StopIteration):
            pass
    return drops


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def mem_available_mb() -> float:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def hub_metrics(http: Any, base: str) -> dict[str, float]:
    text = await metrics_text(http, base)
    out = {f"media.{m.group(1)}": float(m.group(2))
           for m in re.finditer(r'^jaga_media\{counter="([a-z_]+)"\} ([0-9.e+]+)$', text, re.MULTILINE)}
    for name in ("jaga_recording_cpu_seconds_total", "jaga_hls_cpu_seconds_total", "jaga_watchers",
                 "jaga_hls_packaged"):
        found = re.search(rf"^{name} ([0-9.e+]+)$", text, re.MULTILINE)
        if found:
            out[name] = float(found.group(1))
    for m in re.finditer(r'^jaga_stations\{state="([a-z_]+)"\} ([0-9.e+]+)$', text, re.MULTILINE):
        out[f"stations.{m.group(1)}"] = float(m.group(2))
    out["watch_frames"] = sum(float(m.group(1)) for m in re.finditer(
        r'^jaga_watch_frames\{path="[a-z]+"\} ([0-9.e+]+)$', text, re.MULTILINE))
    # (a short pause may print as 2e-05)
    for m in re.finditer(r'^jaga_gc\{what="([a-z_]+)"\} ([0-9.e+-]+)$', text, re.MULTILINE):
        out[f"gc.{m.group(1)}"] = float(m.group(2))
    for m in re.finditer(r'^jaga_event_loop\{what="([a-z_]+)"\} ([0-9.e+-]+)$', text, re.MULTILINE):
        out[f"loop.{m.group(1)}"] = float(m.group(2))
    found = re.search(r"^jaga_watcher_resyncs(?:_total)? ([0-9.e+]+)$", text, re.MULTILINE)
    out["watcher_resyncs"] = float(found.group(1)) if found else 0.0
    return out


# ---------------------------------------------------------------- H.264 publishers and HLS players (a worker)

class HlsSide:
    """This module's worker process: aiortc H.264 publishers and HLS players."""

    def __init__(self) -> None:
        self.pcs: list[Any] = []
        self.tracks: list[Any] = []
        self.players: list[asyncio.Task[None]] = []
        self.segments = self.bytes = self.playlists = 0
        self.status: dict[str, int] = {}

    async def publish(self, base: str, stations: dict[str, str], audio: bool = True) -> dict[str, Any]:
        from aiortc import RTCRtpSender, RTCSessionDescription

        from bench.aac_cost import opus_packets
        from bench.hls_cost import OpusTrack
        from bench.media_peers import ClipTrack, load_h264_clip, local_offer
        from bench.rtcload import wait_connected
        from hub.media.seams_peers import new_peer_connection

        clip = load_h264_clip()
        opus = opus_packets(2) if audio else []
        connected, errors = 0, []
        for station, token in stations.items():
            try:
                track = ClipTrack(clip)
                pc = new_peer_connection(())
                self.pcs.append(pc)
                self.tracks.append(track)
                transceiver = pc.addTransceiver(track, direction="sendonly")
                caps = [c for c in RTCRtpSender.getCapabilities("video").codecs
                        if c.name.lower() in ("h264", "rtx")]
                transceiver.setCodecPreferences(caps)
                if audio:
                    sound = OpusTrack(opus)
                    self.tracks.append(sound)  # its packets are frames sent, as the hub counts them
                    pc.addTransceiver(sound, direction="sendonly").setCodecPreferences(
                        [c for c in RTCRtpSender.getCapabilities("audio").codecs if c.mimeType.lower() == "audio/opus"])
                offer = await local_offer(pc)
                async with http_client(timeout=30) as http:
                    response = await http.post(f"{base}/whip/{station}", content=offer,
                                               headers={"Content-Type": "application/sdp",
                                                        "Authorization": f"Bearer {token}"})
                if response.status_code != 201:
                    raise RuntimeError(f"WHIP {response.status_code}: {response.text[:200]}")
                await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
                connected += await wait_connected(pc)
            except Exception as exc:
                errors.append(repr(exc)[:200])
        return {"connected": connected, "errors": errors[:3]}

    async def play(self, base: str, stations: list[str], per_station: int) -> dict[str, Any]:
        for station in stations:
            for _ in range(per_station):
                self.players.append(asyncio.ensure_future(self._player(base, station)))
        return {"players": len(self.players)}

    async def _player(self, base: str, station: str) -> None:
        """Poll the plain playlist every second; fetch the init segment and every new segment."""

        seen: set[str] = set()
        root = f"{base}/hls/{station}/"
        async with http_client(timeout=30) as http:
            while True:
                try:
                    response = await http.get(root + "plain.m3u8")
                    key = str(response.status_code)
                    self.status[key] = self.status.get(key, 0) + 1
                    if response.status_code == 200:
                        self.playlists += 1
                        uris = re.findall(r'URI="([^"]+)"', response.text)
                        uris += [line for line in response.text.splitlines() if line and not line.startswith("#")]
                        for uri in uris:
                            if uri not in seen:
                                seen.add(uri)
                                got = await http.get(uri if "://" in uri else root + uri)
                                if got.status_code == 200:
                                    self.segments += 1
                                    self.bytes += len(got.content)
                                else:
                                    key = f"segment {got.status_code}"
                                    self.status[key] = self.status.get(key, 0) + 1
                except Exception as exc:
                    key = type(exc).__name__
                    self.status[key] = self.status.get(key, 0) + 1
                await asyncio.sleep(1.0)

    async def stats(self) -> dict[str, Any]:
        return {"segments": self.segments, "bytes": self.bytes, "playlists": self.playlists,
                "status": dict(self.status), "frames": sum(t.count for t in self.tracks),
                "connected": sum(pc.connectionState == "connected" for pc in self.pcs)}

    async def close_all(self) -> dict[str, Any]:
        from hub.media.seams_peers import close_peer_connection

        for task in self.players:
            task.cancel()
        await asyncio.gather(*(close_peer_connection(pc) for pc in self.pcs), return_exceptions=True)
        return {}


# ---------------------------------------------------------------- the day

class Day:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.workdir = temp_dir("bench-jember-day-")
        self.ids = station_ids()
        self.steps: list[dict[str, Any]] = []
        self.proc: Any = None
        self.base = ""
        self.pubs: list[Worker] = []
        self.viewers: list[Worker] = []
        self.watchers: list[Worker] = []
        self.probe: Worker | None = None
        self.recordings: dict[str, Any] = {}
        self.stations: Worker | None = None
        self.hls: Worker | None = None
        self.sockets: list[Any] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.published = 0
        self.tokens: dict[str, str] = {}
        self.load = {"publishers": 0, "viewers": 0, "watchers": 0, "recordings": 0, "hls_players": 0}
        self.joining: dict[str, Any] = {}  # the hub's join counters once the viewers joined
        self.drop_samples: list[tuple[float, int]] = []  # (monotonic, the hub's socket drops so far), each second
        self.started = time.monotonic()

    # -------- plan

    @property
    def vp8_ids(self) -> list[str]:
        return self.ids[:self.args.publishers[-1] - self.args.hls]

    @property
    def h264_ids(self) -> list[str]:
        last = self.args.publishers[-1]
        return self.ids[last - self.args.hls:last]

    @property
    def recorded_ids(self) -> list[str]:
        return self.ids[:self.args.recordings]

    # -------- run

    def _generator_pids(self) -> list[int]:
        """Every load generator's process (each the leader of its own process group)."""
        workers = [*self.pubs, *self.viewers, *self.watchers, self.probe, self.stations, self.hls]
        return [worker.proc.pid for worker in workers if worker is not None]

    def _lower_generators(self, nice: int) -> None:
        """Give every load generator a lower priority than the hub, threads included: they
        stand for clients on other machines, so on a shared machine the hub gets the CPU it
        asks for first."""
        for pid in self._generator_pids():
            os.setpriority(os.PRIO_PGRP, pid, nice)
        log(f"load generators at nice {nice}, the hub at {os.getpriority(os.PRIO_PROCESS, self.proc.pid)}")

    def _pin_hub(self) -> None:
        """The hub alone on CPU 0, every load generator and this process on the others: what
        one core carries when the clients are on other machines (they are not here: two
        cores, so they all share one, and answer late when it is full)."""
        others = set(range(1, os.cpu_count() or 1)) or {0}
        pin(self.proc.pid, {0})
        for pid in [os.getpid(), *self._generator_pids()]:
            pin(pid, others)
        log(f"hub pinned to CPU 0, load generators to CPU {sorted(others)}")

    async def run(self, http: Any) -> None:
        args = self.args
        self.proc, port, config = await start_hub(
            self.workdir,
            hub={"gc_freeze": not args.no_gc_freeze},
            presence={"watchers_per_address": 100_000, "max_watchers": 100_000},
            media={"max_sessions_per_address": 100_000, "max_viewers_per_station": 100_000,
                   "max_viewers_per_node": 100_000,
                   **({} if args.public_joins_per_s is None else {"public_joins_per_s": args.public_joins_per_s})},
            recording={"dir": str(self.workdir / "recordings"), "min_free_bytes": 0})
        self.base = f"http://127.0.0.1:{port}"
        self.tasks.append(asyncio.create_task(self._sample_drops()))
        tokens = await asyncio.to_thread(mint_tokens, config, self.ids)
        self.tokens = tokens
        log(f"hub pid {self.proc.pid} on {self.base}")
        self.pubs = [await Worker.start("-m", "bench.loadgen", "publishers", log=self.workdir / f"pub{i}.log")
                     for i in range(args.pub_procs)]
        n_viewer_procs = max(1, -(-args.viewers // PER_VIEWER_PROC))
        self.viewers = [await Worker.start("-m", "bench.loadgen", "viewers", log=self.workdir / f"view{i}.log")
                        for i in range(n_viewer_procs)]
        n_watch_procs = max(1, -(-args.watchers[-1] // PER_WATCH_PROC))
        self.probe = await Worker.start("-m", "bench.wsload", "watch", log=self.workdir / "probe.log")
        self.watchers = [await Worker.start("-m", "bench.wsload", "watch", log=self.workdir / f"watch{i}.log")
                         for i in range(n_watch_procs)]
        self.stations = await Worker.start("-m", "bench.wsload", "stations", log=self.workdir / "stations.log")
        if args.hls:
            self.hls = await Worker.start("-m", "bench.jember_day", "--worker", log=self.workdir / "hls.log")
        if args.generators_nice:
            self._lower_generators(args.generators_nice)
        if args.pin_hub:
            self._pin_hub()

        # 1. agents: every station's socket; flips hit stations nobody views or records first
        from bench.recording import StationSocket

        held = set(self.recorded_ids)
        viewed = self.ids[:args.viewed_stations]
        # (from the last published: a publishing station's socket may close without a
        # presence change, its media keeps it live)
        order = [s for s in reversed(self.ids) if s not in held and s not in viewed and s not in self.h264_ids]
        order += [s for s in self.ids if s not in held and s not in order]
        thumbnail_s = 0.0 if args.relay_thumbnails else AGENT_THUMBNAIL_S
        reply = await self.stations.call("start", timeout=300, url=f"ws://127.0.0.1:{port}/ws/station", mode="hub",
                                         ids=order, tokens={s: tokens[s] for s in order}, heartbeat_s=5.0,
                                         thumbnail_s=thumbnail_s)
        for sid in self.recorded_ids:
            socket = StationSocket(f"ws://127.0.0.1:{port}/ws/station", sid, tokens[sid])
            await socket.open()
            self.sockets.append(socket)
        if thumbnail_s:
            from bench.media_peers import agent_thumbnail, load_clip

            jpeg = base64.b64encode(agent_thumbnail(load_clip())).decode()  # JSON sockets: base64
            self.tasks += [asyncio.create_task(self._thumbnails(s, jpeg, thumbnail_s)) for s in self.sockets]
        probes = min(PROBES, args.watchers[0])
        await self.probe.call("connect", timeout=300, host="127.0.0.1", port=port, path="/ws/watch",
                              count=probes, sample_every=1)
        self.load["watchers"] = probes
        log(f"agents: {reply['connected']} + {len(self.sockets)} station sockets, {probes} probe watchers")
        await self.measure(http, "agents on (303 station sockets), no media")

        # 2. publishers
        for n in args.publishers:
            await self.publish_up_to(n)
            await self.measure(http, f"publishers {n}")

        # 3. viewers: 10 per station on the first stations (published from the first step)
        per = args.viewers // args.viewed_stations
        jobs: list[list[tuple[str, int]]] = [[] for _ in self.viewers]
        for i, sid in enumerate(viewed):
            jobs[i * len(self.viewers) // len(viewed)].append((sid, per))
        t0 = time.monotonic()
        replies = await asyncio.gather(*(self._whep(w, job) for w, job in zip(self.viewers, jobs, strict=True)))
        connected = sum(replies)
        self.load["viewers"] = connected
        joined = await hub_metrics(http, self.base)
        self.joining = {key: joined.get(f"media.{key}", 0.0)
                        for key in ("joins_waited", "join_wait_ms", "joins_refused_busy", "viewers_shed")}
        self.joining["socket_drops"] = drop_runs(self.drop_samples, t0, time.monotonic())
        log(f"viewers: {connected}/{per * len(viewed)} connected in {time.monotonic() - t0:.0f}s; hub: "
            + ", ".join(f"{key} {value}" for key, value in self.joining.items()))
        await self.measure(http, f"+ viewers {connected}")

        # 4. recordings
        for i, socket in enumerate(self.sockets):
            await socket.send({"t": "activity.start", "title": f"Rapat koordinasi {i + 1}"})
        self.load["recordings"] = len(self.sockets)
        await self.measure(http, f"+ recordings {len(self.sockets)}")

        # 5. HLS players on the H.264 stations
        if self.hls is not None:
            reply = await self.hls.call("play", base=self.base, stations=self.h264_ids, per_station=args.hls_players)
            self.load["hls_players"] = reply["players"]
            await self.measure(http, f"+ HLS players {reply['players']} ({len(self.h264_ids)} H.264 stations)")


        # 6. watchers, last: their thumbnail fan-out is what breaks a single hub (the bulk ones
        # time every event, thumbnails too, 1 socket in 100)
        for total in args.watchers:
            added = total - self.load["watchers"]
            share = [added // len(self.watchers) + (1 if i < added % len(self.watchers) else 0)
                     for i in range(len(self.watchers))]
            t0 = time.monotonic()
            replies = await asyncio.gather(*(w.call("connect", timeout=600, host="127.0.0.1", port=port,
                                                    path="/ws/watch", count=n, sample_every=100, stamps=["since", "at"])
                                             for w, n in zip(self.watchers, share, strict=True) if n))
            stats = await asyncio.gather(*(w.call("stats") for w in [self.probe, *self.watchers]))
            opened = sum(r["open"] for r in stats)
            self.load["watchers"] = opened
            log(f"watchers: {opened} open ({sum(r['failed'] for r in replies)} failed) "
                f"in {time.monotonic() - t0:.0f}s")
            await self.measure(http, f"+ watchers {opened:,}")

        for socket in self.sockets:
            await socket.send({"t": "activity.stop"})
        self.recordings = await self.finished_recordings(http)
        log(f"recordings finished: {self.recordings}")

    @staticmethod
    async def _thumbnails(socket: Any, jpeg: str, every_s: float) -> None:
        """A recorded station's own thumbnails, as its agent sends them."""
        await asyncio.sleep(every_s * random.random())
        while True:
            await socket.send({"t": "thumb", "jpeg": jpeg})
            await asyncio.sleep(every_s)

    async def finished_recordings(self, http: Any, timeout: float = 60) -> dict[str, Any]:
        """The recorded stations' files once the activities stopped (parts remuxed into one)."""
        deadline = time.monotonic() + timeout
        done: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            done = []
            for sid in self.recorded_ids:
                items = (await http.get(f"{self.base}/api/v1/recordings", params={"station": sid})).json()
                done += [r for r in items["recordings"] if r.get("url")]
            if len(done) >= len(self.recorded_ids):
                break
            await asyncio.sleep(1)
        return {"finished": len(done), "of": len(self.recorded_ids),
                "seconds": sum(r.get("duration_s") or 0 for r in done), "bytes": sum(r.get("bytes") or 0 for r in done)}

    async def _whep(self, worker: Worker, job: list[tuple[str, int]]) -> int:
        connected = 0
        for sid, count in job:
            reply = await worker.call("whep", timeout=300, base=self.base, station=sid, count=count,
                                      retry_s=None if self.args.no_viewer_retry else VIEWER_RETRY_S,
                                      audio=not self.args.no_audio)
            connected += reply["connected"]
            if reply["errors"]:
                log(f"viewers of {sid}: {reply['errors']}")
        return connected

    async def publish_up_to(self, n: int) -> None:
        t0 = time.monotonic()
        vp8 = [s for s in self.ids[self.published:n] if s in set(self.vp8_ids)]
        h264 = [s for s in self.ids[self.published:n] if s in set(self.h264_ids)]
        shares: list[dict[str, str]] = [{} for _ in self.pubs]
        for i, sid in enumerate(vp8):
            shares[(self.published + i) % len(self.pubs)][sid] = self.tokens[sid]
        calls = [w.call("publish", timeout=600, base=self.base, stations=s, audio=not self.args.no_audio,
                        audio_ms=self.args.audio_ms)
                 for w, s in zip(self.pubs, shares, strict=True) if s]
        if h264 and self.hls is not None:
            calls.append(self.hls.call("publish", timeout=300, base=self.base,
                                       stations={s: self.tokens[s] for s in h264}, audio=not self.args.no_audio))
        replies = await asyncio.gather(*calls)
        connected = sum(r["connected"] for r in replies)
        errors = [e for r in replies for e in r["errors"]]
        self.published = n
        self.load["publishers"] += connected
        log(f"publishers → {n}: {connected}/{len(vp8) + len(h264)} new connected in {time.monotonic() - t0:.0f}s "
            f"{errors[:2] if errors else ''}")

    # -------- one window

    @property
    def all_watchers(self) -> list[Worker]:
        return [w for w in [self.probe, *self.watchers] if w is not None]

    def gen_pids(self) -> list[int]:
        workers = [*self.pubs, *self.viewers, self.probe, *self.watchers, self.stations, self.hls]
        return [w.proc.pid for w in workers if w is not None] + [os.getpid()]

    async def snapshot(self, http: Any, rtcp: bool) -> dict[str, Any]:
        pid = self.proc.pid
        pubs = await asyncio.gather(*(w.call("stats", timeout=120, rtcp=rtcp) for w in self.pubs))
        views = await asyncio.gather(*(w.call("stats") for w in self.viewers))
        watch = await asyncio.gather(*(w.call("stats") for w in self.all_watchers))
        hls = await self.hls.call("stats") if self.hls is not None else None
        metrics = await hub_metrics(http, self.base)
        busy, total = machine_cpu()
        gen = 0.0
        for p in self.gen_pids():
            try:
                gen += cpu_seconds(p)
            except OSError:
                pass
        return {"t": time.monotonic(), "hub_cpu": cpu_seconds(pid), "loop_cpu": thread_cpu(pid, pid),
                "gen_cpu": gen, "machine_busy": busy, "machine_total": total, "udp": udp_snmp(),
                "hub_socket_drops": socket_drops(pid), "consent_closed": self.consent_closed(),
                "pubs": pubs, "views": views, "watch": watch, "hls": hls, "metrics": metrics}

    async def _sample_drops(self) -> None:
        """Once a second, the hub's socket drops so far (read from /proc by this process: the
        hub pays nothing for it): which seconds dropped, and how many in a row."""
        pid = self.proc.pid
        while True:
            drops = await asyncio.to_thread(socket_drops, pid)
            self.drop_samples.append((time.monotonic(), drops))
            await asyncio.sleep(1.0)

    def consent_closed(self) -> int:
        """Sessions the hub closed so far because their peer stopped answering its consent
        checks (its log's line; the peers here are the load generators)."""
        try:
            return (self.workdir / "hub.log").read_bytes().count(CONSENT_EXPIRED)
        except OSError:
            return 0

    async def measure(self, http: Any, label: str) -> None:
        args = self.args
        await asyncio.sleep(args.warmup)
        for w in self.all_watchers:
            await w.call("reset")
        rtcp0 = await asyncio.gather(*(w.call("stats", timeout=120) for w in self.pubs))
        a = await self.snapshot(http, rtcp=False)
        assert self.stations is not None
        changes = max(2, int(args.window * args.flip_rate))
        flip, _ = await asyncio.gather(self.stations.call("flip", timeout=args.window * 4 + 60, events=changes,
                                                          rate=args.flip_rate),
                                       asyncio.sleep(args.window))
        b = await self.snapshot(http, rtcp=False)
        rtcp1 = await asyncio.gather(*(w.call("stats", timeout=120) for w in self.pubs))
        await asyncio.sleep(1.0)  # the last flip's deliveries
        assert self.probe is not None
        presence = (await self.probe.call("latencies"))["latency"]
        events: list[float] = []
        for w in self.watchers:
            events += (await w.call("latencies"))["latency"]
        step = self.evaluate(label, a, b, rtcp0, rtcp1, presence, events, flip)
        self.steps.append(step)
        log(self.line(step))

    def evaluate(self, label: str, a: dict[str, Any], b: dict[str, Any], rtcp0: list[dict[str, Any]],
                 rtcp1: list[dict[str, Any]], presence: list[float], events: list[float],
                 flip: dict[str, Any]) -> dict[str, Any]:
        dt = b["t"] - a["t"]
        ma, mb = a["metrics"], b["metrics"]

        def delta(key: str) -> float:
            return float(mb.get(key, 0.0) - ma.get(key, 0.0))

        sent = sum(x["frames"] for x in b["pubs"]) - sum(x["frames"] for x in a["pubs"])
        if b["hls"] is not None:
            sent += b["hls"]["frames"] - a["hls"]["frames"]
        fps = []
        for va, vb in zip(a["views"], b["views"], strict=True):
            fps += [(f1 - f0) / dt for f0, f1 in zip(va["frames"], vb["frames"], strict=False)]
        dropped = {k[len("media.udp_port_dropped_"):]: delta(k) for k in mb if k.startswith("media.udp_port_dropped_")}
        udp = {k: b["udp"][k] - a["udp"][k] for k in ("InErrors", "RcvbufErrors", "SndbufErrors")}
        udp["hub_socket_drops"] = b["hub_socket_drops"] - a["hub_socket_drops"]
        hls = None
        if b["hls"] is not None:
            hls = {"segments_per_s": (b["hls"]["segments"] - a["hls"]["segments"]) / dt,
                   "kbps": (b["hls"]["bytes"] - a["hls"]["bytes"]) * 8 / dt / 1000, "status": b["hls"]["status"],
                   "h264_connected": b["hls"]["connected"]}
        return {
            "label": label, "load": dict(self.load), "window_s": dt, "at_s": time.monotonic() - self.started,
            "hub_cores": (b["hub_cpu"] - a["hub_cpu"]) / dt, "loop_cores": (b["loop_cpu"] - a["loop_cpu"]) / dt,
            # the hub's own view of its loop (jaga_event_loop): its thread's CPU, and the longest
            # its once-a-second beat woke late in the minute before the window's end
            "hub_loop_cores": delta("loop.cpu_seconds") / dt, "loop_lag_s": mb.get("loop.lag_seconds"),
            "hub_rss_mb": rss_bytes(self.proc.pid) / 2**20, "gen_cores": (b["gen_cpu"] - a["gen_cpu"]) / dt,
            "machine_cores": (b["machine_busy"] - a["machine_busy"]) / max(1, b["machine_total"] - a["machine_total"])
                             * (os.cpu_count() or 1),
            "loadavg": loadavg(), "mem_available_mb": mem_available_mb(),
            "frames_sent": sent, "frames_received": delta("media.frames_received"),
            "frame_ratio": delta("media.frames_received") / sent if sent else None,
            "packets_sent": sum(x["packets_sent"] for x in rtcp1) - sum(x["packets_sent"] for x in rtcp0),
            "packets_lost_rtcp": sum(x["packets_lost"] for x in rtcp1) - sum(x["packets_lost"] for x in rtcp0),
            "rtx_sent": sum(x.get("rtx_sent", 0) for x in b["pubs"]) - sum(x.get("rtx_sent", 0) for x in a["pubs"]),
            "publishers_connected": sum(x["connected"] for x in b["pubs"])
                                    + (b["hls"]["connected"] if b["hls"] else 0),
            "viewer_reconnects": sum(x.get("reconnects", 0) for x in b["views"])
                                 - sum(x.get("reconnects", 0) for x in a["views"]),
            "viewer_refusals": sum(x.get("refusals", 0) for x in b["views"])
                               - sum(x.get("refusals", 0) for x in a["views"]),
            "consent_closed": b["consent_closed"] - a["consent_closed"],
            "viewer_fps": {"median": percentile(fps, 50), "p5": percentile(fps, 5), "min": min(fps) if fps else None,
                           "share_ok": sum(f >= HOLD_FPS for f in fps) / len(fps) if fps else None, "n": len(fps)},
            "packets_forwarded_per_s": delta("media.packets_forwarded") / dt,
            "dropped_packets": delta("media.dropped_packets"), "retransmitted": delta("media.packets_retransmitted"),
            "nacks_withheld": delta("media.nacks_withheld"),
            "keyframe_requests": delta("media.keyframe_requests"), "video_fallbacks": delta("media.video_fallbacks"),
            "udp_port_dropped": dropped, "kernel_udp": udp,
            "socket_drop_seconds": drop_runs(self.drop_samples, a["t"], b["t"]),
            "recorder_cores": delta("jaga_recording_cpu_seconds_total") / dt,
            "hls_cores": delta("jaga_hls_cpu_seconds_total") / dt, "hls": hls,
            "watchers_open": sum(x["open"] for x in b["watch"]), "watchers_lost": sum(x["lost"] for x in b["watch"]),
            "watch_frames_per_s": (sum(x["frames"] for x in b["watch"])) / dt,
            "hub_watch_frames_per_s": delta("watch_frames") / dt, "watcher_resyncs": delta("watcher_resyncs"),
            "flips": flip, "latency_ms": latencies(presence), "event_latency_ms": latencies(events),
            "stations": {k[len("stations."):]: v for k, v in mb.items() if k.startswith("stations.")},
            # full collections in the window, their summed pause, the longest since the hub started
            "gc": {"full_collections": delta("gc.full_collections"), "pause_s": delta("gc.full_collection_seconds"),
                   "longest_s": mb.get("gc.longest_full_collection_seconds"),
                   "heap_blocks": mb.get("gc.heap_blocks"), "frozen_after_thaw": mb.get("gc.frozen_after_thaw"),
                   "freezes": mb.get("gc.freezes"), "thaws": mb.get("gc.thaws")},
        }

    @staticmethod
    def line(s: dict[str, Any]) -> str:
        v, lat, ev = s["viewer_fps"], s["latency_ms"], s["event_latency_ms"]
        return (f"{s['label']}: hub {s['hub_cores'] * 100:.0f}% (loop {s['loop_cores'] * 100:.0f}%; "
                f"hub says {s['hub_loop_cores'] * 100:.0f}%, lag {fmt(s['loop_lag_s'], 3)} s) "
                f"rss {s['hub_rss_mb']:.0f}MiB gens {s['gen_cores'] * 100:.0f}% machine {s['machine_cores']:.2f}/"
                f"{os.cpu_count()} load {s['loadavg']:.1f} recv/sent {fmt(s['frame_ratio'], 3)} "
                f"rtcp lost {s['packets_lost_rtcp']}/{s['packets_sent']} rtx sent {s['rtx_sent']} "
                f"(NACKs withheld for {s.get('nacks_withheld', 0):.0f}) "
                f"viewers {fmt(v['median'], 1)} fps "
                f"(p5 {fmt(v['p5'], 1)}, ok {fmt(v['share_ok'], 2)}; rejoined {s.get('viewer_reconnects', 0)}, "
                f"refused {s.get('viewer_refusals', 0)}) "
                f"consent closed {s.get('consent_closed', 0)} dropped {s['dropped_packets']:.0f} "
                f"udp {s['udp_port_dropped']} kernel {s['kernel_udp']} drop seconds {s['socket_drop_seconds']} "
                f"latency p50/p95 {fmt(lat['p50'], 1)}/"
                f"{fmt(lat['p95'], 1)} ms (n={lat['n']}) all events {fmt(ev['p50'], 1)}/{fmt(ev['p95'], 1)} ms "
                f"(n={ev['n']}) watch frames {s['watch_frames_per_s']:.0f}/s (hub {s['hub_watch_frames_per_s']:.0f}/s) "
                f"resyncs {s['watcher_resyncs']:.0f} watchers {s['watchers_open']} hls {s['hls']} gc {s['gc']}")

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for socket in self.sockets:
            try:
                await socket.close()
            except Exception:
                pass
        for w in [*self.pubs, *self.viewers, *([self.hls] if self.hls else [])]:
            await w.close("close_all", timeout=120)
        for w in self.all_watchers:
            await w.close("close_all")
        if self.stations is not None:
            await self.stations.close()
        if self.proc is not None:
            await stop(self.proc)


def latencies(seconds: list[float]) -> dict[str, Any]:
    """Delivery latency in ms; an old stamp (> 30 s: a media-only update repeats the state's
    ``since``) is not a delivery time and is counted apart."""
    fresh = [x * 1000 for x in seconds if x < 30]
    return {"n": len(fresh), "p50": percentile(fresh, 50), "p95": percentile(fresh, 95),
            "max": max(fresh) if fresh else None, "stale": len(seconds) - len(fresh)}


# ---------------------------------------------------------------- the table

def render(steps: list[dict[str, Any]]) -> str:
    lines = ["| step | publishers / viewers / watchers / recordings / HLS players | hub CPU (loop thread) | "
             "hub RSS | load generators' CPU | machine busy (of 2) | load avg | frames at hub ÷ sent | "
             "RTCP lost / sent (RTX sent) | viewer fps median (p5; share ≥ 13.5) | "
             "sessions closed on consent / viewers rejoined (refused) | hub dropped / retransmitted | "
             "UDP dropped: hub's port (unknown sender) / kernel, hub's sockets (seconds with drops, most in a row) "
             "/ kernel, machine | "
             "presence change → watcher p50 / p95 (n) | "
             "any event (thumbnails too) → watcher p50 / p95 (n) | watch frames/s received | recorder / HLS CPU |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in steps:
        ld, v, lat, ev = s["load"], s["viewer_fps"], s["latency_ms"], s["event_latency_ms"]
        port_drops = sum(s["udp_port_dropped"].values())
        kernel = f"{s['kernel_udp'].get('hub_socket_drops', 0):,} / {s['kernel_udp']['RcvbufErrors']:,}"
        if s.get("socket_drop_seconds", {}).get("seconds"):  # results before the eleventh step have none
            runs = s["socket_drop_seconds"]
            kernel += f" ({runs['seconds']} s, {runs['longest_run']} in a row)"
        share = v["share_ok"] * 100 if v["share_ok"] is not None else None
        viewers = f"{fmt(v['median'], 1)} ({fmt(v['p5'], 1)}; {fmt(share, 0)} %)" if v["n"] else "–"
        lines.append(
            f"| {s['label']} | {ld['publishers']} / {ld['viewers']} / {ld['watchers']:,} / {ld['recordings']} / "
            f"{ld['hls_players']} | {s['hub_cores'] * 100:.0f} % ({s['loop_cores'] * 100:.0f} %) | "
            f"{s['hub_rss_mb']:.0f} MiB | {s['gen_cores'] * 100:.0f} % | {s['machine_cores']:.2f} | "
            f"{s['loadavg']:.1f} | {fmt(s['frame_ratio'], 3)} | {s['packets_lost_rtcp']:,} / {s['packets_sent']:,} "
            f"({fmt(s.get('rtx_sent'))}) | "
            f"{viewers} | {s.get('consent_closed', '–')} / {s.get('viewer_reconnects', '–')} "
            f"({s.get('viewer_refusals', '–')}) | "
            f"{s['dropped_packets']:,.0f} / {s['retransmitted']:,.0f} | {port_drops:,.0f} / {kernel} | "
            f"{fmt(lat['p50'], 1)} / {fmt(lat['p95'], 1)} ms ({lat['n']}) | "
            f"{fmt(ev['p50'], 1)} / {fmt(ev['p95'], 1)} ms ({ev['n']}) | {s['watch_frames_per_s']:,.0f} | "
            f"{s['recorder_cores'] * 100:.1f} % / {s['hls_cores'] * 100:.1f} % |")
    return "\n".join(lines)


async def main(args: argparse.Namespace) -> None:
    raise_fd_limit()
    day = Day(args)
    started = time.monotonic()
    error = None
    try:
        async with http_client(timeout=60) as http:
            await day.run(http)
    except Exception as exc:
        error = repr(exc)
        log(f"stopped: {error}")
    finally:
        await day.close()
        RESULTS.mkdir(parents=True, exist_ok=True)
        for name in ("hub.log", "hls.log"):
            if (day.workdir / name).exists():  # kept: the temp folder goes at exit
                shutil.copy(day.workdir / name, RESULTS / f"{args.result_name}_{name}")
    table = render(day.steps)
    hls_notes = [s["hls"] for s in day.steps if s["hls"]]
    path = write_result(args.result_name, {"args": vars(args), "steps": day.steps, "table": table, "error": error,
                                           "recordings": day.recordings, "viewers_joining": day.joining,
                                           "elapsed_s": time.monotonic() - started})
    print(table)
    if hls_notes:
        print(f"HLS: {hls_notes[-1]}")
    print(f"recordings: {day.recordings}")
    log(f"wrote {path} in {time.monotonic() - started:.0f}s")


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--publishers", default="100,200,303", help="publisher steps (cumulative)")
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--viewed-stations", type=int, default=30)
    parser.add_argument("--watchers", default="1000,2000,5000", help="watcher steps (totals, the 50 probes included)")
    parser.add_argument("--recordings", type=int, default=10)
    parser.add_argument("--hls", type=int, default=3, help="stations publishing H.264 (the last of the publishers)")
    parser.add_argument("--hls-players", type=int, default=10, help="HLS players per H.264 station")
    parser.add_argument("--pub-procs", type=int, default=4)
    parser.add_argument("--warmup", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=30.0)
    parser.add_argument("--flip-rate", type=float, default=1.0, help="presence changes per second in each window")
    parser.add_argument("--result-name", default="jember_day")
    parser.add_argument("--no-gc-freeze", action="store_true",
                        help="run the hub with hub.gc_freeze = false (CPython's own full collections)")
    parser.add_argument("--generators-nice", type=int, default=0, metavar="N",
                        help="run the load generators at this nice value (e.g. 10): the hub first, as if "
                             "its clients were on other machines")
    parser.add_argument("--pin-hub", action="store_true",
                        help="the hub on CPU 0 alone, the load generators on the other CPUs")
    parser.add_argument("--relay-thumbnails", action="store_true",
                        help="the station sockets send no thumbnails: the relay decodes a keyframe of every "
                             "publisher every 10 s (the eighth step's setup; publishers without the agent)")
    parser.add_argument("--no-audio", action="store_true",
                        help="publishers send video only and viewers ask for no sound (the setup before the "
                             "thirteenth step); by default every station sends its microphone too, as the agents do")
    parser.add_argument("--audio-ms", type=int, default=60, choices=(20, 40, 60),
                        help="the light publishers' Opus packets: 60 ms as the station agent sends them "
                             "(audio.packet_ms), or 20 as browsers do (the H.264 stations send 20 either way)")
    parser.add_argument("--no-viewer-retry", action="store_true",
                        help="viewers whose connection fails stay gone (the setup before the tenth step); "
                             "by default they join again as the portal's player does")
    parser.add_argument("--public-joins-per-s", type=float, default=None, metavar="N",
                        help="the hub's media.public_joins_per_s (0: joins not paced, as before the eleventh "
                             "step); by default the hub's own")
    parser.add_argument("--quick", action="store_true", help="20 publishers, 20 viewers, 200 watchers, short windows")
    parser.add_argument("--render", metavar="NAME", help="only print the table of bench/results/NAME.json")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.publishers, args.viewers, args.viewed_stations, args.watchers = "10,20", 20, 2, "100,200"
        args.recordings, args.hls, args.hls_players, args.pub_procs = 2, 1, 3, 2
        args.warmup, args.window, args.result_name = 3.0, 8.0, "jember_day_quick"
    args.publishers = [int(n) for n in str(args.publishers).split(",")]
    args.watchers = [int(n) for n in str(args.watchers).split(",")]
    return args


async def worker() -> None:
    logging.basicConfig(level=logging.ERROR)
    raise_fd_limit()
    side = HlsSide()
    await serve_worker({"publish": side.publish, "play": side.play, "stats": side.stats,
                        "close_all": side.close_all})
    await side.close_all()


if __name__ == "__main__":
    if "--worker" in sys.argv:
        asyncio.run(worker())
    else:
        parsed = parse()
        if parsed.render:
            import json

            print(render(json.loads((RESULTS / f"{parsed.render}.json").read_text())["steps"]))
        else:
            install_cleanup()
            asyncio.run(main(parsed))
