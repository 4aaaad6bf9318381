"""Small traffic tools the lab's tests run inside the namespace (``lab.spawn``); one JSON line out.

    python -m tests.netlab.probe echo  --to HOST:PORT [--count N] [--interval S] [--size B] [--wait S] [--lines]
    python -m tests.netlab.probe blast --to HOST:PORT --kbps R --seconds T [--size B]
    python -m tests.netlab.probe sink  [--idle S]
    python -m tests.netlab.probe tcp   --to HOST:PORT [--timeout S]

- ``echo`` sends numbered UDP datagrams (sequence number and send time in the first 12 bytes)
  to an echo server and reports the round trips of those that came back; ``--lines`` prints
  one line per reply as it arrives (``{"seq": …, "rtt": …}``) before the summary, and runs
  until killed if ``--count`` is 0.
- ``blast`` sends ``--kbps`` of UDP for ``--seconds``, paced, and reports what it sent.
- ``sink`` binds a UDP port, prints ``{"port": P}``, counts what arrives (times on
  ``time.monotonic``, the same clock as the test's) and reports after ``--idle`` s of silence.
- ``tcp`` connects, sends a line, expects it echoed; reports ``{"ok": …, "error": …}``.
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import struct
import sys
import time
from typing import Any

HEADER = struct.Struct("!Id")  # sequence number, send time (monotonic)


def _address(text: str) -> tuple[str, int]:
    host, port = text.rsplit(":", 1)
    return host, int(port)


def _emit(value: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(value) + "\n")
    sys.stdout.flush()


def echo(args: argparse.Namespace) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(_address(args.to))
    padding = b"\0" * max(0, args.size - HEADER.size)
    rtts: dict[int, float] = {}
    sent = 0
    start = time.monotonic()
    end_sending = None
    while True:
        now = time.monotonic()
        if end_sending is None and (args.count == 0 or sent < args.count):
            next_send = start + sent * args.interval
            if now >= next_send:
                try:
                    sock.send(HEADER.pack(sent, now) + padding)
                except OSError:
                    pass  # e.g. ECONNREFUSED from an earlier ICMP: the datagram is simply lost
                sent += 1
                continue
            wait = next_send - now
        else:
            if end_sending is None:
                end_sending = now
            wait = end_sending + args.wait - now
            if wait <= 0 or len(rtts) == sent:  # every reply in: no need to wait for stragglers
                break
        if select.select([sock], [], [], wait)[0]:
            try:
                data = sock.recv(65536)
            except OSError:
                continue
            seq, sent_at = HEADER.unpack_from(data)
            rtt = time.monotonic() - sent_at
            if seq not in rtts:
                rtts[seq] = rtt
                if args.lines:
                    _emit({"seq": seq, "rtt": rtt, "sent_at": sent_at})
    return {"sent": sent, "received": len(rtts), "rtts": [rtts[k] for k in sorted(rtts)]}


def blast(args: argparse.Namespace) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(_address(args.to))
    payload = b"x" * args.size
    per_second = args.kbps * 1000 / 8 / (args.size + 28)  # + IP and UDP headers: the link's bytes
    start = time.monotonic()
    sent = 0
    while True:
        now = time.monotonic()
        if now - start >= args.seconds:
            break
        due = start + sent / per_second
        if now < due:
            time.sleep(due - now)  # pacing a sender
            continue
        try:
            sock.send(HEADER.pack(sent, now) + payload[HEADER.size:])
        except OSError:
            pass
        sent += 1
    return {"sent": sent, "bytes": sent * (args.size + 28), "seconds": time.monotonic() - start}


def sink(args: argparse.Namespace) -> dict[str, Any]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("0.0.0.0", 0))
    _emit({"port": sock.getsockname()[1]})
    received = size = 0
    first = last = None
    while select.select([sock], [], [], args.idle if received else args.idle * 10)[0]:
        data = sock.recv(65536)
        last = time.monotonic()
        first = first or last
        received += 1
        size += len(data) + 28
    return {"received": received, "bytes": size, "first": first, "last": last}


def tcp(args: argparse.Namespace) -> dict[str, Any]:
    try:
        with socket.create_connection(_address(args.to), timeout=args.timeout) as conn:
            conn.sendall(b"hello lab\n")
            reply = b""
            while not reply.endswith(b"\n"):
                chunk = conn.recv(4096)
                if not chunk:
                    break
                reply += chunk
        return {"ok": reply == b"hello lab\n", "reply": reply.decode(errors="replace")}
    except OSError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netlab.probe")
    modes = parser.add_subparsers(dest="mode", required=True)
    p = modes.add_parser("echo")
    p.add_argument("--to", required=True)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--interval", type=float, default=0.01)
    p.add_argument("--size", type=int, default=100)
    p.add_argument("--wait", type=float, default=2.0, help="at most this long for replies after the last send")
    p.add_argument("--lines", action="store_true")
    p = modes.add_parser("blast")
    p.add_argument("--to", required=True)
    p.add_argument("--kbps", type=float, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--size", type=int, default=1000)
    p = modes.add_parser("sink")
    p.add_argument("--idle", type=float, default=1.0)
    p = modes.add_parser("tcp")
    p.add_argument("--to", required=True)
    p.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    _emit({"echo": echo, "blast": blast, "sink": sink, "tcp": tcp}[args.mode](args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
