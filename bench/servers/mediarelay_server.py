"""The naive baseline: aiortc's stock ``MediaRelay`` behind the same WHIP/WHEP endpoints.

The publisher's track is decoded once; every viewer gets ``relay.subscribe(track)`` and its
own ``RTCRtpSender`` encodes those frames again (VP8, aiortc's default 500 kbps). One
always-on subscriber drains the source so that frames never pile up with no viewer.

    python -m bench.servers.mediarelay_server PORT_FILE
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import uvicorn
from aiortc import RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.media.seams_peers import new_peer_connection
from jaga.ice_hosts import announced_host_addresses

relay = MediaRelay()
sources: dict[str, Any] = {}
pcs: set[Any] = set()
tasks: set[asyncio.Task[Any]] = set()


async def _drain(track: Any) -> None:
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        pass


async def _answer(pc: Any) -> Response:
    answer = await pc.createAnswer()
    with announced_host_addresses(("127.0.0.1",)):
        await pc.setLocalDescription(answer)
    return Response(pc.localDescription.sdp, status_code=201, media_type="application/sdp",
                    headers={"Location": f"/session/{id(pc)}"})


async def whip(request: Request) -> Response:
    station = request.path_params["station"]
    pc = new_peer_connection(())
    pcs.add(pc)

    @pc.on("track")
    def on_track(track: Any) -> None:
        if track.kind == "video":
            sources[station] = track
            tasks.add(asyncio.ensure_future(_drain(relay.subscribe(track, buffered=False))))

    await pc.setRemoteDescription(RTCSessionDescription(sdp=(await request.body()).decode(), type="offer"))
    return await _answer(pc)


async def whep(request: Request) -> Response:
    station = request.path_params["station"]
    if station not in sources:
        return Response("not live", status_code=404)
    pc = new_peer_connection(())
    pcs.add(pc)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=(await request.body()).decode(), type="offer"))
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver.direction = "sendonly"
            transceiver.sender.replaceTrack(relay.subscribe(sources[station], buffered=False))
    return await _answer(pc)


app = Starlette(routes=[Route("/whip/{station}", whip, methods=["POST"]),
                        Route("/whep/{station}", whep, methods=["POST"])])


async def main() -> None:
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started and not task.done():
        await asyncio.sleep(0.05)
    Path(sys.argv[1]).write_text(str(server.servers[0].sockets[0].getsockname()[1]))
    await task
    await asyncio.gather(*(pc.close() for pc in pcs), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main())
