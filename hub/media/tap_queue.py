"""A station stream's forwarded packets, queued by a tap and handed over in batches.

The recorder and the HLS packager both need every packet the relay forwards, with its
arrival time, but not in the relay's hot path: the tap only appends to a list, and every
``batch_s`` (or when ``max_batch`` wait: an event loop held up) the list goes to ``handle``
on the event loop. Doing the same work packet by packet between the relay's other work cost
about 4× as much (cold caches; measured for the recorder: ~57 → ~12 µs per packet).

Where another publisher's packets begin (the stream's ``source_id`` changed) the batch holds
``None``: numbers and clocks start afresh there. Outside an event loop (tests) every packet
is handed over at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

# (kind, sequence number, timestamp, marker, payload, arrival on the queue's clock)
QueuedPacket = tuple[str, int, int, int, bytes, float]
Batch = list[QueuedPacket | None]


class TappedStream(Protocol):
    """What a tap needs of a :class:`~hub.media.station_stream.StationStream`."""

    source_id: str | None

    def add_tap(self, fn: Callable[[str, int, int, int, bytes], None]) -> None: ...
    def remove_tap(self, fn: Callable[[str, int, int, int, bytes], None]) -> None: ...
    def codecs(self) -> dict[str, str]: ...
    def request_keyframe(self, urgent: bool = False) -> None: ...


class TapQueue:
    def __init__(self, stream: TappedStream, handle: Callable[[Batch], None], batch_s: float, max_batch: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self._handle = handle
        self._batch_s = batch_s
        self._max_batch = max_batch
        self._clock = clock
        self._queue: Batch = []
        self._source: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tapped = False

    @property
    def in_loop(self) -> bool:
        return self._loop is not None

    def start(self) -> None:
        self._source = self.stream.source_id
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None
        self.stream.add_tap(self._on_rtp)
        self._tapped = True

    def stop(self) -> None:
        """Remove the tap; what is queued stays for a last :meth:`flush`."""
        if self._tapped:
            self._tapped = False
            self.stream.remove_tap(self._on_rtp)
        self._cancel_timer()

    def flush(self) -> None:
        """Hand over what is queued now."""
        self._cancel_timer()
        batch, self._queue = self._queue, []
        self._handle(batch)

    def _on_rtp(self, kind: str, seq: int, ts: int, marker: int, payload: bytes) -> None:
        source = self.stream.source_id
        if source != self._source:
            self._source = source
            self._queue.append(None)
        self._queue.append((kind, seq, ts, marker, payload, self._clock()))
        if self._timer is None:
            if self._loop is None:
                self.flush()
            else:
                self._timer = self._loop.call_later(self._batch_s, self.flush)
        elif len(self._queue) >= self._max_batch:
            self.flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
