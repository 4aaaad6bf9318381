"""A counting WHEP viewer as a program, for a network lab's namespace (``python -m``).

It makes a recvonly offer (video + audio) gathered on ``--address``, prints it as one JSON
line ``{"offer": sdp}``, reads ``{"answer": sdp}`` from stdin, then prints ``{"video": n,
"audio": m, "state": s}`` every 0.2 s: encoded video frames reassembled (nothing decoded,
through the hub's own ``take_encoded_frames`` seam) and audio frames decoded. It ends when
stdin closes. The test process does the signalling over HTTP on the host's side: only
media crosses the lab's impaired link.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from aiortc import RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from hub.media.seams_keyframes import take_encoded_frames
from hub.media.seams_peers import close_peer_connection, new_peer_connection
from jaga.ice_hosts import announced_host_addresses


class CountingViewer:
    def __init__(self) -> None:
        self.pc = new_peer_connection(())
        self.video = 0
        self.audio = 0
        self._tasks: list[asyncio.Task[None]] = []
        video = self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver("audio", direction="recvonly")
        take_encoded_frames(video.receiver, self._on_video)
        self.pc.on("track", self._on_track)

    def _on_video(self, *_: object) -> None:
        self.video += 1

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._tasks.append(asyncio.ensure_future(self._count_audio(track)))

    async def _count_audio(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
                self.audio += 1
        except MediaStreamError:
            pass

    async def offer(self, addresses: tuple[str, ...]) -> str:
        """The offer, with host candidates on ``addresses`` only."""
        offer = await self.pc.createOffer()
        with announced_host_addresses(addresses):
            await self.pc.setLocalDescription(offer)
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    def counts(self) -> dict[str, object]:
        return {"video": self.video, "audio": self.audio, "state": self.pc.connectionState}

    async def close(self) -> None:
        await close_peer_connection(self.pc)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--address", required=True, help="the host address ICE gathers on")
    args = parser.parse_args()
    viewer = CountingViewer()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"offer": await viewer.offer((args.address,))}), flush=True)
    await viewer.answer(json.loads(await reader.readline())["answer"])
    closed = asyncio.ensure_future(reader.read())  # stdin closing ends the program
    while not closed.done():
        print(json.dumps(viewer.counts()), flush=True)
        await asyncio.wait([closed], timeout=0.2)  # a report every 0.2 s until then
    await viewer.close()


if __name__ == "__main__":
    asyncio.run(main())
