"""The real client behind reverse proxies, end to end on a real uvicorn: a forged
``X-Forwarded-For`` from a peer that is not a trusted proxy changes nothing (per-address limits
still hit the real peer), and from a trusted proxy it is honoured (clients behind the proxy
get separate limits), on HTTP (the login lock-out) and on WebSocket (the watch cap) alike;
``jaga-hub serve`` does the same; and the nginx example of docs/scaling.md, run as a real
nginx, passes the client's address and WebSocket upgrades through."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.kit import (
    REPO,
    HubProcess,
    RunningHub,
    free_port,
    hub_settings,
    start_hub,
    stop_hub,
    timeout,
    wait_until_sync,
)
from tests.wsclient import JSON, Client

OPERATOR, PASSWORD = "budi", "rahasia-sekali"
LIMITS: dict[str, dict[str, Any]] = {"auth": {"login_attempts": 2}, "presence": {"watchers_per_address": 2}}


def _sections(trusted: list[str]) -> dict[str, dict[str, Any]]:
    return {**LIMITS, "hub": {"trusted_proxies": trusted}}


@pytest.fixture
async def untrusting(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub trusting nobody (the default) but with low limits."""
    running = await start_hub(hub_settings(tmp_path, **LIMITS))
    await running.hub.auth.add_operator(OPERATOR, PASSWORD)
    try:
        yield running
    finally:
        await stop_hub(running)


@pytest.fixture
async def behind_proxy(tmp_path: Path) -> AsyncIterator[RunningHub]:
    """A hub that trusts the test client's address (127.0.0.1) as its reverse proxy."""
    running = await start_hub(hub_settings(tmp_path, **_sections(["127.0.0.1"])))
    await running.hub.auth.add_operator(OPERATOR, PASSWORD)
    try:
        yield running
    finally:
        await stop_hub(running)


async def login(http: httpx.AsyncClient, username: str, password: str, forwarded: str | None) -> int:
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    response = await http.post("/api/v1/auth/login", json={"username": username, "password": password},
                               headers=headers)
    return response.status_code


async def watch(url: str, forwarded: str | None = None, **kwargs: Any) -> tuple[Client, str | int]:
    """Open ``/ws/watch``; the first message's type, or the close code if refused."""
    headers = {"X-Forwarded-For": forwarded} if forwarded else {}
    client = await Client.open(f"{url}/ws/watch", JSON, additional_headers=headers, **kwargs)
    try:
        first = await client.recv()
    except Exception:
        code = client.connection.close_code
        assert code is not None
        return client, code
    return client, str(first["t"])


async def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(untrusting: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=untrusting.http) as http:
        # Each wrong password claims another address; all of them are 127.0.0.1's (the lock-out
        # counts per operator name and client address).
        assert await login(http, OPERATOR, "wrong-password", "198.51.100.1") == 401
        assert await login(http, OPERATOR, "wrong-password", "198.51.100.2") == 401
        assert await login(http, OPERATOR, "wrong-password", "198.51.100.3") == 429
        assert await login(http, OPERATOR, PASSWORD, "198.51.100.4") == 429  # this address is locked out
    opened = [await watch(untrusting.ws, f"198.51.100.{i}") for i in range(3)]
    try:
        assert [result for _, result in opened] == ["snapshot", "snapshot", 4429]
    finally:
        for client, _ in opened:
            await client.close()


async def test_a_forwarded_for_from_a_trusted_proxy_is_honoured(behind_proxy: RunningHub) -> None:
    async with httpx.AsyncClient(base_url=behind_proxy.http) as http:
        # Client X guesses, and prepends forged addresses of its own: the proxy's entry counts.
        assert await login(http, OPERATOR, "wrong-password", "6.6.6.1, 203.0.113.7") == 401
        assert await login(http, OPERATOR, "wrong-password", "6.6.6.2, 203.0.113.7") == 401
        assert await login(http, OPERATOR, "wrong-password", "6.6.6.3, 203.0.113.7") == 429
        # Client Y, behind the same proxy, is not locked out of the same name by X.
        assert await login(http, OPERATOR, PASSWORD, "203.0.113.8") == 200
    opened = [await watch(behind_proxy.ws, address)
              for address in ("203.0.113.7", "203.0.113.7", "203.0.113.8", "203.0.113.8", "203.0.113.7")]
    try:
        assert [result for _, result in opened] == ["snapshot"] * 4 + [4429]
    finally:
        for client, _ in opened:
            await client.close()


def test_serve_ignores_forwarded_for_by_default(tmp_path: Path) -> None:
    """``jaga-hub serve`` does not let uvicorn believe 127.0.0.1's X-Forwarded-For either."""
    process = HubProcess(tmp_path, **LIMITS)
    process.start_blocking()
    try:
        with httpx.Client(base_url=process.http) as http:
            codes = [http.post("/api/v1/auth/login", json={"username": OPERATOR, "password": "wrong-password"},
                               headers={"X-Forwarded-For": f"198.51.100.{i}"}).status_code
                     for i in range(3)]
        assert codes == [401, 401, 429]
    finally:
        process.stop()


# -- the documented nginx in front of a real hub ------------------------------------------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
PROXY_ADDRESS = "127.0.0.2"  # loopback aliases: nginx and each client get an address of their own


def documented_nginx() -> tuple[str, str]:
    """The ``map`` and the ``location /`` block of the nginx example in docs/scaling.md."""
    text = (REPO / "docs" / "scaling.md").read_text(encoding="utf-8")
    block = re.search(r"```nginx\n(.*?)```", text, re.S)
    assert block, "docs/scaling.md lost its nginx example"
    example = block.group(1)
    maps = "\n".join(re.findall(r"^map .*?\}$", example, re.M | re.S))
    location = re.search(r"^( *location / \{.*?^ *\})", example, re.M | re.S)
    assert maps and location, example
    return maps, location.group(1)


@pytest.fixture
def nginx(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start nginx in front of a port given later: yields ``start(hub_port) -> proxy URL``."""
    if NGINX is None:
        pytest.skip("nginx is not installed (Debian: nginx-light)")
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    processes: list[subprocess.Popen[bytes]] = []

    def start(hub_port: int) -> str:
        maps, location = documented_nginx()
        for _ in range(5):  # a probed free port may be taken meanwhile: probe again
            port = free_port(PROXY_ADDRESS)
            temp = "\n".join(f"  {kind}_temp_path {prefix}/{kind};" for kind in
                             ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
            (prefix / "nginx.conf").write_text(f"""
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
{temp}
  {maps}
  upstream jaga {{ server 127.0.0.1:{hub_port}; }}
  server {{
    listen {PROXY_ADDRESS}:{port};
{location}
  }}
}}
""")
            with (prefix / "logs" / "stderr.log").open("ab") as stderr:  # nginx keeps its own copy
                process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"),
                                            "-g", "daemon off;"], stderr=stderr)
            processes.append(process)

            def answers(process: subprocess.Popen[bytes] = process, port: int = port) -> bool:
                if process.poll() is not None:
                    return True  # exited: the port was taken meanwhile, or a bad config
                with socket.socket() as probe:
                    return probe.connect_ex((PROXY_ADDRESS, port)) == 0

            wait_until_sync(answers, timeout=10, message="nginx to listen")
            if process.poll() is None:
                return f"{PROXY_ADDRESS}:{port}"
        raise RuntimeError(f"nginx did not start: {(prefix / 'logs' / 'stderr.log').read_text()}")

    yield start
    for process in processes:
        if process.poll() is None:
            process.terminate()
            process.wait(timeout(10))


async def test_behind_the_documented_nginx_each_client_keeps_its_own_address(tmp_path: Path, nginx: Any) -> None:
    running = await start_hub(hub_settings(tmp_path, **_sections(["127.0.0.1"])))  # nginx connects from there
    await running.hub.auth.add_operator(OPERATOR, PASSWORD)
    proxy = await asyncio.to_thread(nginx, running.port)

    def client_at(address: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"http://{proxy}",
                                 transport=httpx.AsyncHTTPTransport(local_address=address))

    opened: list[Client] = []
    try:
        async with client_at("127.0.0.5") as x, client_at("127.0.0.6") as y, client_at("127.0.0.7") as z:
            # X guesses passwords until locked out; Y is not; Z forges Y's address and is still Z.
            assert await login(x, OPERATOR, "wrong-password", None) == 401
            assert await login(x, OPERATOR, "wrong-password", None) == 401
            assert await login(x, OPERATOR, PASSWORD, None) == 429
            assert await login(z, OPERATOR, "wrong-password", "127.0.0.5") == 401
            assert await login(z, OPERATOR, "wrong-password", "127.0.0.6") == 401
            assert await login(z, OPERATOR, "wrong-password", "127.0.0.8") == 429
            assert await login(y, OPERATOR, PASSWORD, None) == 200
        # WebSockets pass the proxy (upgrade headers) and are counted per real client.
        results = []
        for address in ("127.0.0.5", "127.0.0.5", "127.0.0.6", "127.0.0.5"):
            client, result = await watch(f"ws://{proxy}", local_addr=(address, 0))
            opened.append(client)
            results.append(result)
        assert results == ["snapshot", "snapshot", "snapshot", 4429]
    finally:
        for client in opened:
            await client.close()
        await stop_hub(running)
