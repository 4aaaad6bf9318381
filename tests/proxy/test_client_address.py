"""Who the hub thinks the client is, through the shipped nginx (TLS, ``trusted_proxies =
["127.0.0.1"]``): the address nginx saw, whatever ``X-Forwarded-For`` a client sends; and
straight to the hub, a forged header changes nothing. Seen where it matters: the audit log
of logins (``login`` records the address, ``login.failed`` the actor ``anon@<address>``),
the per-address cap on watch sockets, and the scheme (the session cookie is ``Secure``
because nginx says the client used https).

Clients get loopback addresses of their own (127.0.0.5, .6, .7: every 127/8 address is
local on Linux); nginx reaches the hub from 127.0.0.1, the trusted proxy."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.kit import RunningHub
from tests.proxy.conftest import Proxied
from tests.proxy.tls import Tls
from tests.wsclient import JSON, Client

OPERATOR, PASSWORD = "budi", "rahasia-sekali"
FORGED = "203.0.113.9"


def client_at(base_url: str, address: str, tls: Tls | None = None) -> httpx.AsyncClient:
    verify: Any = tls.client_context() if tls is not None else True
    return httpx.AsyncClient(base_url=base_url,
                             transport=httpx.AsyncHTTPTransport(local_address=address, verify=verify))


async def login(http: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    return await http.post("/api/v1/auth/login", json={"username": OPERATOR, "password": password},
                           headers={"X-Forwarded-For": FORGED, "X-Forwarded-Proto": "http"})


async def last_audit(running: RunningHub) -> tuple[str, str, str]:
    entry = (await running.hub.credentials.audit_log(limit=1))[0]
    return entry["actor"], entry["action"], entry["detail"]


def session_cookie(response: httpx.Response) -> str:
    return next(c for c in response.headers.get_list("set-cookie") if c.startswith("jaga_session="))


async def test_the_hub_sees_the_address_nginx_saw(proxied: Callable[..., Awaitable[Proxied]], tls: Tls) -> None:
    deployment = await proxied(hub={"secure_cookies": False}, presence={"watchers_per_address": 2})
    running = deployment.running
    await running.hub.auth.add_operator(OPERATOR, PASSWORD)

    # Straight to the hub from an address that is not a trusted proxy: the header is ignored.
    async with client_at(running.http, "127.0.0.5") as direct:
        answer = await login(direct)
    assert answer.status_code == 200
    assert await last_audit(running) == (OPERATOR, "login", "127.0.0.5")
    assert "secure" not in session_cookie(answer).lower()  # plain http, and X-Forwarded-Proto ignored too

    # Through nginx: the client's own address, never the one it wrote.
    async with client_at(deployment.url, "127.0.0.6", tls) as proxied_client:
        answer = await login(proxied_client)
    assert answer.status_code == 200
    assert await last_audit(running) == (OPERATOR, "login", "127.0.0.6")
    assert "; secure" in session_cookie(answer).lower()  # nginx's X-Forwarded-Proto: https, not the client's

    async with client_at(deployment.url, "127.0.0.7", tls) as guesser:
        assert (await login(guesser, "wrong-password")).status_code == 401
    assert await last_audit(running) == ("anon@127.0.0.7", "login.failed", OPERATOR)

    # Even a client on the proxy's own host (127.0.0.1, a trusted address) cannot claim another
    # address: nginx replaces X-Forwarded-For. Appended ($proxy_add_x_forwarded_for), the hub
    # would get "203.0.113.9, 127.0.0.1", skip the trusted entry and believe the forged one.
    async with client_at(deployment.url, "127.0.0.1", tls) as local:
        assert (await login(local)).status_code == 200
    assert await last_audit(running) == (OPERATOR, "login", "127.0.0.1")

    # WebSockets through nginx count per real client too (watchers_per_address = 2).
    opened: list[Client] = []
    results: list[str | int] = []
    try:
        for address in ("127.0.0.6", "127.0.0.6", "127.0.0.7", "127.0.0.6"):
            client = await Client.open(f"{deployment.wss}/ws/watch", JSON, ssl=tls.client_context(),
                                       local_addr=(address, 0), additional_headers={"X-Forwarded-For": FORGED})
            opened.append(client)
            try:
                results.append(str((await client.recv())["t"]))
            except Exception:
                code = client.connection.close_code
                assert code is not None
                results.append(code)
    finally:
        for client in opened:
            await client.close()
    assert results == ["snapshot", "snapshot", "snapshot", 4429]
