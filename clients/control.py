"""The local control socket: ``jaga-station activity start "…"`` talks to the running agent.

TCP on 127.0.0.1 only (Windows has no unix sockets in every Python build we meet), port
``control_port`` of ``station.toml``. One JSON object per line each way::

    → {"cmd": "activity.start", "title": "Musyawarah Desa"}    ← {"ok": true, ...}
    → {"cmd": "activity.stop"}                                  ← {"ok": true}
    → {"cmd": "status"}                                         ← {"ok": true, "status": {...}}

Anyone logged in to the PC can use it, as anyone at the PC could use the camera; it binds
to loopback so nothing off the machine can.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

log = logging.getLogger("jaga.station.control")

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
MAX_LINE = 4096


async def serve(port: int, handler: Handler) -> asyncio.Server | None:
    """Listen on 127.0.0.1:``port``; None (logged) when the port is taken."""

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 5)
            try:
                request = json.loads(line[:MAX_LINE] or b"{}")
                if not isinstance(request, dict):
                    raise ValueError("request must be a JSON object")
                reply = await handler(request)
            except (ValueError, KeyError, TypeError) as exc:
                reply = {"ok": False, "error": str(exc)}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()

    try:
        return await asyncio.start_server(on_client, "127.0.0.1", port)
    except OSError as exc:
        log.error("control socket 127.0.0.1:%d not available (%s): is another jaga-station running? "
                  "`jaga-station activity` will not reach this one", port, exc.strerror or exc)
        return None


async def request(port: int, message: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    """Send one command to the agent on this PC; ConnectionError if none listens."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    try:
        writer.write(json.dumps(message).encode() + b"\n")
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), timeout)
        reply = json.loads(line or b"{}")
        return reply if isinstance(reply, dict) else {"ok": False, "error": "bad reply"}
    finally:
        writer.close()
