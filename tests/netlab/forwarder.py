"""The lab's forwarder process: IP packets between two TUN devices through two :class:`Link` s.

    python -m tests.netlab.forwarder --inside DEV --host DEV [--netns NS] [--config JSON]

It opens both TUN devices (``IFF_TUN | IFF_NO_PI``: every read is one IP packet, every write
one packet), prints ``{"ready": true}`` and then runs one epoll loop: a packet read from the
inside device goes through the up :class:`~tests.netlab.impairment.Link` and is written to the
host device when due; the other way through the down one. The loop sleeps until the next
packet is due or something is readable, so an idle lab costs nothing.

The :class:`~tests.netlab.lab.Lab` that started it moves the inside device into the namespace
and sets the addresses (an open TUN fd keeps working across ``ip link set … netns``), and
talks to it with one JSON line per request on stdin, one JSON line per reply on stdout:

    {"op": "set", "up": {LinkSpec}, "down": {LinkSpec}}  either may be left out
    {"op": "outage", "on": true}                         both directions
    {"op": "filter", "block_udp": true, "allow_tcp": ["10.9.0.1", 8080] | null}
    {"op": "stats"}                                      counters per direction, CPU seconds
    {"op": "quit"}

If stdin closes without ``quit`` (the lab's process died), it ends the processes left in
``--netns`` (the lab's own children), deletes that namespace and exits: nothing outlives a
killed test run but what a later run can sweep.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Any

from tests.netlab.impairment import Filter, Link, LinkSpec
from tests.netlab.nat import Nat

TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
BATCH = 256  # packets read from one device per wake-up, so neither direction starves the other
MAX_PACKET = 65536


def open_tun(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Forwarder:
    def __init__(self, inside_fd: int, host_fd: int, config: dict[str, Any]) -> None:
        self.inside_fd, self.host_fd = inside_fd, host_fd
        seed = int(config.get("seed", 1))
        self.up = Link("up", LinkSpec.from_json(config.get("up") or {}), seed)
        self.down = Link("down", LinkSpec.from_json(config.get("down") or {}), seed)
        self.set_filter(Filter.from_json(config.get("filter") or {}))
        nat = config.get("nat")
        self.nat = Nat(nat.get("inside"), nat.get("outside")) if nat else None
        self.write_errors = {"up": 0, "down": 0}
        self.running = True
        self.quit_asked = False
        self._control = b""

    def set_filter(self, rule: Filter) -> None:
        self.up.filter = self.down.filter = rule

    # -- the loop

    def run(self) -> None:
        poller = select.epoll()
        stdin = sys.stdin.fileno()
        os.set_blocking(stdin, False)
        for fd in (self.inside_fd, self.host_fd, stdin):
            poller.register(fd, select.EPOLLIN)
        try:
            while self.running:
                deadlines = [d for d in (self.up.next_deadline(), self.down.next_deadline()) if d is not None]
                wait = max(0.0, min(deadlines) - time.monotonic()) if deadlines else -1
                for fd, events in poller.poll(wait):  # epoll rounds the timeout up: never woken early
                    if events & (select.EPOLLERR | select.EPOLLHUP) and fd != stdin:
                        poller.unregister(fd)  # the device is gone (its namespace deleted under us): don't spin
                        continue
                    if fd == self.inside_fd:
                        self._read(fd, self.up, self.nat.up if self.nat else None)
                    elif fd == self.host_fd:
                        self._read(fd, self.down, None)
                    else:
                        self._read_control(stdin)
                now = time.monotonic()
                self._write(self.host_fd, self.up.due(now), None, "up")
                self._write(self.inside_fd, self.down.due(now), self.nat.down if self.nat else None, "down")
        finally:
            poller.close()

    def _read(self, fd: int, link: Link, translate: Any) -> None:
        now = time.monotonic()
        for _ in range(BATCH):
            try:
                packet = os.read(fd, MAX_PACKET)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EIO, errno.EBADFD):  # the device is not up (yet)
                    return
                raise
            # NAT first going up, last going down: the link (and its filter) sees host-side addresses
            link.push(translate(packet) if translate else packet, now)

    def _write(self, fd: int, packets: list[bytes], translate: Any, direction: str) -> None:
        for packet in packets:
            try:
                os.write(fd, translate(packet) if translate else packet)
            except OSError:
                self.write_errors[direction] += 1  # e.g. the device went down during teardown

    # -- control

    def _read_control(self, fd: int) -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.running = False  # the lab is gone
            return
        self._control += chunk
        while b"\n" in self._control:
            line, self._control = self._control.split(b"\n", 1)
            if line.strip():
                try:
                    reply = self.handle(json.loads(line))
                except Exception as exc:  # a bad request is answered, not fatal
                    reply = {"error": f"{type(exc).__name__}: {exc}"}
                sys.stdout.write(json.dumps(reply) + "\n")
                sys.stdout.flush()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "set":
            for name, link in (("up", self.up), ("down", self.down)):
                if request.get(name) is not None:
                    link.configure(LinkSpec.from_json(request[name]))
        elif op == "outage":
            for link in (self.up, self.down):
                link.set_outage(bool(request["on"]))
        elif op == "filter":
            self.set_filter(Filter.from_json(request))
        elif op == "stats":
            pass
        elif op == "quit":
            self.running = False
            self.quit_asked = True
        else:
            raise ValueError(f"unknown op {op!r}")
        return {"ok": True, **self.stats()}

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"up": self.up.stats(), "down": self.down.stats(), "filter": self.up.filter.to_json(),
                "nat": self.nat.to_json() if self.nat else None, "write_errors": dict(self.write_errors),
                "cpu_s": usage.ru_utime + usage.ru_stime, "at": time.monotonic()}


def remove_namespace(netns: str) -> None:
    """What an orphaned forwarder does: end the processes left in the lab's namespace (the
    lab's own children, by pid) and delete it."""
    listed = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    for pid in listed.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", netns], capture_output=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netlab.forwarder")
    parser.add_argument("--inside", required=True, help="the TUN device that goes into the namespace")
    parser.add_argument("--host", required=True, help="the TUN device that stays on the host")
    parser.add_argument("--netns", default="", help="the lab's namespace: deleted if the lab disappears")
    parser.add_argument("--config", default="{}", help="JSON: up, down (LinkSpec), filter, nat, seed")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # run the finally below
    inside_fd = open_tun(args.inside)
    host_fd = open_tun(args.host)
    forwarder = Forwarder(inside_fd, host_fd, json.loads(args.config))
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid()}) + "\n")
    sys.stdout.flush()
    try:
        forwarder.run()
    finally:
        os.close(inside_fd)  # the devices vanish with their last fd
        os.close(host_fd)
        if not forwarder.quit_asked and args.netns:
            remove_namespace(args.netns)
    return 0


if __name__ == "__main__":
    sys.exit(main())
