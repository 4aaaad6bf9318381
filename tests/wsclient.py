"""Small real WebSocket clients for tests (the `websockets` library over real sockets)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import msgpack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.kit import timeout

MSGPACK = "jaga.v1.msgpack"
JSON = "jaga.v1.json"


class Client:
    def __init__(self, connection: ClientConnection, subprotocol: str) -> None:
        self.connection = connection
        self.subprotocol = subprotocol

    @classmethod
    async def open(cls, url: str, subprotocol: str = MSGPACK, **kwargs: Any) -> Client:
        connection = await connect(url, subprotocols=[Subprotocol(subprotocol)], open_timeout=timeout(5), **kwargs)
        return cls(connection, subprotocol)

    async def send(self, message: dict[str, Any]) -> None:
        if self.subprotocol == MSGPACK:
            await self.connection.send(msgpack.packb(message, use_bin_type=True))
        else:
            await self.connection.send(json.dumps(message))

    async def send_raw(self, frame: bytes | str) -> None:
        await self.connection.send(frame)

    async def recv(self, wait: float = 5.0) -> dict[str, Any]:
        frame = await asyncio.wait_for(self.connection.recv(), timeout(wait))
        message: dict[str, Any] = msgpack.unpackb(frame, raw=False) if isinstance(frame, bytes) else json.loads(frame)
        return message

    async def recv_until(self, match: Callable[[dict[str, Any]], object], wait: float = 5.0,
                         into: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """Read messages until one satisfies ``match`` (a predicate), appending each one read
        (that one too) to ``into`` if given; fail after ``wait``."""

        async def scan() -> dict[str, Any]:
            while True:
                message = await self.recv(wait)
                if into is not None:
                    into.append(message)
                if match(message):
                    return message

        return await asyncio.wait_for(scan(), timeout(wait))

    async def closed_with(self, wait: float = 5.0) -> int | None:
        """Read until the server closes; return its close code."""
        try:
            while True:
                await asyncio.wait_for(self.connection.recv(), timeout(wait))
        except ConnectionClosed:
            pass
        return self.connection.close_code

    async def close(self) -> None:
        await self.connection.close()

    def abort(self) -> None:
        """Drop the TCP connection without a close frame, like a pulled network cable."""
        self.connection.transport.abort()


async def station(hub_ws: str, station_id: str, token: str,
                  subprotocol: str = MSGPACK) -> tuple[Client, dict[str, Any]]:
    client = await Client.open(f"{hub_ws}/ws/station", subprotocol)
    await client.send({"t": "hello", "station": station_id, "token": token, "agent": "test", "version": "0"})
    welcome = await client.recv()
    assert welcome["t"] == "welcome", welcome
    return client, welcome


async def heartbeat(client: Client, every: float = 0.1) -> None:
    """Send heartbeats at an agent's cadence until cancelled or the connection closes (run it
    as a task beside the test)."""
    try:
        while True:
            await client.send({"t": "hb"})
            await asyncio.sleep(every)  # the cadence of a real agent, not a wait for state
    except ConnectionClosed:
        return


def presence_of(station_id: str, state: str) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("t") == "presence" and m.get("id") == station_id and m.get("state") == state
