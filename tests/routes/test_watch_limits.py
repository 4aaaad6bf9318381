"""``/ws/watch`` limits on a real hub: sockets per address and per node, a ping flood, and
the operator view only for same-origin pages (docs/protocol.md, close codes 4429, 1013, 4403)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from websockets.typing import Origin

from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, wait_until
from tests.wsclient import JSON, Client, heartbeat, presence_of, station

PRIVATE_ID = "opd.bakesbangpol"


async def first_or_close_code(client: Client) -> str | int:
    try:
        return str((await client.recv())["t"])
    except Exception:
        code = client.connection.close_code
        assert code is not None, "neither a message nor a close"
        return code


async def test_500_watch_sockets_from_one_address(hub: RunningHub) -> None:
    """Beyond `presence.watchers_per_address` (default 100) every socket is refused with 4429;
    the earlier ones keep receiving events."""
    cap = hub.hub.settings.presence.watchers_per_address
    clients: list[Client] = []
    try:
        results = []
        for _ in range(500):
            client = await Client.open(f"{hub.ws}/ws/watch", JSON)
            clients.append(client)
            results.append(await first_or_close_code(client))
        assert results == ["snapshot"] * cap + [4429] * (500 - cap)
        admitted = clients[:cap]
        token = await hub.token("35.09.01")
        agent, _ = await station(hub.ws, "35.09.01", token)
        beating = asyncio.create_task(heartbeat(agent))
        try:
            await asyncio.gather(*(c.recv_until(presence_of("35.09.01", "online")) for c in admitted))
        finally:
            beating.cancel()
            await agent.close()
        assert hub.hub.watchers.admission.total == cap
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_a_node_refuses_watchers_beyond_its_total_with_1013(tmp_path: Path) -> None:
    running = await start_hub(hub_settings(tmp_path, presence={"max_watchers": 2}))
    clients = [await Client.open(f"{running.ws}/ws/watch", JSON) for _ in range(3)]
    try:
        assert [await first_or_close_code(c) for c in clients] == ["snapshot", "snapshot", 1013]
        await clients[0].close()  # a place frees up once the server has seen the close
        await wait_until(lambda: running.hub.watchers.admission.total == 1, message="the place to free up")
        again = await Client.open(f"{running.ws}/ws/watch", JSON)
        clients.append(again)
        assert await first_or_close_code(again) == "snapshot"
    finally:
        await asyncio.gather(*(c.close() for c in clients))
        await stop_hub(running)


async def test_a_ping_flood_is_closed_with_4429(hub: RunningHub) -> None:
    calm = await Client.open(f"{hub.ws}/ws/watch", JSON)
    flood = await Client.open(f"{hub.ws}/ws/watch", JSON)
    try:
        assert (await calm.recv())["t"] == (await flood.recv())["t"] == "snapshot"
        for _ in range(hub.hub.settings.presence.watch_burst + 5):
            await flood.send({"t": "ping"})
        assert await flood.closed_with() == 4429
        await calm.send({"t": "ping"})  # the other watcher is untouched
        assert (await calm.recv_until(lambda m: m["t"] == "pong"))["t"] == "pong"
    finally:
        await calm.close()
        await flood.close()


async def operator_cookie(hub: RunningHub) -> str:
    await hub.hub.auth.add_operator("budi", "rahasia-sekali")
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
    return f"jaga_session={response.cookies['jaga_session']}"


async def test_the_operator_view_needs_a_same_origin_page(hub: RunningHub) -> None:
    cookie = await operator_cookie(hub)

    async def open_with(origin: str | None, with_cookie: bool = True) -> tuple[Client, str | int, bool]:
        headers = {"Cookie": cookie} if with_cookie else {}
        client = await Client.open(f"{hub.ws}/ws/watch", JSON, origin=Origin(origin) if origin else None,
                                   additional_headers=headers)
        try:
            first = await client.recv()
        except Exception:
            code = client.connection.close_code
            assert code is not None
            return client, code, False
        return client, str(first["t"]), any(s["id"] == PRIVATE_ID for s in first["stations"])

    cases = [
        (f"http://127.0.0.1:{hub.port}", True, ("snapshot", True)),  # the wall, same origin (Host)
        (None, True, ("snapshot", True)),  # not a browser: no page can have made it
        ("https://evil.example", True, (4403, False)),  # another site, riding the cookie
        ("https://evil.example", False, ("snapshot", False)),  # the public view may be embedded anywhere
    ]
    opened = []
    try:
        for origin, with_cookie, want in cases:
            client, result, sees_private = await open_with(origin, with_cookie)
            opened.append(client)
            assert (result, sees_private) == want, (origin, with_cookie)
    finally:
        await asyncio.gather(*(c.close() for c in opened))
