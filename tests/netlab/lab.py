"""A network lab on this machine: a namespace behind an impaired link, set up and torn down.

Layout (N is picked per lab, free on the host)::

    namespace jlab-PID-K                 host
    ┌───────────────────────┐            ┌──────────────────────────┐
    │ TUN jlPID-Ki          │  forwarder │ TUN jlPID-Kh             │
    │ 10.N.0.2 peer 10.N.0.1├── up ─────►│ 10.N.0.1 peer 10.N.0.2   │
    │ default route via it  │◄── down ───┤ (the hub binds/announces │
    └───────────────────────┘            │  this address)           │
                                         └──────────────────────────┘

Every packet between the two devices goes through the forwarder process
(:mod:`tests.netlab.forwarder`), which delays, drops and rate-limits it per direction as the
:class:`~tests.netlab.impairment.LinkSpec` s say. Nothing leaves the machine: the namespace's
only route is the lab's link, and the host side is a /32 peer route.

With ``nat=True`` the forwarder is a 1:1 NAT on top: the namespace's 10.N.0.2 reaches the
host side as :attr:`Lab.public_inside_address` (10.N.1.2), and the host's 10.N.0.1 can be
reached from the namespace as :attr:`Lab.public_host_address` (10.N.1.1).

:class:`Lab` is the asyncio API (tests, benchmarks); :class:`SyncLab` the same for code without
an event loop. Both clean up — the processes they spawned, the forwarder, the devices, the
namespace — on exit, also when the body raised; a lab whose owning process was killed is
removed by its forwarder, and a later lab sweeps namespaces whose owner is gone.
"""

from __future__ import annotations

import asyncio
import fcntl
import itertools
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from tests.netlab.impairment import LinkSpec

REPO = Path(__file__).resolve().parents[2]
PREFIX = "jlab-"
LOCK = Path("/run/lock/jaga-netlab.lock") if Path("/run/lock").is_dir() else Path("/tmp/jaga-netlab.lock")
_counter = itertools.count(1)


def _scaled(seconds: float) -> float:
    from tests.kit import timeout  # here, not at the top: the forwarder process imports this package

    return timeout(seconds)


# -- can this machine run a lab?

_availability: str | None = None


def lab_unavailable_reason() -> str:
    """Why a lab cannot run here ("" if it can): root, ``/dev/net/tun`` and ``ip netns``."""
    global _availability
    if _availability is None:
        _availability = _probe()
    return _availability


def lab_available() -> bool:
    return lab_unavailable_reason() == ""


def _probe() -> str:
    if sys.platform != "linux":
        return "the network lab needs Linux"
    if os.geteuid() != 0:
        return "the network lab needs root (network namespaces, TUN devices)"
    if shutil.which("ip") is None:
        return "the network lab needs the `ip` command (iproute2)"
    try:
        os.close(os.open("/dev/net/tun", os.O_RDWR))
    except OSError as exc:
        return f"the network lab needs /dev/net/tun ({exc.strerror})"
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if listed.returncode != 0:
        return f"`ip netns` does not work here: {listed.stderr.strip()}"
    return ""


# -- names and addresses


@dataclass(frozen=True)
class LabNames:
    netns: str
    inside_dev: str
    host_dev: str
    index: int  # N in 10.N.0.x

    @property
    def host_address(self) -> str:
        return f"10.{self.index}.0.1"

    @property
    def inside_address(self) -> str:
        return f"10.{self.index}.0.2"

    @property
    def public_host_address(self) -> str:
        return f"10.{self.index}.1.1"

    @property
    def public_inside_address(self) -> str:
        return f"10.{self.index}.1.2"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _used_indexes() -> set[int]:
    """N of every 10.N.x.x address or route on the host (other labs, anyone's)."""
    text = _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show", "table", "all").stdout
    return {int(n) for n in re.findall(r"\b10\.(\d+)\.\d+\.\d+", text)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose owning process is gone (a killed test run); their names
    carry the owner's pid. Returns the names removed."""
    removed = []
    for line in _ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        match = re.fullmatch(rf"{PREFIX}(\d+)-\d+", name)
        if match and not _pid_alive(int(match.group(1))):
            for pid in _ip("netns", "pids", name, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)  # our own lab's leftovers
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", name, check=False)
            removed.append(name)
    return removed


# -- the lab's setup, shared by both APIs


class _LabCore:
    """Synchronous setup, control and teardown; :class:`Lab` runs these calls in a thread."""

    def __init__(self, up: LinkSpec | None, down: LinkSpec | None, block_udp: bool,
                 allow_tcp: tuple[str, int] | None, nat: bool, seed: int) -> None:
        self.up, self.down = up or LinkSpec(), down or LinkSpec()
        self.filter = {"block_udp": block_udp, "allow_tcp": list(allow_tcp) if allow_tcp else None}
        self.nat = nat
        self.seed = seed
        self.names: LabNames | None = None
        self.forwarder: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._buffer = b""
        self._netns_made = False

    def start(self) -> LabNames:
        reason = lab_unavailable_reason()
        if reason:
            raise RuntimeError(reason)
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        assert self.names is not None
        return self.names

    def _start(self) -> None:
        LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # from picking N until the host address holds it
            sweep_stale_namespaces()
            pid, k = os.getpid(), next(_counter)
            used = _used_indexes()
            first = (pid * 7 + k) % 254  # spread labs of different runs apart
            index = next((n for n in ((first + i) % 254 + 1 for i in range(254)) if n not in used), 0)
            if not index:
                raise RuntimeError("no free 10.N.0.0/16 for a network lab")
            names = LabNames(f"{PREFIX}{pid}-{k}", f"jl{pid}-{k}i", f"jl{pid}-{k}h", index)
            self.names = names
            _ip("netns", "add", names.netns)
            self._netns_made = True
            self._in_netns("sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                           "net.ipv6.conf.default.disable_ipv6=1")  # an IPv4 lab: no stray IPv6 traffic
            config: dict[str, Any] = {"up": self.up.to_json(), "down": self.down.to_json(),
                                      "filter": self.filter, "seed": self.seed}
            if self.nat:
                config["nat"] = {"inside": {names.inside_address: names.public_inside_address},
                                 "outside": {names.host_address: names.public_host_address}}
            self.forwarder = subprocess.Popen(
                [sys.executable, "-m", "tests.netlab.forwarder", "--inside", names.inside_dev,
                 "--host", names.host_dev, "--netns", names.netns, "--config", json.dumps(config)],
                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True, bufsize=0)
            ready = self._reply(_scaled(15))
            if not ready.get("ready"):
                raise RuntimeError(f"the lab's forwarder did not start: {ready}")
            _disable_ipv6_on_host(names.host_dev)
            _ip("link", "set", names.inside_dev, "netns", names.netns)
            _ip("-n", names.netns, "link", "set", "lo", "up")
            _ip("-n", names.netns, "addr", "add", names.inside_address, "peer", names.host_address,
                "dev", names.inside_dev)
            _ip("-n", names.netns, "link", "set", names.inside_dev, "up")
            _ip("-n", names.netns, "route", "add", "default", "via", names.host_address, "dev", names.inside_dev)
            _ip("addr", "add", names.host_address, "peer", names.inside_address, "dev", names.host_dev)
            _ip("link", "set", names.host_dev, "up")
            if self.nat:  # the host reaches the namespace's public address through the lab too
                _ip("route", "add", f"{names.public_inside_address}/32", "dev", names.host_dev)

    def _in_netns(self, *args: str) -> None:
        assert self.names is not None
        done = subprocess.run(["ip", "netns", "exec", self.names.netns, *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} in {self.names.netns}: {done.stderr.strip()}")

    def _reply(self, limit: float) -> dict[str, Any]:
        """The forwarder's next line (it writes each reply whole, then flushes)."""
        assert self.forwarder is not None and self.forwarder.stdout is not None
        fd = self.forwarder.stdout.fileno()
        deadline = time.monotonic() + limit
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"the lab's forwarder did not answer within {limit:g} s")
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the lab's forwarder exited ({self.forwarder.wait()})")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        with self._lock:
            assert self.forwarder is not None and self.forwarder.stdin is not None
            self.forwarder.stdin.write((json.dumps({"op": op, **fields}) + "\n").encode())
            self.forwarder.stdin.flush()
            reply = self._reply(_scaled(10))
        if "error" in reply:
            raise RuntimeError(f"lab forwarder: {reply['error']}")
        return reply

    def close(self) -> None:
        """Stop the forwarder (its devices go with it) and delete the namespace; idempotent."""
        forwarder, self.forwarder = self.forwarder, None
        if forwarder is not None:
            if forwarder.poll() is None:
                try:
                    assert forwarder.stdin is not None
                    forwarder.stdin.write(b'{"op": "quit"}\n')
                    forwarder.stdin.close()
                    forwarder.wait(_scaled(5))
                except (OSError, subprocess.TimeoutExpired):
                    forwarder.kill()
                    forwarder.wait()
            if forwarder.stdout is not None:
                forwarder.stdout.close()
        if self._netns_made and self.names is not None:
            self._netns_made = False
            for pid in _ip("netns", "pids", self.names.netns, check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)  # anything the lab spawned and nobody ended
                except (ProcessLookupError, ValueError):
                    pass
            _ip("netns", "del", self.names.netns, check=False)


def _disable_ipv6_on_host(device: str) -> None:
    path = Path(f"/proc/sys/net/ipv6/conf/{device}/disable_ipv6")
    if path.exists():
        path.write_text("1")


def _netns_command(netns: str, args: list[str]) -> list[str]:
    return ["ip", "netns", "exec", netns, *args]


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # spawned processes lead their own session
    except (ProcessLookupError, PermissionError):
        pass


# -- the asyncio API


class _Addresses:
    """What both APIs tell about a started lab."""

    _core: _LabCore

    @property
    def names(self) -> LabNames:
        assert self._core.names is not None, "the lab is not started"
        return self._core.names

    @property
    def host_address(self) -> str:
        """The host's end of the link: a hub binds here (or on 0.0.0.0) and announces it."""
        return self.names.host_address

    @property
    def inside_address(self) -> str:
        """The namespace's address (what it gathers as its ICE host candidate)."""
        return self.names.inside_address

    @property
    def public_host_address(self) -> str:
        """With ``nat``: the address the namespace reaches the host at, through the NAT."""
        return self.names.public_host_address

    @property
    def public_inside_address(self) -> str:
        """With ``nat``: the address the host sees the namespace's packets come from."""
        return self.names.public_inside_address

    @property
    def netns(self) -> str:
        return self.names.netns

    @property
    def forwarder_pid(self) -> int:
        assert self._core.forwarder is not None, "the lab is not started"
        return self._core.forwarder.pid


class Lab(_Addresses):
    """The lab, for asyncio code::

        async with Lab(up=LinkSpec(rate_kbps=1000, loss=0.05, delay_ms=100), down=LinkSpec(delay_ms=100)) as lab:
            proc = await lab.spawn([sys.executable, "-m", "clients", ...])  # runs in the namespace
            await lab.outage(True)
            stats = await lab.stats()

    ``up`` is namespace → host, ``down`` host → namespace; ``block_udp`` / ``allow_tcp`` are the
    initial filters, ``nat`` adds the 1:1 NAT (module docstring), ``seed`` the random loss's.
    Settings change at any time with :meth:`set`, :meth:`outage`, :meth:`block_udp`,
    :meth:`allow_tcp_only`; each returns when the forwarder applies it.
    """

    def __init__(self, up: LinkSpec | None = None, down: LinkSpec | None = None, *, block_udp: bool = False,
                 allow_tcp: tuple[str, int] | None = None, nat: bool = False, seed: int = 1) -> None:
        self._core = _LabCore(up, down, block_udp, allow_tcp, nat, seed)
        self._spawned: list[asyncio.subprocess.Process] = []

    # lifecycle

    async def start(self) -> Self:
        await asyncio.to_thread(self._core.start)
        return self

    async def close(self) -> None:
        for proc in self._spawned:
            if proc.returncode is None:
                _kill_group(proc.pid, signal.SIGTERM)
        for proc in self._spawned:
            try:
                await asyncio.wait_for(proc.wait(), _scaled(5))
            except TimeoutError:
                _kill_group(proc.pid, signal.SIGKILL)
                await proc.wait()
        self._spawned.clear()
        await asyncio.to_thread(self._core.close)

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # processes in the namespace

    async def spawn(self, args: list[str], env: dict[str, str] | None = None, **kwargs: Any,
                    ) -> asyncio.subprocess.Process:
        """Start ``args`` inside the namespace (``ip netns exec``), in its own session; ``env``
        replaces the environment (default: this process's); other keywords go to
        :func:`asyncio.create_subprocess_exec` (``stdout``, ``stdin``, ``cwd`` — default the
        repository). The lab ends it on exit if it still runs."""
        kwargs.setdefault("cwd", REPO)
        proc = await asyncio.create_subprocess_exec(*_netns_command(self.netns, args), env=env,
                                                    start_new_session=True, **kwargs)
        self._spawned.append(proc)
        return proc

    # the link, at run time

    async def set(self, up: LinkSpec | None = None, down: LinkSpec | None = None) -> dict[str, Any]:
        """New impairment for one or both directions (``None``: unchanged)."""
        return await self._call("set", up=up.to_json() if up else None, down=down.to_json() if down else None)

    async def outage(self, on: bool) -> dict[str, Any]:
        """Cut the link both ways (what is in flight is lost too), or restore it."""
        return await self._call("outage", on=on)

    async def block_udp(self, on: bool = True) -> dict[str, Any]:
        """Drop all UDP both ways (TCP and the rest pass)."""
        return await self._call("filter", block_udp=on, allow_tcp=None)

    async def allow_tcp_only(self, address: str | None, port: int = 0) -> dict[str, Any]:
        """Let only TCP to ``address:port`` on the host side pass (and its replies); ``None``
        lifts every filter."""
        return await self._call("filter", block_udp=False, allow_tcp=[address, port] if address else None)

    async def stats(self) -> dict[str, Any]:
        """The forwarder's counters: per direction ``received``/``forwarded`` (packets, bytes),
        ``dropped`` by reason (filter, outage, queue, loss), ``pending``; its ``cpu_s``."""
        return await self._call("stats")

    async def _call(self, op: str, **fields: Any) -> dict[str, Any]:
        return await asyncio.to_thread(self._core.call, op, **fields)


# -- the same without an event loop


class SyncLab(_Addresses):
    """:class:`Lab` for synchronous code: ``with SyncLab(...) as lab:``; :meth:`spawn` returns
    a :class:`subprocess.Popen`."""

    def __init__(self, up: LinkSpec | None = None, down: LinkSpec | None = None, *, block_udp: bool = False,
                 allow_tcp: tuple[str, int] | None = None, nat: bool = False, seed: int = 1) -> None:
        self._core = _LabCore(up, down, block_udp, allow_tcp, nat, seed)
        self._spawned: list[subprocess.Popen[Any]] = []

    def __enter__(self) -> Self:
        self._core.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self._spawned:
            if proc.poll() is None:
                _kill_group(proc.pid, signal.SIGTERM)
        for proc in self._spawned:
            try:
                proc.wait(_scaled(5))
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
        self._spawned.clear()
        self._core.close()

    def spawn(self, args: list[str], env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen[Any]:
        kwargs.setdefault("cwd", REPO)
        proc = subprocess.Popen(_netns_command(self.netns, args), env=env, start_new_session=True, **kwargs)
        self._spawned.append(proc)
        return proc

    def set(self, up: LinkSpec | None = None, down: LinkSpec | None = None) -> dict[str, Any]:
        return self._core.call("set", up=up.to_json() if up else None, down=down.to_json() if down else None)

    def outage(self, on: bool) -> dict[str, Any]:
        return self._core.call("outage", on=on)

    def block_udp(self, on: bool = True) -> dict[str, Any]:
        return self._core.call("filter", block_udp=on, allow_tcp=None)

    def allow_tcp_only(self, address: str | None, port: int = 0) -> dict[str, Any]:
        return self._core.call("filter", block_udp=False, allow_tcp=[address, port] if address else None)

    def stats(self) -> dict[str, Any]:
        return self._core.call("stats")
