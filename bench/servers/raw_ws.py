"""The raw limit of the stack: ``websockets``' own server and ``websockets.broadcast()``.

Station sockets (``/ws/station``) send pre-encoded presence frames; each one is broadcast as
is to every socket on ``/ws/watch``. Heartbeats are dropped. Nothing is decoded, nothing
encoded, no backpressure (broadcast() buffers in server memory) — the floor of what any
Python fan-out on this stack can cost.

    python -m bench.servers.raw_ws PORT_FILE
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from websockets.asyncio.server import ServerConnection, broadcast, serve

from bench.wsload import HB

watchers: set[ServerConnection] = set()


async def handler(ws: ServerConnection) -> None:
    if ws.request is not None and ws.request.path.startswith("/ws/station"):
        async for frame in ws:
            if frame != HB:
                broadcast(watchers, frame)
        return
    watchers.add(ws)
    try:
        await ws.wait_closed()
    finally:
        watchers.discard(ws)


async def main() -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=2**20) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        Path(sys.argv[1]).write_text(str(port))
        await stop


if __name__ == "__main__":
    asyncio.run(main())
