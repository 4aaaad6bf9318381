"""A private ``redis-server`` for tests: its own free port and temp dir, never the shared 6379.

``tests/conftest.py`` registers this module's fixtures (``redis_server``, ``redis_url``) for
every test folder: ask for them as arguments, don't import them. Without the binary the tests
skip, except on CI (``CI=true``), where a missing Redis is a failure, not a silent pass.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.kit import free_port, timeout, wait_until_sync

BINARY = "redis-server"


class RedisServer:
    """One redis-server process; ``stop()`` and ``start()`` again keep port and directory."""

    def __init__(self, directory: Path, persistent: bool = False) -> None:
        self.directory = directory
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which(BINARY)
        if binary is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed (required on CI)")
            pytest.skip("redis-server is not installed")
        self.directory.mkdir(parents=True, exist_ok=True)
        persistence = (["--appendonly", "yes", "--appendfsync", "always"] if self.persistent
                       else ["--appendonly", "no"])
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
             "--dir", str(self.directory), "--logfile", str(self.directory / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready()

    def wait_ready(self) -> None:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)

        def answers() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {(self.directory / 'redis.log').read_text()[-2000:]}")
            try:
                return bool(client.ping())
            except redis.exceptions.RedisError:
                return False

        try:
            wait_until_sync(answers, timeout=10, message="redis-server to answer PING", every=0.02)
        finally:
            client.close()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout(10))
        self.process = None

    def flush(self) -> None:
        client = redis.Redis(port=self.port)
        try:
            client.flushall()
        finally:
            client.close()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A clean database on the session's private server (ours alone, so flushing is fine)."""
    redis_server.flush()
    return redis_server.url
