"""A private coturn (Debian ``coturn``, binary ``turnserver``) for tests: its own ports and files.

Configured as docs/operations.md "TURN" tells an operator to (TURN REST credentials with
``use-auth-secret``, relaying to the hub's address only), minus TLS, on an address the test
owns: 127.0.0.1, or the host's end of a network lab. On loopback it also needs
``--allow-loopback-peers`` (coturn refuses to relay to 127.0.0.0/8 by default; never in
production). Without the binary the test is skipped, except on CI (``CI=true``), where that
is a failure.

The listening port and the relay ports come from one block of free ports below Linux's
ephemeral range (32768+), so no other socket is handed one of them while coturn starts.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.kit import timeout, wait_until_sync

BINARY = "turnserver"
SECRET = "jaga-test-turn-secret"
REALM = "jaga.test"
RELAY_PORTS = 32  # relay ports per coturn: a few allocations per test


def require_coturn() -> str:
    binary = shutil.which(BINARY)
    if binary is None:
        message = "coturn is not installed (apt-get install coturn)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + ": required on CI")
        pytest.skip(message)
    return binary


def _free(address: str, port: int, kinds: tuple[int, ...]) -> bool:
    for kind in kinds:
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind((address, port))
            except OSError:
                return False
    return True


def free_block(address: str, size: int) -> int:
    """The first port of ``size`` consecutive ports free for TCP and UDP on ``address``."""
    for _ in range(200):
        base = random.randrange(20000, 32000 - size)
        if all(_free(address, port, (socket.SOCK_STREAM, socket.SOCK_DGRAM)) for port in range(base, base + size)):
            return base
    raise RuntimeError(f"no block of {size} free ports on {address}")


class Coturn:
    """One ``turnserver``: ``start()`` waits until it accepts TCP, ``stop()`` ends it.

    ``peers``: the only addresses it relays to (the hub's media addresses); ``extra``: more
    ``turnserver`` options.
    """

    def __init__(self, directory: Path, listen: str = "127.0.0.1", peers: tuple[str, ...] = ("127.0.0.1",),
                 extra: tuple[str, ...] = ()) -> None:
        self.directory = directory
        self.listen = listen
        self.peers = peers
        self.extra = extra
        self.port = 0
        self.log = directory / "turnserver.log"
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, transport: str = "tcp") -> str:
        return f"turn:{self.listen}:{self.port}?transport={transport}"

    def command(self, binary: str) -> list[str]:
        base = free_block(self.listen, RELAY_PORTS + 2)
        self.port = base  # base + 1 stays free: coturn's alternate port, should it open one
        loopback = any(peer.startswith("127.") for peer in self.peers)
        return [
            binary, "-n",  # no config file: these options only
            f"--listening-ip={self.listen}", f"--relay-ip={self.listen}", f"--listening-port={self.port}",
            f"--min-port={base + 2}", f"--max-port={base + 1 + RELAY_PORTS}",
            "--use-auth-secret", f"--static-auth-secret={SECRET}", f"--realm={REALM}",
            "--no-tls", "--no-dtls", "--no-cli", "--no-multicast-peers",
            "--denied-peer-ip=0.0.0.0-255.255.255.255", *(f"--allowed-peer-ip={peer}" for peer in self.peers),
            *(["--allow-loopback-peers"] if loopback else []),
            "--log-file=stdout", "--simple-log", "--verbose",  # verbose: one line per allocation, refresh …
            f"--pidfile={self.directory / 'turnserver.pid'}", f"--db={self.directory / 'turndb'}",
            *self.extra,
        ]

    def start(self) -> None:
        binary = require_coturn()
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(self.command(binary), stdout=sink, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        wait_until_sync(self._accepting, timeout=15, message=f"coturn to listen on {self.listen}:{self.port}")

    def _accepting(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"coturn exited ({self.process.returncode}): {self.log_text()[-2000:]}")
        try:
            with socket.create_connection((self.listen, self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout(10))
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def allocated_for(self, name: str) -> bool:
        """Whether coturn logged a successful allocation for a username labelled ``name``."""
        return any(f":{name}>" in line and "ALLOCATE processed, success" in line
                   for line in self.log_text().splitlines())

    def refreshes_for(self, name: str) -> int:
        """How many allocation refreshes coturn accepted for a username labelled ``name``."""
        return sum(f":{name}>" in line and "REFRESH processed, success" in line
                   for line in self.log_text().splitlines())
