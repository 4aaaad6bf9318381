"""What a Python developer would write instead: Starlette + ``broadcaster`` (memory backend).

One subscription — an unbounded queue and a task — per watcher, ``await send_bytes()`` per
event. Served by the same uvicorn configuration as the hub (websockets-sansio, no
permessage-deflate), so the difference measured is the application's fan-out, not the server.

    python -m bench.servers.naive_broadcaster PORT_FILE
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from broadcaster import Broadcast
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bench.wsload import HB

broadcast = Broadcast("memory://")


async def station(ws: WebSocket) -> None:
    await ws.accept()
    try:
        while True:
            frame = await ws.receive_bytes()
            if frame != HB:
                await broadcast.publish("events", frame)
    except WebSocketDisconnect:
        pass


async def watch(ws: WebSocket) -> None:
    await ws.accept()
    try:
        async with broadcast.subscribe("events") as subscriber:
            while True:  # until the socket fails; get() raises Unsubscribed only after this block
                event = await subscriber.get()
                # broadcaster types Event.message as str; the memory backend hands back our bytes
                await ws.send_bytes(event.message)  # type: ignore[arg-type]  # bytes at run time (above)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    await broadcast.connect()
    yield
    await broadcast.disconnect()


app = Starlette(routes=[WebSocketRoute("/ws/station", station), WebSocketRoute("/ws/watch", watch)],
                lifespan=lifespan)


async def main() -> None:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, ws="websockets-sansio", ws_per_message_deflate=False,
                            lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    Path(sys.argv[1]).write_text(str(server.servers[0].sockets[0].getsockname()[1]))
    await task


if __name__ == "__main__":
    asyncio.run(main())
