"""The media relay: WHIP publishers in, WHEP viewers out, encoded frames forwarded between.

Theory of operation (see ``docs/media.md`` for the why):

- ``publish`` answers a WHIP offer with a receive-only peer connection whose receivers hand
  encoded frames to the station's ``StationStream`` instead of decoding them. The first
  publisher of a station becomes its source at once; a later one is *pending* and takes
  over when it connects, after which the old one is closed.
- ``view`` answers a WHEP offer with send-only transceivers, offering exactly the codec the
  station's source sends, and a ``ViewerEgress`` per kind that sends the source's RTP
  itself. When the viewer connects, its video waits for the first packet of a keyframe
  and the publisher is asked for one (rate-limited).
- Each viewer's video has a fallback (``viewer_fallback``, deciding in ``congestion``): when
  its own receiver reports show that its link cannot carry video, its video egress pauses
  (audio goes on) and is tried again after a back-off; ``viewer_video`` tells its page.
- Every peer connection ends through ``end``: on DELETE, on ICE/DTLS failure or close, if
  it does not connect within ``CONNECT_TIMEOUT_S``, when its station's last publisher goes
  (viewers are closed, so they see their tracks end), and on ``close``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from hub.core.announce import announce_public, public_mapping
from hub.errors import ClientGone, NotFound, RateLimited, Unavailable
from hub.media import seams_egress, seams_ingest, seams_keyframes, seams_peers, seams_udp
from hub.media.congestion import OFF, CongestionPolicy
from hub.media.counters import MediaCounters
from hub.media.keyframes import KeyframeRequester
from hub.media.offer import check_offer, choose_publisher_codecs
from hub.media.overload import JoinPacer, ViewerShedding
from hub.media.peers import answer_publisher, answer_viewer
from hub.media.send_batch import SendBatch
from hub.media.sessions import (
    PUBLIC_OWNER,
    MediaEvents,
    MediaSession,
    Peer,
    PublisherPeer,
    StationState,
    ViewerPeer,
)
from hub.media.station_stream import StationStream
from hub.media.viewer_egress import EgressParameters, IdleTrack, ViewerEgress
from hub.media.viewer_fallback import ViewerVideoFallback
from hub.settings import MediaSettings

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15.0  # ICE + DTLS must be up by then, or the session is ended
KEYFRAME_INTERVAL_S = 0.5  # at most one PLI per publisher per interval
RETRY_AFTER_FULL_S = 30.0


class MediaRelay:
    def __init__(self, settings: MediaSettings, events: MediaEvents) -> None:
        self.settings = settings
        self._events = events
        self._counters = MediaCounters()
        self._sessions: dict[str, Peer] = {}
        self._stations: dict[str, StationState] = {}
        self._inflight: Counter[str] = Counter()  # offers being answered, for the caps
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._public = public_mapping(settings.host_addresses, settings.public_addresses)  # 1:1 NAT
        # viewers' video fallback: the thresholds (set_congestion_policy), one per viewer with video
        self.congestion_policy = CongestionPolicy()
        self._fallbacks: dict[str, ViewerVideoFallback] = {}
        # every viewer's RTCP sender reports on one timer (seams_egress, seam 8)
        self._sender_reports = seams_egress.SenderReports()
        # and every publisher's receiver reports on another (seams_ingest, seam 18)
        self._receiver_reports = seams_ingest.ReceiverReports()
        self.own_loss = seams_ingest.OwnLoss()  # the shared port's socket overflowing (check_overflow)
        self._shedding = ViewerShedding(settings.shed_viewers_s)  # and new public viewers refused then
        self._join_pacer = JoinPacer(settings.public_joins_per_s, settings.public_join_wait_s)
        self._joins_waiting = 0  # public offers waiting for their turn now
        # where sessions' host candidates bind: the shared media port (opened by ``open``), a
        # port range, or aioice's ephemeral ports
        self._binding = seams_udp.Binding(port_range=port_range(settings.udp_ports) if not settings.udp_port else None)
        self._opening = asyncio.Lock()
        # after each relayed packet: its datagrams to the viewers leave in one sendmmsg per port
        self._flush_sends: Callable[[], None] = _nothing_to_flush

    # --- queries ---------------------------------------------------------------------

    def session(self, session_id: str) -> MediaSession | None:
        peer = self._sessions.get(session_id)
        return peer.session if peer else None

    def sessions_of(self, owner: str) -> list[MediaSession]:
        """Every session a credential opened (a revoked token's sessions are ended)."""
        return [peer.session for peer in self._sessions.values() if peer.session.owner == owner]

    def is_publishing(self, station_id: str) -> bool:
        station = self._stations.get(station_id)
        return station is not None and station.active is not None

    def stream(self, station_id: str) -> StationStream | None:
        """The station's stream while it is live here (the recorder taps it), else None."""
        station = self._stations.get(station_id)
        return station.stream if station is not None and station.live else None

    def media_ages(self) -> dict[str, tuple[float, float]]:
        """Per live station here: seconds since its source's last audio and video RTP."""
        now = time.monotonic()
        return {station_id: station.stream.media_ages(now)
                for station_id, station in self._stations.items() if station.live}

    def check_overflow(self) -> None:
        """Once a second: did the kernel drop datagrams at the shared media port since the last
        look (its receive buffer full)? Then gaps are not NACKed (``OwnLoss``), and new public
        viewers are refused for a while (``ViewerShedding``)."""
        self.own_loss.update(self._kernel_drops())
        self._shedding.note(self.own_loss.active, time.monotonic())

    def _kernel_drops(self) -> int | None:
        counts = [mux.kernel_drops() for mux in self._binding.muxes]
        return sum(c for c in counts if c is not None) if counts and None not in counts else None

    def publisher_count(self) -> int:
        """Stations whose media arrives now (a publisher connected)."""
        return sum(1 for s in self._stations.values() if s.active is not None)

    def viewer_count(self, station_id: str) -> int:
        station = self._stations.get(station_id)
        return len(station.viewers) if station else 0

    def viewer_video(self, session_id: str) -> dict[str, Any] | None:
        """Whether a viewer gets video now, and why not (the WHEP session resource's JSON);
        None for an unknown session. A viewer without video: ``{"video": "off", "reason":
        "no_video"}``."""
        peer = self._sessions.get(session_id)
        if not isinstance(peer, ViewerPeer):
            return None
        fallback = self._fallbacks.get(session_id)
        if fallback is None:
            return {"video": "off", "reason": "no_video", "retry_in_s": None, "probing": False, "fallbacks": 0,
                    "loss": None, "rtt_ms": None}
        return fallback.status()

    def set_congestion_policy(self, policy: CongestionPolicy) -> None:
        """The video fallback's thresholds, for every viewer from now on (current ones too)."""
        self.congestion_policy = policy
        for fallback in self._fallbacks.values():
            fallback.set_policy(policy)

    def metrics(self) -> dict[str, int]:
        viewers = sum(isinstance(p, ViewerPeer) for p in self._sessions.values())
        return {
            "publishers": self.publisher_count(),
            "viewers": viewers,
            "viewers_audio_only": sum(f.state == OFF for f in self._fallbacks.values()),
            "sessions": len(self._sessions),
            "peer_connections": len(self._sessions),
            "shedding_viewers": int(self._shedding.refusing(time.monotonic())),
            "joins_waiting": self._joins_waiting,
            **self._counters.as_dict(),
            **self.udp_metrics(),
        }

    async def open(self) -> None:
        """Bind the shared media UDP port (``media.udp_port``), once; raises OSError if it is
        taken. Called at start-up, and again (doing nothing) before every offer."""
        if not self.settings.udp_port or self._binding.muxes:
            return
        async with self._opening:
            if self._binding.muxes:
                return
            hosts = self.settings.host_addresses or ("0.0.0.0",)
            muxes = []
            try:
                for host in hosts:
                    muxes.append(await seams_udp.UdpMux.open(host, self.settings.udp_port,
                                                             batch_sends=self.settings.send_batch))
            except OSError:
                for mux in muxes:
                    mux.close()
                raise
            self._binding = seams_udp.Binding(muxes=tuple(muxes))
            self._flush_sends = _flush_all([mux.batch for mux in muxes if mux.batch is not None])
            logger.info("media on UDP port %d (%s)", self.settings.udp_port, ", ".join(hosts))

    def udp_metrics(self) -> dict[str, int]:
        """The shared media port: datagrams received, dropped by reason (hostile or stray), dropped
        by the kernel (its buffer full), lost packets not NACKed meanwhile, and the relayed
        packets sent in batches (sendmmsg calls, datagrams they took, datagrams sent one by one)."""
        counts = {"udp_port_datagrams": sum(m.received for m in self._binding.muxes),
                  "udp_port_kernel_drops": self._kernel_drops() or 0, "nacks_withheld": self.own_loss.withheld}
        for reason in seams_udp.DROP_REASONS:
            counts[f"udp_port_dropped_{reason}"] = sum(m.dropped[reason] for m in self._binding.muxes)
        batches = [m.batch for m in self._binding.muxes if m.batch is not None]
        counts["udp_port_send_calls"] = sum(b.calls for b in batches)
        counts["udp_port_sent_batched"] = sum(b.datagrams for b in batches)
        counts["udp_port_send_fallbacks"] = sum(b.fallbacks for b in batches)
        return counts

    # --- WHIP ------------------------------------------------------------------------

    async def publish(self, station_id: str, offer_sdp: str, *, owner: str, client_addr: str) -> MediaSession:
        """Answer a WHIP offer for ``station_id``. Raises a ClientError for a bad offer."""
        offer = check_offer(offer_sdp, max_bytes=self.settings.max_sdp_bytes, publishing=True)
        await self.open()
        codecs = choose_publisher_codecs(offer, self.settings.codecs)
        slots = self._admit(client_addr)
        try:
            session_id = secrets.token_urlsafe(18)
            pc = seams_peers.new_peer_connection(self.settings.ice_servers)
            try:
                with seams_udp.binding(self._binding):
                    answer, receivers = await answer_publisher(
                        pc, offer, codecs, self.settings.host_addresses,
                        lambda kind, seq, ts, marker, payload: self._forward_rtp(
                            station_id, session_id, kind, seq, ts, marker, payload),
                        self._receiver_reports,
                        self.own_loss,
                    )
                self._refuse_if_closed()
            except BaseException:
                await seams_peers.close_peer_connection(pc)
                raise
        finally:
            self._inflight.subtract(slots)
        answer = announce_public(answer, self._public)
        session = MediaSession(session_id, "whip", station_id, owner, answer, _etag())
        peer = PublisherPeer(session, pc, client_addr, codecs=codecs)
        video = receivers.get("video")
        peer.requester = KeyframeRequester(
            (lambda: seams_keyframes.request_keyframe(video)) if video else _no_keyframe,
            KEYFRAME_INTERVAL_S, on_sent=self._count_keyframe_request,
        )
        self._register(peer)
        station = self._stations.get(station_id)
        if station is None:
            stream = StationStream(station_id, self._counters, self.settings.thumbnail_s, self._thumbnail,
                                   self._events.wants_thumbnail)
            station = self._stations[station_id] = StationState(stream)
        if station.active is None:
            if station.viewers:  # viewers kept through the previous publisher's loss: this one is theirs
                self._cancel_grace(station)
                self._take_over(station, peer)
            else:
                station.active = peer
                station.stream.switch_source(session_id, _mime_types(codecs), peer.requester.request,
                                             peer.requester.answered)
        else:
            if station.pending is not None:
                self._spawn(self.end(station.pending.session.id))  # the newest offer wins
            station.pending = peer
        return session

    # --- WHEP ------------------------------------------------------------------------

    async def view(self, station_id: str, offer_sdp: str, *, owner: str, client_addr: str,
                   gone: Callable[[], Awaitable[None]] | None = None) -> MediaSession:
        """Answer a WHEP offer for a station that is publishing. ``gone``: returns once the
        client has closed its connection (a public offer waiting for its turn then stops
        waiting: :class:`ClientGone`)."""
        offer = check_offer(offer_sdp, max_bytes=self.settings.max_sdp_bytes, publishing=False)
        await self.open()
        station = self._live_station(station_id)
        self._check_viewer_caps(station_id, station)
        if owner == PUBLIC_OWNER:
            self._refuse_if_overloaded()
        slots = self._admit(client_addr, station_id)
        tracks: list[IdleTrack] = []
        try:
            if owner == PUBLIC_OWNER:
                await self._wait_for_turn(gone)  # its slots stay taken meanwhile: the caps count it
                station = self._live_station(station_id)
            session_id = secrets.token_urlsafe(18)
            assert station.active is not None
            codecs = dict(station.active.codecs)
            pc = seams_peers.new_peer_connection(self.settings.ice_servers)
            try:
                with seams_udp.binding(self._binding):
                    answer, egresses, senders = await answer_viewer(
                        pc, offer, codecs, self.settings.host_addresses,
                        lambda parameters: self._new_egress(parameters, station),
                        lambda: self._viewer_wants_keyframe(station_id),
                        tracks,
                        self._sender_reports,
                    )
                self._refuse_if_closed()
                if self._live_station(station_id) is not station:  # the publisher left meanwhile
                    raise NotFound(f"station {station_id} is not live", code="not_live")
            except BaseException:
                for track in tracks:
                    track.stop()
                await seams_peers.close_peer_connection(pc)
                raise
        finally:
            self._inflight.subtract(slots)
        answer = announce_public(answer, self._public)
        session = MediaSession(session_id, "whep", station_id, owner, answer, _etag())
        peer = ViewerPeer(session, pc, client_addr, codecs=codecs, egresses=egresses, senders=senders, tracks=tracks)
        self._register(peer)
        video = egresses.get("video")
        if video is not None:
            fallback = self._fallbacks[session_id] = ViewerVideoFallback(video, self.congestion_policy, self._counters)
            seams_egress.on_receiver_report(senders["video"], fallback.receiver_report)
            seams_egress.on_report_sent(senders["video"], fallback.report_sent)
        station.viewers.add(peer)
        for egress in egresses.values():
            station.stream.add_egress(egress)
        return session

    # --- ending ----------------------------------------------------------------------

    async def end(self, session_id: str) -> None:
        """Close a session's peer connection and forget it. Safe to call more than once."""
        peer = self._sessions.pop(session_id, None)
        if peer is None:
            return
        if peer.watchdog is not None:
            peer.watchdog.cancel()
        station = self._stations.get(peer.session.station_id)
        closing: list[Coroutine[Any, Any, None]] = []
        if isinstance(peer, ViewerPeer):
            self._detach_viewer(peer, station)
        elif isinstance(peer, PublisherPeer) and station is not None:
            closing += self._detach_publisher(peer, station)
        if isinstance(peer, PublisherPeer) and peer.requester is not None:
            await peer.requester.close()
        await seams_peers.close_peer_connection(peer.pc)
        if closing:
            await asyncio.gather(*closing)

    async def close(self) -> None:
        """Hub shutdown: end every session and wait for everything the relay started."""
        self._closed = True
        for station in self._stations.values():
            self._cancel_grace(station)
        await asyncio.gather(*(self.end(sid) for sid in list(self._sessions)))
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        self._sender_reports.close()
        self._receiver_reports.close()
        for mux in self._binding.muxes:
            mux.close()

    # --- internals -------------------------------------------------------------------

    def _register(self, peer: Peer) -> None:
        self._sessions[peer.session.id] = peer
        session_id = peer.session.id
        pc = peer.pc

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc.connectionState == "connected":
                self._connected(peer)
            elif pc.connectionState in ("failed", "closed"):
                self._spawn(self.end(session_id))

        def give_up() -> None:
            if not peer.connected:
                logger.info("%s session %s did not connect in time", peer.session.kind, session_id)
                self._spawn(self.end(session_id))

        peer.watchdog = asyncio.get_running_loop().call_later(CONNECT_TIMEOUT_S, give_up)

    def _connected(self, peer: Peer) -> None:
        if peer.connected or peer.session.id not in self._sessions:
            return
        peer.connected = True
        if peer.watchdog is not None:
            peer.watchdog.cancel()
        station = self._stations.get(peer.session.station_id)
        if station is None:
            return
        if isinstance(peer, ViewerPeer):
            for kind, egress in peer.egresses.items():
                wire = seams_egress.open_wire(peer.senders[kind].transport)
                if wire is not None:
                    egress.attach(wire)
            return
        assert isinstance(peer, PublisherPeer)
        if station.pending is peer:
            replaced = station.active
            self._take_over(station, peer)
            if replaced is not None:
                self._spawn(self.end(replaced.session.id))
        if station.active is peer and not station.live:
            station.live = True
            self._notify("publishing_started", peer.session.station_id)

    def _take_over(self, station: StationState, peer: PublisherPeer) -> None:
        """Make ``peer`` the station's source; viewers that cannot take its codecs end."""
        station.active, station.pending = peer, None
        assert peer.requester is not None
        station.stream.switch_source(peer.session.id, _mime_types(peer.codecs), peer.requester.request,
                                     peer.requester.answered)
        for viewer in list(station.viewers):
            if any(peer.codecs.get(k, c).mimeType.lower() != c.mimeType.lower() for k, c in viewer.codecs.items()):
                self._spawn(self.end(viewer.session.id))

    def _detach_viewer(self, peer: ViewerPeer, station: StationState | None) -> None:
        fallback = self._fallbacks.pop(peer.session.id, None)
        if fallback is not None:
            fallback.close()
        for egress in peer.egresses.values():
            if station is not None:
                station.stream.remove_egress(egress)
            egress.close()
        for track in peer.tracks:
            track.stop()
        if station is not None:
            station.viewers.discard(peer)

    def _detach_publisher(self, peer: PublisherPeer, station: StationState) -> list[Coroutine[Any, Any, None]]:
        """Unhook a publisher; returns what must be awaited to finish (viewers to end)."""
        station_id = peer.session.station_id
        if station.pending is peer:
            station.pending = None
            return []
        if station.active is not peer:
            return []
        station.stream.clear_source(peer.session.id)
        station.active = None
        if station.pending is not None:
            self._take_over(station, station.pending)
            if station.active is not None and not station.active.connected and station.live:
                station.live = False
                self._notify("publishing_stopped", station_id)
            return []
        if station.live:
            station.live = False
            self._notify("publishing_stopped", station_id)
        if station.viewers and self.settings.viewer_grace_s > 0 and not self._closed:
            # An office that lost its link comes back with a new WHIP session: its viewers stay
            # connected meanwhile and get its picture again without joining again.
            station.grace = asyncio.get_running_loop().call_later(
                self.settings.viewer_grace_s, lambda: self._spawn(self._end_station_after_grace(station_id, station)))
            return []
        del self._stations[station_id]
        return [self.end(v.session.id) for v in list(station.viewers)] + [station.stream.close()]

    async def _end_station_after_grace(self, station_id: str, station: StationState) -> None:
        """No publisher came back within ``media.viewer_grace_s``: the kept viewers end."""
        station.grace = None
        if self._stations.get(station_id) is not station or station.active is not None:
            return
        del self._stations[station_id]
        await asyncio.gather(*(self.end(v.session.id) for v in list(station.viewers)))
        await station.stream.close()

    @staticmethod
    def _cancel_grace(station: StationState) -> None:
        if station.grace is not None:
            station.grace.cancel()
            station.grace = None

    def _forward_rtp(self, station_id: str, session_id: str, kind: str, seq: int, ts: int, marker: int,
                     payload: bytes) -> None:
        station = self._stations.get(station_id)
        if station is not None:
            station.stream.forward_rtp(session_id, kind, seq, ts, marker, payload)
            self._flush_sends()

    def _new_egress(self, parameters: EgressParameters, station: StationState) -> ViewerEgress:
        stream = station.stream
        egress = ViewerEgress(
            parameters,
            stream.clocks[parameters.kind],
            stream.cache if parameters.kind == "video" else None,
            on_keyframe_needed=lambda: stream.request_keyframe(urgent=True),  # a viewer waits to start
            on_dropped=self._count_dropped,
            on_retransmitted=self._count_retransmitted,
        )
        return egress

    def _request_keyframe(self, station_id: str) -> None:
        station = self._stations.get(station_id)
        if station is not None:
            station.stream.request_keyframe()

    def _viewer_wants_keyframe(self, station_id: str) -> None:
        self._counters.viewer_keyframe_requests += 1
        self._request_keyframe(station_id)

    def _live_station(self, station_id: str) -> StationState:
        station = self._stations.get(station_id)
        if station is None or station.active is None:
            raise NotFound(f"station {station_id} is not live", code="not_live")
        return station

    def _check_viewer_caps(self, station_id: str, station: StationState) -> None:
        per_station = len(station.viewers) + self._inflight[f"station:{station_id}"]
        if per_station >= self.settings.max_viewers_per_station:
            self._counters.sessions_refused += 1
            raise Unavailable(f"station {station_id} has its maximum of viewers", RETRY_AFTER_FULL_S, "station_full")
        viewers = sum(len(s.viewers) for s in self._stations.values()) + self._inflight["viewers"]
        if viewers >= self.settings.max_viewers_per_node:
            self._counters.sessions_refused += 1
            raise Unavailable("this hub node has its maximum of viewers", RETRY_AFTER_FULL_S, "node_full")

    def _refuse_if_overloaded(self) -> None:
        now = time.monotonic()
        if self._shedding.refusing(now):
            self._counters.viewers_shed += 1
            self._counters.sessions_refused += 1
            raise Unavailable("this hub is dropping media it already carries: no new public viewers for now",
                              self._shedding.retry_after_s(now), "overloaded")

    async def _wait_for_turn(self, gone: Callable[[], Awaitable[None]] | None) -> None:
        """A public viewer's join waits for its turn (``JoinPacer``), and is refused if the queue
        is full, or if the hub began dropping its media while it waited. A client that leaves
        meanwhile (a page reloaded in a crowd) frees its slots at once: without this, its peer
        connection would be built and answered into nothing, holding a viewer slot until the
        connect timeout. Its turn is not given back (the next is ≤ 1/``per_s`` away anyway)."""
        now = time.monotonic()
        wait_s = self._join_pacer.turn(now)
        if wait_s is None:
            self._counters.joins_refused_busy += 1
            self._counters.sessions_refused += 1
            raise Unavailable("too many viewers are joining at once: try again shortly",
                              self._join_pacer.retry_after_s(now), "busy")
        if wait_s > 0:
            self._counters.joins_waited += 1
            self._counters.join_wait_ms += round(wait_s * 1000)
            self._joins_waiting += 1
            try:
                if await _left_within(gone, wait_s):
                    self._counters.joins_abandoned += 1
                    raise ClientGone("the viewer left while its offer waited for its turn")
            finally:
                self._joins_waiting -= 1
            self._refuse_if_closed()
            self._refuse_if_overloaded()

    def _admit(self, client_addr: str, viewing_station: str | None = None) -> Counter[str]:
        """Check the per-address limit and reserve slots for an offer being answered."""
        self._refuse_if_closed()
        sessions = sum(p.client_addr == client_addr for p in self._sessions.values())
        if sessions + self._inflight[f"addr:{client_addr}"] >= self.settings.max_sessions_per_address:
            self._counters.sessions_refused += 1
            raise RateLimited(f"too many media sessions from {client_addr}", retry_after=RETRY_AFTER_FULL_S)
        slots = Counter({f"addr:{client_addr}": 1})
        if viewing_station is not None:
            slots.update({f"station:{viewing_station}": 1, "viewers": 1})
        self._inflight.update(slots)
        return slots

    def _refuse_if_closed(self) -> None:
        if self._closed:
            raise Unavailable("the hub is shutting down", retry_after=5.0, code="shutting_down")

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("media task failed", exc_info=task.exception())

    def _notify(self, event: str, *args: Any) -> None:
        try:
            getattr(self._events, event)(*args)
        except Exception:
            logger.exception("MediaEvents.%s failed", event)

    def _thumbnail(self, station_id: str, jpeg: bytes) -> None:
        self._notify("thumbnail", station_id, jpeg)

    def _count_keyframe_request(self) -> None:
        self._counters.keyframe_requests += 1

    def _count_dropped(self, packets: int) -> None:
        self._counters.dropped_packets += packets

    def _count_retransmitted(self, packets: int) -> None:
        self._counters.packets_retransmitted += packets


def _nothing_to_flush() -> None:
    pass


def _flush_all(batches: list[SendBatch]) -> Callable[[], None]:
    if not batches:
        return _nothing_to_flush
    if len(batches) == 1:
        return batches[0].flush

    def flush_all() -> None:
        for batch in batches:
            batch.flush()

    return flush_all


async def _no_keyframe() -> bool:
    return False


def _mime_types(codecs: dict[str, seams_peers.RTCRtpCodecParameters]) -> dict[str, str]:
    return {kind: codec.mimeType.lower() for kind, codec in codecs.items()}


def port_range(spec: str) -> tuple[int, int] | None:
    """``media.udp_ports`` ("40000-40100", validated by the settings) as (low, high)."""
    if not spec:
        return None
    low, _, high = spec.partition("-")
    return int(low), int(high)


def _etag() -> str:
    return f'"{secrets.token_urlsafe(12)}"'


async def _left_within(gone: Callable[[], Awaitable[None]] | None, seconds: float) -> bool:
    """Sleep ``seconds``; True at once if ``gone`` returns first."""
    if gone is None:
        await asyncio.sleep(seconds)
        return False
    watcher = asyncio.ensure_future(gone())
    try:
        done, _ = await asyncio.wait({watcher}, timeout=seconds)
        if done:
            watcher.result()  # what went wrong watching the connection, if anything did
        return bool(done)
    finally:
        watcher.cancel()
