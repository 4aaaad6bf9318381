"""A publisher's RTP packets, read on the fast path: socket → SRTP → header → forwarder.

Theory of operation. aiortc receives a packet through aioice's queue, a DTLS receive task,
its RTP parser and the receiver's jitter buffer, which reassembles frames for a decoder
the relay never runs; that cost ~85 µs per packet, ~0.46 % of a core per 500 kbps
publisher (docs/benchmarks.md, ingest). Here the socket's ``datagram_received`` hands the
SRTP bytes over (``seams_ingest.divert_srtp``); ``PublisherIngest`` reads the header
(``rtp.parse_rtp``), routes the packet by payload type to its kind, keeps the receiver's
RTCP statistics, NACKs and REMB estimate up to date (``seams_ingest.ReceiverBookkeeping``),
unwraps RTX (RFC 4588 §4) and calls the forwarder, all synchronously.

Routing is by payload type: our answer has one codec per kind (plus RTX for video), and
BUNDLE (RFC 8843 §7.5) forbids one payload type for two codecs in a bundle, so an answer
whose kinds share a payload type is refused before it is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hub.errors import ProtocolViolation
from hub.media import seams_ingest
from hub.media.rtp import parse_rtp
from hub.media.seams_ingest import OwnLoss, ReceiverBookkeeping, ReceiverReports
from hub.media.seams_peers import NegotiatedMedia, RTCDtlsTransport, RTCRtpReceiver

# (kind, sequence number, timestamp, marker, payload): RTX already unwrapped
KindRtpSink = Callable[[str, int, int, int, bytes], None]


@dataclass(slots=True)
class _Route:
    kind: str
    book: ReceiverBookkeeping
    rtx: bool
    # the media SSRC last seen for this kind: unwrapped RTX is NACK-tracked under it
    media_ssrc: list[int]


class PublisherIngest:
    """Every RTP packet one publisher sends on one transport (one, with BUNDLE)."""

    __slots__ = ("_abs_send_time_id", "_on_rtp", "_routes", "malformed")

    def __init__(self, routes: dict[int, _Route], abs_send_time_id: int | None, on_rtp: KindRtpSink) -> None:
        self._routes = routes
        self._abs_send_time_id = abs_send_time_id
        self._on_rtp = on_rtp
        self.malformed = 0

    def on_packet(self, data: bytes) -> None:
        """One unprotected RTP packet; called from the socket's datagram callback."""
        fields = parse_rtp(data, self._abs_send_time_id)
        if fields is None:
            self.malformed += 1
            return
        payload_type, marker, seq, ts, ssrc, payload, abs_send_time = fields
        route = self._routes.get(payload_type)
        if route is None or not route.book.accepting():
            return  # aiortc would drop it too: unknown payload type, or receiver not running
        book = route.book
        book.count(ssrc, seq, ts, len(payload), abs_send_time)
        if route.rtx:
            if len(payload) < 2:
                return  # RTX padding: bandwidth probing, nothing to forward
            seq, payload = (payload[0] << 8) | payload[1], payload[2:]
            ssrc = route.media_ssrc[0]
        else:
            route.media_ssrc[0] = ssrc
        book.note_media(ssrc, seq)
        self._on_rtp(route.kind, seq, ts, marker, payload)


def ingest_publisher(receivers: dict[str, RTCRtpReceiver], negotiated: dict[str, NegotiatedMedia],
                     on_rtp: KindRtpSink, reports: ReceiverReports | None = None,
                     own_loss: OwnLoss | None = None) -> list[PublisherIngest]:
    """Divert the publisher's packets from aiortc's receivers to the fast path.

    ``receivers``: the publisher's receivers by kind; ``negotiated``: our answer's media;
    ``reports``: the timer their receiver reports go out on (None: aiortc's loop each);
    ``own_loss``: whether the hub's socket drops packets now (then gaps are not NACKed).
    Raises ProtocolViolation if two kinds share a payload type (the answer must not go out).
    """
    transports: dict[int, RTCDtlsTransport] = {}  # one per transport: a single one with BUNDLE
    routes: dict[int, dict[int, _Route]] = {}
    abs_send_time_ids: dict[int, int] = {}
    books: dict[str, ReceiverBookkeeping] = {}
    for kind, receiver in receivers.items():
        media = negotiated.get(kind)
        if media is None:
            continue
        dtls = receiver.transport
        transports[id(dtls)] = dtls
        on_transport = routes.setdefault(id(dtls), {})
        book = books[kind] = ReceiverBookkeeping(receiver, media.clock_rate, own_loss)
        media_ssrc = [0]
        wanted = {media.payload_type: _Route(kind, book, False, media_ssrc)}
        if media.rtx_payload_type is not None:
            wanted[media.rtx_payload_type] = _Route(kind, book, True, media_ssrc)
        clash = set(wanted) & set(on_transport)
        if clash:
            raise ProtocolViolation(f"payload type {min(clash)} is used by two media sections of one bundle")
        on_transport.update(wanted)
        if kind == "video" and media.abs_send_time_extension_id is not None:
            abs_send_time_ids[id(dtls)] = media.abs_send_time_extension_id
    if reports is not None:
        for kind, book in books.items():
            seams_ingest.report_on_beat(receivers[kind], reports, book.send_rtcp)
    ingests = []
    for key, dtls in transports.items():  # only once every check passed: nothing half-diverted
        ingest = PublisherIngest(routes[key], abs_send_time_ids.get(key), on_rtp)
        seams_ingest.divert_srtp(dtls, ingest.on_packet)
        ingests.append(ingest)
    return ingests
