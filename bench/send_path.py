"""The viewer send path alone: one ``sendmmsg`` per relayed packet against a ``sendto`` each.

The hub's own classes (``SrtpWire`` on a real ``UdpMux`` session, libsrtp, the port's
``SendBatch``) send a stream of RTP packets to N viewer sockets held by another process that
waits in ``epoll`` as the viewers' processes do, so the kernel's wake-ups are in the figure.
Two ports in one process, one batching and one not, take turns packet by packet (interleaved:
the same machine state for both); CPU is this process's, around the sends only.

    python -m bench.send_path [--viewers 32] [--packets 3000] [--interval-ms 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import selectors
import socket
import statistics
import struct
import subprocess
import sys
import time
from typing import Any, cast

import pylibsrtp

from bench.common import PY, write_result
from hub.media import seams_egress
from hub.media.seams_udp import SessionSocket, UdpMux

PAYLOAD_BYTES = 1100  # a full video packet of the Jember clip


def receive(count: int) -> None:
    """The viewers' side: ``count`` sockets read in one ``epoll`` loop until stdin closes."""
    selector = selectors.DefaultSelector()
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        sockets.append(sock)
    selector.register(sys.stdin, selectors.EVENT_READ)
    print(json.dumps([s.getsockname()[1] for s in sockets]), flush=True)
    received = 0
    while True:
        for key, _ in selector.select():
            if key.fileobj is sys.stdin:
                print(received, flush=True)
                return
            sock = cast(socket.socket, key.fileobj)
            try:
                while True:
                    sock.recv(2048)
                    received += 1
            except BlockingIOError:
                pass


class _Pair:
    """What a wire reads of aioice's nominated pair."""

    def __init__(self, session: SessionSocket, addr: tuple[str, int]) -> None:
        self.protocol = self
        self.transport = session
        self.remote_addr = addr


async def wires_on(mux: UdpMux, addresses: list[tuple[str, int]]) -> list[seams_egress.SrtpWire]:
    session = mux.session(None, "bnch")  # type: ignore[arg-type]  # the connection is not read here
    wires = []
    for addr in addresses:
        session.sendto(b"\x80\x60", addr)  # data to the peer: the session owns the address
        key = os.urandom(30)
        srtp = pylibsrtp.Session(pylibsrtp.Policy(key=key, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND))
        wires.append(seams_egress.SrtpWire(srtp, {1: _Pair(session, addr)}))  # type: ignore[dict-item]
    return wires


async def run(args: argparse.Namespace) -> dict[str, Any]:
    receiver = subprocess.Popen([PY, "-m", "bench.send_path", "--receive", str(args.viewers)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None
        ports = json.loads(receiver.stdout.readline())
        addresses = [("127.0.0.1", port) for port in ports]
        ways = {"sendmmsg": await UdpMux.open("127.0.0.1", 0, batch_sends=True),
                "sendto": await UdpMux.open("127.0.0.1", 0)}
        wires = {way: await wires_on(mux, addresses) for way, mux in ways.items()}
        payload = os.urandom(PAYLOAD_BYTES)
        per_repeat: dict[str, list[float]] = {way: [] for way in ways}
        for repeat in range(args.repeats):
            spent = dict.fromkeys(ways, 0.0)
            for packet in range(args.packets):
                seq = repeat * args.packets + packet  # libsrtp refuses a sequence number twice
                for way, mux in ways.items():
                    header = struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, seq * 6000, 0x1234)
                    started = time.process_time()
                    for wire in wires[way]:
                        wire.send_parts(header, payload)
                    if mux.batch is not None:
                        mux.batch.flush()
                    spent[way] += time.process_time() - started
                    await asyncio.sleep(args.interval_ms / 1000)  # the receivers go back to epoll
            for way in ways:
                per_repeat[way].append(spent[way] / (args.packets * args.viewers) * 1e6)
            print("  ".join(f"{way} {per_repeat[way][-1]:.2f} µs" for way in ways), flush=True)
        batch = ways["sendmmsg"].batch
        assert batch is not None
        batched = {"calls": batch.calls, "datagrams": batch.datagrams, "fallbacks": batch.fallbacks}
        for mux in ways.values():
            mux.close()
    finally:
        if receiver.stdin is not None:
            receiver.stdin.close()
        received = int(receiver.stdout.readline() or 0) if receiver.stdout is not None else 0
        receiver.wait(10)
    sent = 2 * args.repeats * args.packets * args.viewers
    print(f"the viewers received {received} of {sent} datagrams; the batching port: {batched}")
    ratios = [a / b for a, b in zip(per_repeat["sendmmsg"], per_repeat["sendto"], strict=True)]
    return {"args": vars(args), "us_per_datagram": per_repeat, "ratios": ratios, "received": received,
            "sent": sent, "batch": batched,
            "median_ratio": statistics.median(ratios)}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--receive":
        receive(int(sys.argv[2]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--viewers", type=int, default=32)
    parser.add_argument("--packets", type=int, default=3000, help="per way and repeat")
    parser.add_argument("--interval-ms", type=float, default=2.0, help="between packets (the receivers sleep)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    result = asyncio.run(run(args))
    each = ", ".join(f"{r:.2f}" for r in result["ratios"])
    print(f"µs per datagram, median: sendmmsg {statistics.median(result['us_per_datagram']['sendmmsg']):.2f}, "
          f"sendto {statistics.median(result['us_per_datagram']['sendto']):.2f}; "
          f"sendmmsg ÷ sendto per repeat {each} (median {result['median_ratio']:.2f})")
    print(f"wrote {write_result('send_path', result)}")


if __name__ == "__main__":
    main()
