"""The test kit: timeouts, waiting, and test hubs, in one place for every test folder.

**One timeout factor.** Every duration a test waits is written in nominal seconds and scaled
by ``JAGA_TEST_TIMEOUT_FACTOR`` (default 1) through :func:`timeout`, as websockets' own tests
do: ``JAGA_TEST_TIMEOUT_FACTOR=3 make test`` gives a slow or busy machine three times as long
without touching a test. Helpers that take a duration (:func:`wait_until`, ``Client.recv``,
``Viewer.wait_for``, ``Agent.wait_for`` …) take it nominal and scale it themselves; call
:func:`timeout` only where a duration goes straight to a library (``asyncio.wait_for``,
``subprocess.run``, Playwright).

**One way to wait.** :func:`wait_until` (and :func:`wait_until_sync` for synchronous code)
waits until a predicate holds and returns its value, or raises :class:`TimeoutError` naming
what it waited for. Given an :class:`asyncio.Event` that fires on every change it re-checks
on each; without one it polls. Polling is for state that has no event of its own; a test
never sleeps to "let things settle".

**Test hubs.** :func:`hub_config` is the configuration every test hub starts from (loopback,
short heartbeats, every day a working day, its own ``data_dir``), as a mapping;
:func:`hub_settings` makes it a ``Settings``. :func:`start_hub` / :func:`stop_hub` run a hub in
the test's own event loop on a real uvicorn, port 0; :class:`HubProcess` runs ``jaga-hub
serve`` as a separate process (for ``kill -9`` and crash recovery) on the same configuration,
written to a ``config.toml``; :func:`run_cli` runs any other ``jaga-hub`` command.

**Citizens' questions.** :func:`ask` asks as a watch page does (challenge, proof solved here
by :func:`solve_proof` from the documented rule, not the hub's code); :func:`operator_client`
logs an operator in with the CSRF header set; :func:`moderate` applies one action.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx
import uvicorn

from hub.app import Hub, create_app
from hub.cli import WS_MAX_SIZE
from hub.server import HubServer
from hub.settings import Settings, settings_from_mapping

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_FACTOR = float(os.environ.get("JAGA_TEST_TIMEOUT_FACTOR", "1"))

T = TypeVar("T")


def timeout(seconds: float) -> float:
    """``seconds`` scaled by ``JAGA_TEST_TIMEOUT_FACTOR``."""
    return seconds * TIMEOUT_FACTOR


_scaled = timeout  # for the helpers below whose parameter is called ``timeout``


# -- waiting ---------------------------------------------------------------------------------


@overload
async def wait_until(predicate: Callable[[], Awaitable[T | None]], timeout: float = 10.0, message: str = "",
                     *, every: float = 0.02, changed: asyncio.Event | None = None) -> T: ...


@overload
async def wait_until(predicate: Callable[[], T | None], timeout: float = 10.0, message: str = "",
                     *, every: float = 0.02, changed: asyncio.Event | None = None) -> T: ...


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "",
                     *, every: float = 0.02, changed: asyncio.Event | None = None) -> Any:
    """Wait until ``predicate()`` (plain or async) returns something truthy, and return it.

    ``timeout`` is nominal seconds (scaled here). With ``changed``, the predicate is checked
    again each time that event is set (the caller's code sets it on every change); without
    it, every ``every`` seconds. An exception from the predicate ends the wait with it.
    """
    limit = _scaled(timeout)
    deadline = asyncio.timeout(limit)
    try:
        async with deadline:
            while True:
                value = predicate()
                if inspect.isawaitable(value):
                    value = await value
                if value:
                    return value
                if changed is not None:
                    changed.clear()
                    await changed.wait()
                else:
                    await asyncio.sleep(every)  # polling: this state has no event of its own
    except TimeoutError:
        if not deadline.expired():  # the predicate's own, not ours
            raise
        raise TimeoutError(f"waited {limit:g} s for {message or predicate}") from None


def wait_until_sync(predicate: Callable[[], T | None], timeout: float = 10.0, message: str = "",
                    *, every: float = 0.05) -> T:
    """:func:`wait_until` for synchronous code (no event loop): polls ``predicate``."""
    limit = _scaled(timeout)
    deadline = time.monotonic() + limit
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {limit:g} s for {message or predicate}")
        time.sleep(every)  # polling: this state has no event of its own


# -- configuration -------------------------------------------------------------------------

TEST_REGISTRY = """id,name,kind,kecamatan,public
35.09.01,Kecamatan Jombang,kecamatan,Jombang,true
35.09.01.2001,Desa Padomasan,desa,Jombang,true
35.09.01.2002,Desa Keting,desa,Jombang,true
35.09.02,Kecamatan Kencong,kecamatan,Kencong,true
35.09.02.1001,Kelurahan Kencong,kelurahan,Kencong,true
opd.dinkes,Dinas Kesehatan,opd,,true
opd.bakesbangpol,"Badan Kesatuan Bangsa dan Politik, Rahasia",opd,,false
"""


def corruptions(sources: list[bytes], seed: int, per_source: int, most_changed: int = 2,
                new_byte: Callable[[random.Random], int] | None = None) -> Iterator[bytes]:
    """Hostile variants of well-formed messages, the same every run: every cut of each source,
    then ``per_source`` copies with 1 to ``most_changed`` bytes replaced (by ``new_byte``, else
    any byte)."""
    rng = random.Random(seed)
    for source in sources:
        for cut in range(len(source) + 1):
            yield source[:cut]
        for _ in range(per_source):
            data = bytearray(source)
            for _ in range(rng.randint(1, most_changed)):
                data[rng.randrange(len(data))] = new_byte(rng) if new_byte else rng.randrange(256)
            yield bytes(data)


def free_port(host: str = "127.0.0.1", kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port on ``host`` nobody holds right now (TCP, or ``kind`` SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A UDP port nobody holds right now, for a test hub's shared media port (the default
    7882 would collide between test runs on one machine)."""
    return free_port(host, socket.SOCK_DGRAM)


def hub_config(home: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A test hub's configuration as a mapping: ``home`` holds its data and registry.

    ``home/stations.csv`` is written with :data:`TEST_REGISTRY` unless it exists (write your
    own first for another registry). ``sections`` replace single keys: ``presence={"timeout_s": 3}``.
    """
    registry = home / "stations.csv"
    if not registry.exists():
        home.mkdir(parents=True, exist_ok=True)
        registry.write_text(TEST_REGISTRY)
    raw: dict[str, Any] = {
        "hub": {"host": "127.0.0.1", "port": 0, "data_dir": str(home / "data"), "checkpoint_s": 0.2},
        "stations": {"registry": str(registry)},
        "presence": {"heartbeat_s": 0.2, "timeout_s": 1.0, "hello_timeout_s": 1.0, "thumbnail_batch_s": 0.05},
        "schedule": {"workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "00:00",
                     "end": "23:59", "national_holidays": False},
        "media": {"host_addresses": ["127.0.0.1"], "udp_port": free_udp_port()},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return raw


def hub_settings(home: Path, **sections: dict[str, Any]) -> Settings:
    """:func:`hub_config` as validated settings."""
    return settings_from_mapping(hub_config(home, **sections), base_dir=str(home))


def write_config(home: Path, **sections: dict[str, Any]) -> Path:
    """:func:`hub_config` written to ``home/config.toml``, for a hub or CLI in another process."""
    lines = []
    for name, values in hub_config(home, **sections).items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
    config = home / "config.toml"
    config.write_text("\n".join(lines) + "\n")
    return config


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def run_cli(config: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """``jaga-hub --config CONFIG ARGS…`` as a real process; its output captured as text."""
    return subprocess.run([sys.executable, "-m", "hub", "--config", str(config), *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout(60), cwd=REPO)


# -- a hub in the test's event loop ----------------------------------------------------------


class _InProcessServer(HubServer):
    """uvicorn inside the test's event loop: the test runner keeps its own signal handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _OnLoopback:
    """The addresses of a hub listening on ``host`` (127.0.0.1, or a lab's address):``port``."""

    port: int
    host: str = "127.0.0.1"

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{self.host}:{self.port}"


@dataclass
class RunningHub(_OnLoopback):
    hub: Hub
    port: int
    server: HubServer
    task: asyncio.Task[None]
    host: str = "127.0.0.1"

    async def token(self, station: str) -> str:
        return await self.hub.auth.rotate_token(station)


async def start_hub(settings: Settings, clock: Any = None, port: int = 0,
                    per_message_deflate: bool = False, host: str = "127.0.0.1") -> RunningHub:
    """A hub on a real uvicorn, configured as ``jaga-hub serve`` does; ``port`` 0 picks a free
    one (pass the old one to restart a hub where its agents expect it); ``host``: where it
    listens (a network lab's host address, for agents in the lab)."""
    app = create_app(settings, clock) if clock else create_app(settings)
    config = uvicorn.Config(app, host=host, port=port, ws="websockets-sansio", ws_max_size=WS_MAX_SIZE,
                            ws_per_message_deflate=per_message_deflate, lifespan="on", log_level="warning",
                            proxy_headers=False)  # as `serve`: the app alone reads X-Forwarded-For
    server = _InProcessServer(config)
    task = asyncio.create_task(server.serve())

    def listening() -> bool:
        if task.done():
            task.result()  # raises what stopped it
            raise RuntimeError("the hub stopped before it listened")
        return server.started

    await wait_until(listening, timeout=15, message="the hub to listen", every=0.01)  # uvicorn has no event
    bound = server.servers[0].sockets[0].getsockname()[1]
    hub: Hub = app.state.hub
    if settings.hub.port == 0:  # as `serve --port 0` does: other nodes and redirects need the real port
        hub.settings = hub.settings.replace(hub={"port": bound})
    return RunningHub(hub, bound, server, task, host)


def cluster_node(redis_url: str, name: str, ttl_s: float = 1.0) -> dict[str, Any]:
    """The ``[hub]`` keys of one node of a cluster on ``redis_url``."""
    return {"backend": "redis", "redis_url": redis_url, "node_id": name, "node_ttl_s": ttl_s}


async def stop_hub(running: RunningHub) -> None:
    running.server.should_exit = True
    await asyncio.wait_for(running.task, timeout(20))


# -- a hub in its own process -------------------------------------------------------------


class HubProcess(_OnLoopback):
    """``jaga-hub serve`` as a real process, on :func:`hub_config` plus ``sections``.

    ``start()`` (or ``start_blocking()`` outside an event loop) launches it and waits until it
    listens; the first start picks a free port, later ones reuse it, so agents find a restarted
    hub where they left it. ``stop()`` is SIGTERM (a clean shutdown), ``kill()`` SIGKILL; both
    wait for the exit and do nothing to a process already gone. Its stdout and stderr go to
    ``home/hub.log`` (:attr:`log`), kept across restarts.
    """

    def __init__(self, home: Path, **sections: dict[str, Any]) -> None:
        self.home = home
        self.config = write_config(home, **sections)
        self.database = home / "data" / "jaga.db"
        self.log = home / "hub.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._port_file = home / "port"

    def token(self, station: str) -> str:
        """A fresh token for ``station``, minted by ``jaga-hub stations token``."""
        minted = self.cli("stations", "token", station)
        assert minted.returncode == 0, minted.stderr
        return minted.stdout.strip().splitlines()[-1]

    def cli(self, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return run_cli(self.config, *args, stdin=stdin)

    async def start(self) -> None:
        self._launch()
        await wait_until(self._listening, timeout=30, message=f"the hub process to listen ({self.log})", every=0.05)
        self.port = int(self._port_file.read_text())

    def start_blocking(self) -> None:
        self._launch()
        wait_until_sync(self._listening, timeout=30, message=f"the hub process to listen ({self.log})")
        self.port = int(self._port_file.read_text())

    def stop(self) -> None:
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def intervals(self) -> list[dict[str, Any]]:
        """The ledger's interval rows, by station, start and id (read while it runs, or after)."""
        connection = sqlite3.connect(self.database)
        connection.row_factory = sqlite3.Row
        try:
            return [dict(r) for r in connection.execute("SELECT * FROM intervals ORDER BY station, start, id")]
        finally:
            connection.close()

    def _launch(self) -> None:
        assert self.process is None or self.process.poll() is not None, "already running"
        self._port_file.unlink(missing_ok=True)
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hub", "--config", str(self.config), "serve", "--port", str(self.port),
                 "--port-file", str(self._port_file)],
                stdout=sink, stderr=sink, cwd=REPO, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"the hub process exited ({self.process.returncode}): {self.log_text()[-3000:]}")
        return self._port_file.exists() and self._port_file.read_text().strip() != ""

    def _end(self, sig: int) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout(20))


# -- citizens' questions (docs/questions.md) -------------------------------------------------

OPERATOR, OPERATOR_PASSWORD = "budi", "rahasia-sekali"


def solve_proof(token: str, difficulty: int) -> str:
    """A nonce for a question challenge, computed as docs/questions.md says (not with the hub's
    own code): ``sha256(token + ":" + nonce)`` with ``difficulty`` leading zero bits. Give test
    hubs a low ``questions.difficulty`` (4–8) so this is quick."""
    nonce = 0
    while True:
        digest = int.from_bytes(hashlib.sha256(f"{token}:{nonce}".encode()).digest(), "big")
        if 256 - digest.bit_length() >= difficulty:
            return str(nonce)
        nonce += 1


async def proof_for(http: httpx.AsyncClient, station: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """A fresh challenge from the hub, solved: the ``proof`` of one question."""
    response = await http.get(f"/api/v1/stations/{station}/questions/challenge", headers=headers)
    assert response.status_code == 200, response.text
    challenge = response.json()
    return {"token": challenge["token"], "nonce": solve_proof(challenge["token"], challenge["difficulty"])}


async def ask(http: httpx.AsyncClient, station: str, text: str, name: str = "",
              headers: dict[str, str] | None = None) -> httpx.Response:
    """Ask as a watch page does: fetch a challenge, solve it, post the question with it."""
    proof = await proof_for(http, station, headers)
    return await http.post(f"/api/v1/stations/{station}/questions",
                           json={"text": text, "name": name, "proof": proof}, headers=headers)


async def operator_client(running: _OnLoopback, hub: Hub | None = None, name: str = OPERATOR) -> httpx.AsyncClient:
    """An ``httpx`` client logged in as operator ``name`` (created through ``hub`` — any node of
    a cluster — if it does not exist), with the CSRF header set. Close it with ``aclose()``."""
    if hub is not None and name not in await hub.credentials.operators():
        await hub.auth.add_operator(name, OPERATOR_PASSWORD)
    client = httpx.AsyncClient(base_url=running.http)
    login = await client.post("/api/v1/auth/login", json={"username": name, "password": OPERATOR_PASSWORD})
    assert login.status_code == 200, login.text
    client.headers["X-CSRF-Token"] = login.json()["csrf"]
    return client


async def moderate(operator: httpx.AsyncClient, question_id: str, action: str, **extra: Any) -> dict[str, Any]:
    """One moderation action through the API; the question's moderator view."""
    response = await operator.post(f"/api/v1/questions/{question_id}", json={"action": action, **extra})
    assert response.status_code == 200, response.text
    view: dict[str, Any] = response.json()["question"]
    return view
