"""The lab: a network namespace the benchmark makes for a server that cannot use loopback.

The house rule: a benchmark sends traffic only to 127.0.0.0/8 or into namespaces it made
itself. Janus (libnice) never gathers a loopback candidate, so on the host it would announce
the machine's own interface address and its peers would send there. In the lab the server
and every process that talks to it run inside a fresh namespace with ``lo`` up and one
interface of its own, ``jaga0``, at 10.N.0.1/24: libnice gathers that address, the aiortc
peers inside announce it, and since the namespace has no link to anything outside it (no
route, no peer device on the host), its traffic never leaves it.

``jaga0`` is a dummy device, or, on a kernel without the dummy driver ("Unknown device
type"), one end of a veth pair whose other end stays inside the namespace too. The
namespace is named ``jaga-bench-<pid>``. :func:`open_lab` removes it on the way out, and
``bench.common``'s cleanup (exit, SIGTERM, SIGINT) does too; a run killed outright leaves
it behind, and the next lab removes namespaces whose owning pid is gone.

Processes go in with ``ip netns exec`` (``bench.common.spawn(…, netns=lab.netns)``), which
execs the command: the pid spawned is the command's own, so its CPU is read as before.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

from bench.common import on_cleanup

PREFIX = "jaga-bench-"
DEVICE = "jaga0"
VETH_PEER = "jaga1"


@dataclass(frozen=True)
class Lab:
    netns: str
    address: str  # jaga0's: what Janus and the peers inside gather and announce


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


@contextlib.contextmanager
def open_lab() -> Iterator[Lab]:
    """A new lab for the body, removed after it (also if the body raised)."""
    sweep_stale_labs()
    lab = Lab(f"{PREFIX}{os.getpid()}", f"10.{free_index()}.0.1")
    on_cleanup(lambda: remove_lab(lab.netns))  # a signal ends the run before the finally below
    try:
        make_lab(lab)
        yield lab
    finally:
        remove_lab(lab.netns)


def free_index() -> int:
    """N for 10.N.0.1/24: one no address or route of the host uses, so that no address of
    the lab can be mistaken for a real one (it would not be reachable from inside anyway)."""
    text = _ip("-o", "-4", "addr", "show").stdout + _ip("-4", "route", "show", "table", "all").stdout
    used = {int(n) for n in re.findall(r"\b10\.(\d+)\.\d+\.\d+", text)}
    free = [n for n in range(200, 255) if n not in used]
    if not free:
        raise RuntimeError("no free 10.N.0.0/24 (N in 200–254) for the lab")
    return free[os.getpid() % len(free)]  # labs of concurrent runs apart, for whoever reads their logs


def make_lab(lab: Lab) -> None:
    _ip("netns", "add", lab.netns)
    _ip("-n", lab.netns, "link", "set", "lo", "up")  # the HTTP API and the plain RTP input are on 127.0.0.1
    add_device(lab.netns)
    _ip("-n", lab.netns, "addr", "add", f"{lab.address}/24", "dev", DEVICE)
    _ip("-n", lab.netns, "link", "set", DEVICE, "up")
    # An IPv4 lab: no link-local IPv6 for libnice to gather besides the lab's address
    subprocess.run(["ip", "netns", "exec", lab.netns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1"], capture_output=True, check=False)


def add_device(netns: str) -> None:
    """``jaga0`` in ``netns``: a dummy, or a veth pair with both ends inside (its peer up too,
    for the carrier) where the kernel has no dummy driver."""
    if _ip("-n", netns, "link", "add", DEVICE, "type", "dummy", check=False).returncode == 0:
        return
    _ip("-n", netns, "link", "add", DEVICE, "type", "veth", "peer", "name", VETH_PEER)
    _ip("-n", netns, "link", "set", VETH_PEER, "up")


def remove_lab(netns: str) -> None:
    """End whatever still runs in ``netns`` (the run's own processes, which outlived their
    stop) and delete it; a lab already gone is fine."""
    for pid in _ip("netns", "pids", netns, check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", netns, check=False)


def sweep_stale_labs() -> None:
    """Remove labs whose run is gone (killed before it could clean up): their names carry its pid."""
    for line in _ip("netns", "list").stdout.splitlines():
        match = re.fullmatch(rf"{PREFIX}(\d+)", line.split()[0]) if line.strip() else None
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            remove_lab(match.group(0))


def tcp_listening(pid: int, port: int) -> bool:
    """Whether a socket listens on TCP ``port`` in ``pid``'s network namespace: readiness read
    from the kernel, for a server whose loopback only the processes inside can reach."""
    try:
        with open(f"/proc/{pid}/net/tcp") as table:
            rows = [line.split() for line in table.readlines()[1:]]
    except FileNotFoundError:
        return False
    return any(row[3] == "0A" and int(row[1].rsplit(":", 1)[1], 16) == port for row in rows)  # 0A: LISTEN
