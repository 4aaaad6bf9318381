"""What every benchmark shares: processes it owns, CPU and memory readings, small statistics.

CPU is read from ``/proc/PID/stat`` (utime + stime, all threads), so a busy neighbour on the
machine does not change it the way it changes wall-clock speed. Every process a benchmark
starts is put in its own session and registered here; :func:`cleanup` (also run at exit and on
SIGTERM/SIGINT) ends exactly those process groups and nothing else, then runs the callbacks
registered with :func:`on_cleanup` (``bench.lab`` removes its network namespace there).
"""

from __future__ import annotations

import asyncio
import atexit
import datetime as dt
import functools
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from bench import speed  # how fast the machine is now: what figures of other runs compare by

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
RESULTS = REPO / "bench" / "results"
CLK_TCK = os.sysconf("SC_CLK_TCK")

Owned = TypeVar("Owned", subprocess.Popen[Any], asyncio.subprocess.Process)
_owned: list[subprocess.Popen[Any] | asyncio.subprocess.Process] = []
_temp_dirs: list[Path] = []
_after_cleanup: list[Callable[[], None]] = []


# ---------------------------------------------------------------- process bookkeeping

def own(proc: Owned) -> Owned:
    _owned.append(proc)
    return proc


def _kill_group(proc: Any, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # each child leads its own session (start_new_session=True)
    except (ProcessLookupError, PermissionError):
        pass


def cleanup() -> None:
    """End every process group this benchmark started: SIGTERM, then SIGKILL after 3 s."""
    alive = [p for p in _owned if p.returncode is None]
    for proc in alive:
        _kill_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + 3
    for proc in alive:
        while time.monotonic() < deadline and _running(proc.pid):
            time.sleep(0.05)
        if _running(proc.pid):
            _kill_group(proc, signal.SIGKILL)
    _owned.clear()
    for path in _temp_dirs:
        shutil.rmtree(path, ignore_errors=True)
    _temp_dirs.clear()
    while _after_cleanup:
        _after_cleanup.pop()()  # the last registered first, as atexit does


def on_cleanup(callback: Callable[[], None]) -> None:
    """Run ``callback`` in :func:`cleanup`, after the processes are ended (they may live in
    what it removes)."""
    _after_cleanup.append(callback)


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def install_cleanup() -> None:
    atexit.register(cleanup)

    def on_signal(signum: int, _frame: Any) -> None:
        cleanup()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)


def temp_dir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    _temp_dirs.append(path)
    return path


def raise_fd_limit() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def spawn(*args: str, env: dict[str, str] | None = None, stdin: bool = False,
                log: Path | None = None, cwd: Path | None = None, netns: str | None = None,
                ) -> asyncio.subprocess.Process:
    """Start ``args`` in a session of its own; ``netns``: inside that network namespace
    (``bench.lab``), through ``ip netns exec``, which execs it: the pid is the command's."""
    out = open(log, "ab") if log else asyncio.subprocess.DEVNULL
    if netns is not None:
        args = ("ip", "netns", "exec", netns, *args)
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=str(cwd or REPO), start_new_session=True, limit=2**26, env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdin else out, stderr=out)
    return own(proc)


async def stop(proc: asyncio.subprocess.Process, timeout: float = 8.0) -> None:
    """SIGINT (a graceful stop for uvicorn and friends), then SIGKILL the group."""
    if proc.returncode is None:
        try:
            proc.send_signal(signal.SIGINT)
            await asyncio.wait_for(proc.wait(), timeout)
        except (TimeoutError, ProcessLookupError):
            pass
    _kill_group(proc, signal.SIGKILL)
    if proc.returncode is None:
        try:
            await asyncio.wait_for(proc.wait(), 3)
        except TimeoutError:
            pass


class Worker:
    """A child process spoken to with one JSON line per request and per reply."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, *args: str, log: Path | None = None, netns: str | None = None) -> Worker:
        return cls(await spawn(PY, *args, stdin=True, log=log, netns=netns))

    async def call(self, op: str, timeout: float = 60.0, **kw: Any) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps({"op": op, **kw}) + "\n").encode())
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"worker {self.proc.pid} died during {op}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.proc.pid}: {reply['error']}")
        return reply

    async def close(self, release: str | None = None, timeout: float = 60.0) -> None:
        """End the worker; ``release``: an op to call first (e.g. ``close_all`` its peers)."""
        if release is not None and self.proc.returncode is None:
            try:
                await self.call(release, timeout=timeout)
            except Exception:
                pass  # a worker that cannot release is stopped all the same
        try:
            await self.call("quit", timeout=5)
        except Exception:
            pass
        await stop(self.proc, 3)


async def close_workers(workers: list[Worker], release: str | None = None, timeout: float = 60.0) -> None:
    """End ``workers`` together (each releasing its peers first, within ``timeout``): one by
    one, a run of a dozen workers spent seconds in teardown that nothing measures."""
    await asyncio.gather(*(worker.close(release, timeout) for worker in workers))


async def serve_worker(handlers: dict[str, Any]) -> None:
    """The child side of :class:`Worker`: read requests from stdin, answer on stdout."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        request = json.loads(line)
        op = request.pop("op")
        if op == "quit":
            sys.stdout.write("{}\n")
            sys.stdout.flush()
            return
        try:
            reply = await handlers[op](**request)
        except Exception as exc:  # report, keep serving
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


# ---------------------------------------------------------------- readings

def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def cpu_split(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(") ", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def threads_cpu_ns(pid: int) -> tuple[int, frozenset[int]]:
    """Nanoseconds on a CPU of every live thread of ``pid`` (``/proc/PID/task/*/schedstat``),
    and which threads those were. Finer than ``/proc/PID/stat``'s 10 ms ticks (one tick is
    ≈ 4 % of what one publisher costs in a 40 s window), but a thread that ended took its
    time with it: compare two readings only if they name the same threads."""
    total, threads = 0, []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            continue  # ended between the listing and the read
        threads.append(int(task))
    return total, frozenset(threads)


def cores_between(before: tuple[int, frozenset[int]], after: tuple[int, frozenset[int]], seconds: float,
                  ticks_cores: float) -> float:
    """Cores used between two :func:`threads_cpu_ns` readings ``seconds`` apart; when the
    threads changed in between, ``ticks_cores`` (from ``/proc/PID/stat``, which keeps ended
    threads' time) instead."""
    if before[1] != after[1]:
        return ticks_cores
    return (after[0] - before[0]) / 1e9 / seconds


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def wait_for_file(path: Path, proc: asyncio.subprocess.Process, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text().strip()
        if proc.returncode is not None:
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode} before writing {path}")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{path} not written within {timeout}s")


# ---------------------------------------------------------------- the hub under test

METRICS_TOKEN = "bench-metrics"  # every bench hub's /metrics answers this bearer token


def http_client(**kwargs: Any) -> Any:
    """An ``httpx.AsyncClient`` on the process's one TLS context. httpx builds a context per
    client, loading certifi's CA bundle (≈ 22 ms of CPU here) even for ``http://`` URLs: a
    client per WHIP/WHEP join cost the load generators ≈ 2 min of CPU over ``bench.scale``'s
    5,400 joins, on the cores the hub is measured on."""
    import httpx

    return httpx.AsyncClient(verify=_tls_context(), **kwargs)


@functools.cache
def _tls_context() -> Any:
    import httpx

    return httpx.create_ssl_context()


async def metrics_text(http: Any, base: str) -> str:
    """A bench hub's ``/metrics`` (it needs the token since the hardening of issue 19)."""
    response = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    response.raise_for_status()
    return str(response.text)


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 free right now (TCP, or ``kind`` SOCK_DGRAM for UDP)."""
    with socket.socket(socket.AF_INET, kind) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def free_udp_port() -> int:
    """A UDP port free right now: the bench hub's shared media port (7882 may be a demo's)."""
    return free_port(socket.SOCK_DGRAM)


def hub_config(workdir: Path, registry: Path | None = None, **sections: dict[str, Any]) -> Path:
    """A config in ``workdir`` with a copy of the Jember registry and its own data_dir."""
    reg = workdir / "stations.csv"
    shutil.copy(registry or REPO / "data" / "jember_stations.csv", reg)
    raw: dict[str, dict[str, Any]] = {
        "hub": {"host": "127.0.0.1", "port": 0, "data_dir": str(workdir / "data"), "backend": "memory",
                "metrics_token": METRICS_TOKEN},
        "stations": {"registry": str(reg)},
        "media": {"host_addresses": ["127.0.0.1"], "ice_servers": [], "udp_port": free_udp_port()},
    }
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    lines = []
    for name, values in raw.items():
        lines.append(f"[{name}]")
        for key, value in values.items():
            lines.append(f"{key} = {json.dumps(value)}")
    path = workdir / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def mint_tokens(config: Path, station_ids: list[str]) -> dict[str, str]:
    """Write a token hash per station into the hub's credential store (as the CLI does)."""
    from hub.backends.factory import build_credentials
    from hub.services.auth import hash_token, mint_token
    from hub.settings import load_settings

    settings = load_settings(config)

    async def write() -> dict[str, str]:
        store = build_credentials(settings)
        tokens = {}
        try:
            for sid in station_ids:
                tokens[sid] = mint_token()
                await store.set_token_hash(sid, hash_token(tokens[sid]))
        finally:
            await store.close()
        return tokens

    return asyncio.run(write()) if not _in_loop() else _run_in_thread(write)


def _in_loop() -> bool:
    try:
        asyncio.get_running_loop()
        return True
    except RuntimeError:
        return False


def _run_in_thread(factory: Any) -> Any:
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()


def station_ids(registry: Path | None = None) -> list[str]:
    lines = (registry or REPO / "data" / "jember_stations.csv").read_text().splitlines()[1:]
    return [line.split(",", 1)[0] for line in lines if line.strip()]


async def start_hub(workdir: Path, log: Path | None = None, source: Path | None = None,
                    **sections: dict[str, Any]) -> tuple[asyncio.subprocess.Process, int, Path]:
    """Start ``python -m hub serve`` on port 0; ``source``: another checkout's hub (to compare a change)."""
    config = hub_config(workdir, None, **sections)  # sections only: never the registry
    port_file = workdir / "port"
    proc = await spawn(PY, "-m", "hub", "--config", str(config), "serve", "--port", "0",
                       "--port-file", str(port_file), log=log or workdir / "hub.log", cwd=source)
    port = int(await wait_for_file(port_file, proc))
    return proc, port, config


# ---------------------------------------------------------------- statistics and output

def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float | None]) -> dict[str, Any]:
    clean = [v for v in values if v is not None]
    if not clean:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(clean), "min": min(clean), "max": max(clean), "n": len(clean)}


def fmt(value: float | None, digits: int = 0, scale: float = 1.0) -> str:
    if value is None:
        return "–"
    return f"{value * scale:,.{digits}f}"


def fmt_spread(s: dict[str, Any], digits: int = 0, scale: float = 1.0) -> str:
    if not s or s.get("median") is None:
        return "–"
    if s["n"] == 1:
        return fmt(s["median"], digits, scale)
    return f"{fmt(s['median'], digits, scale)} ({fmt(s['min'], digits, scale)}–{fmt(s['max'], digits, scale)})"


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("aiortc", "av", "uvicorn", "websockets", "starlette", "msgpack", "broadcaster"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def machine() -> dict[str, Any]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "kernel": platform.release(),
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), **speed.probe(), **versions()}


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), "command": " ".join(sys.argv), **data}, indent=1))
    return path


def log(*parts: Any) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)
