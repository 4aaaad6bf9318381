"""Cheap WebSocket load for the fan-out benchmark, run as worker processes.

``watch``: many watch sockets in one process, each a bare ``asyncio.Protocol`` that does the
RFC 6455 handshake by hand and then only walks frame headers (server frames are unmasked),
so a client costs ~1–2 µs per frame and the server, not the load, is what gets measured.
One socket in ``sample_every`` also decodes each event frame and records
``now − since`` as the delivery latency (same machine, same clock).

``stations``: the station side. ``hub`` mode runs real station sessions (hello with a token,
``hb`` every ``heartbeat_s``) and makes presence changes by closing a station's socket
cleanly (→ ``offline``) and opening a new session (→ ``online``). ``plain`` mode, for the
reference servers, keeps every socket open and sends pre-encoded ``presence`` frames whose
``since`` is the send time.
"""

from __future__ import annotations

import asyncio
import base64
import os
import sys
import time
from array import array
from typing import Any

import msgpack

from bench.common import raise_fd_limit, serve_worker

EVENT_MAX = 4096  # frames smaller than this are events; the hub's snapshot is far larger
HB = msgpack.packb({"t": "hb", "camera": "ok"}, use_bin_type=True)


# ---------------------------------------------------------------- watchers

class WatchSocket(asyncio.Protocol):
    def __init__(self, pool: WatchPool, sample: bool) -> None:
        self.pool = pool
        self.sample = sample
        self.buf = bytearray()
        self.upgraded = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # a TCP connection's
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            f"GET {self.pool.path} HTTP/1.1\r\nHost: {self.pool.host}:{self.pool.port}\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: jaga.v1.msgpack\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None  # set by connection_made, which comes first
        pool = self.pool
        pool.bytes += len(data)
        buf = self.buf
        buf += data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[:12])
            del buf[:end + 4]
            if b" 101" not in status:
                self.upgraded.set_exception(ConnectionError(status.decode(errors="replace")))
                transport.close()
                return
            self.open = True
            self.upgraded.set_result(None)
        pos, size = 0, len(buf)
        now = 0.0
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            if length < 126:
                header = 2
            elif length == 126:
                if size - pos < 4:
                    break
                header, length = 4, int.from_bytes(buf[pos + 2:pos + 4], "big")
            else:
                if size - pos < 10:
                    break
                header, length = 10, int.from_bytes(buf[pos + 2:pos + 10], "big")
            end = pos + header + length
            if end > size:
                break
            opcode = buf[pos] & 0x0F
            if opcode in (1, 2):
                if length < EVENT_MAX:
                    pool.frames += 1
                    if self.sample:
                        if not now:
                            now = time.time()
                        try:
                            event = msgpack.unpackb(buf[pos + header:end])
                            since = next((event[k] for k in pool.stamps if k in event), None)
                            if isinstance(since, dict):  # `thumbs {at: {id: time}}`: its oldest
                                since = min(since.values(), default=None)
                        except Exception:
                            since = None
                        if isinstance(since, float) and len(pool.latency) < 500_000:
                            pool.latency.append(now - since)
                else:
                    pool.big += 1
            elif opcode == 9:  # ping → masked pong with a zero key (payload unchanged)
                payload = bytes(buf[pos + header:end])
                transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\0\0\0\0" + payload)
            elif opcode == 8:
                transport.close()
            pos = end
        if pos:
            del buf[:pos]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(ConnectionError("closed during handshake"))
        if self.open:
            self.pool.lost += 1
        self.open = False


class WatchPool:
    def __init__(self) -> None:
        self.sockets: list[WatchSocket] = []
        self.frames = self.big = self.bytes = self.lost = 0
        self.latency = array("d")
        self.host, self.port, self.path = "127.0.0.1", 0, "/ws/watch"
        self.sample_every = 10
        self.stamps: tuple[str, ...] = ("since",)  # event fields read as the server's send time

    async def connect(self, host: str, port: int, path: str, count: int, sample_every: int = 10,
                      parallel: int = 64, stamps: list[str] | None = None) -> dict[str, Any]:
        """``stamps``: the event fields taken as the server's time, first found (default
        ``since``; ``["since", "at"]`` also times ``thumbs`` messages, by their oldest thumbnail)."""
        self.host, self.port, self.path, self.sample_every = host, port, path, sample_every
        if stamps:
            self.stamps = tuple(stamps)
        loop = asyncio.get_running_loop()
        gate = asyncio.Semaphore(parallel)
        failed = 0

        async def one() -> None:
            nonlocal failed
            async with gate:
                sock = WatchSocket(self, len(self.sockets) % sample_every == 0)
                self.sockets.append(sock)
                try:
                    await loop.create_connection(lambda: sock, host, port)
                    await asyncio.wait_for(sock.upgraded, 30)
                except Exception:
                    failed += 1

        await asyncio.gather(*(one() for _ in range(count)))
        return self.stats() | {"failed": failed}

    def stats(self) -> dict[str, Any]:
        return {"open": sum(s.open for s in self.sockets), "frames": self.frames, "big": self.big,
                "bytes": self.bytes, "lost": self.lost}

    async def reset(self) -> dict[str, Any]:
        self.frames = self.big = 0
        self.latency = array("d")
        return self.stats()

    async def latencies(self) -> dict[str, Any]:
        return {"latency": list(self.latency)}

    async def close_all(self) -> dict[str, Any]:
        for s in self.sockets:
            if s.transport:
                s.transport.abort()
        self.sockets.clear()
        return {}


# ---------------------------------------------------------------- stations

class Stations:
    def __init__(self) -> None:
        self.conns: dict[str, Any] = {}
        self.tokens: dict[str, str] = {}
        self.url = ""
        self.mode = "hub"
        self.heartbeat_s = 5.0
        self.tasks: set[asyncio.Task[Any]] = set()
        self.errors = 0
        self.seq = 0

    async def _open(self, sid: str) -> None:
        from websockets.asyncio.client import connect
        from websockets.typing import Subprotocol

        conn = await connect(self.url, subprotocols=[Subprotocol("jaga.v1.msgpack")], compression=None,
                             open_timeout=30, ping_interval=None)
        if self.mode == "hub":
            await conn.send(msgpack.packb({"t": "hello", "station": sid, "token": self.tokens[sid],
                                           "agent": "bench", "version": "0"}, use_bin_type=True))
            welcome = msgpack.unpackb(await asyncio.wait_for(conn.recv(), 30))
            if welcome.get("t") != "welcome":
                raise RuntimeError(f"{sid}: {welcome}")
        self.conns[sid] = conn
        self._spawn(self._drain(conn))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _drain(self, conn: Any) -> None:
        try:
            async for _ in conn:
                pass
        except Exception:
            pass

    async def _to_every_station(self, message: bytes, every_s: float) -> None:
        """``message`` on each station's socket once per ``every_s``, the sends spread over it."""
        while True:
            for sid in list(self.conns):
                conn = self.conns.get(sid)
                if conn is not None:
                    try:
                        await conn.send(message)
                    except Exception:
                        pass
                await asyncio.sleep(every_s / max(1, len(self.conns)))

    async def _thumbnails(self, every_s: float) -> None:
        """Each station's ``thumb`` every ``every_s``, as agents send theirs (the hub then
        decodes no keyframes for them)."""
        from bench.media_peers import agent_thumbnail, load_clip

        jpeg = await asyncio.to_thread(lambda: agent_thumbnail(load_clip()))
        await self._to_every_station(msgpack.packb({"t": "thumb", "jpeg": jpeg}, use_bin_type=True), every_s)

    async def start(self, url: str, mode: str, ids: list[str], tokens: dict[str, str] | None = None,
                    heartbeat_s: float = 5.0, thumbnail_s: float = 0.0) -> dict[str, Any]:
        """Open a station socket per id; with ``thumbnail_s``, each sends a thumbnail that often."""
        self.url, self.mode, self.tokens, self.heartbeat_s = url, mode, tokens or {}, heartbeat_s
        gate = asyncio.Semaphore(32)

        async def one(sid: str) -> None:
            async with gate:
                await self._open(sid)

        await asyncio.gather(*(one(s) for s in ids))
        self._spawn(self._to_every_station(HB, self.heartbeat_s))
        if thumbnail_s and mode == "hub":
            self._spawn(self._thumbnails(thumbnail_s))
        return {"connected": len(self.conns)}

    async def _flip(self, sid: str, gap: float) -> None:
        try:
            if self.mode == "hub":
                conn = self.conns.pop(sid)
                await conn.close()            # clean close → offline
                await asyncio.sleep(gap)
                await self._open(sid)          # new session → online
            else:
                conn = self.conns[sid]
                for state in ("offline", "online"):
                    self.seq += 1
                    await conn.send(msgpack.packb(
                        {"t": "presence", "seq": self.seq, "id": sid, "state": state,
                         "status": "online" if state == "online" else "missing",
                         "since": time.time(), "reason": None if state == "online" else "closed"},
                        use_bin_type=True))
                    if state == "offline":
                        await asyncio.sleep(gap)
        except Exception:
            self.errors += 1

    async def flip(self, events: int, rate: float) -> dict[str, Any]:
        """``events`` presence changes at ``rate`` per second: (offline, online) pairs."""
        ids = list(self.conns)
        gap = 1.0 / rate
        loop = asyncio.get_running_loop()
        start = loop.time()
        pending = []
        for k in range(events // 2):
            delay = start + 2 * k * gap - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(asyncio.ensure_future(self._flip(ids[k % len(ids)], gap)))
        await asyncio.wait_for(asyncio.gather(*pending), 120)
        return {"events": 2 * (events // 2), "seconds": loop.time() - start, "errors": self.errors,
                "connected": len(self.conns)}


async def main() -> None:
    raise_fd_limit()
    kind = sys.argv[1]
    if kind == "watch":
        pool = WatchPool()
        await serve_worker({"connect": pool.connect, "stats": lambda: _coro(pool.stats()), "reset": pool.reset,
                            "latencies": pool.latencies, "close_all": pool.close_all})
    else:
        st = Stations()
        await serve_worker({"start": st.start, "flip": st.flip})


async def _coro(value: Any) -> Any:
    return value


if __name__ == "__main__":
    asyncio.run(main())
