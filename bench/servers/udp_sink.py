"""The floor under any asyncio receiver: a datagram endpoint that only counts what arrives.

The relay benchmark's ``asyncio-sink`` system (``--viewers 0``): the same plain-RTP publisher
as Janus's input, into a UDP port read by asyncio's own datagram transport, one packet per
callback, nothing done with it. What that costs is what CPython's event loop costs to be
woken by a 500 kbps stream on this machine, before any media work (docs/benchmarks.md,
section 4).

    python -m bench.servers.udp_sink PORT_FILE
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path
from typing import Any


class Counting(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.packets = 0

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.packets += 1


async def main(port_file: Path) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(Counting, local_addr=("127.0.0.1", 0))
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    port_file.write_text(str(transport.get_extra_info("sockname")[1]))
    await stopped.wait()
    transport.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
