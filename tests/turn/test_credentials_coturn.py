"""The hub's TURN credentials against a real coturn (``use-auth-secret``) on loopback.

Every peer connection that uses TURN here is *relay only* (``iceTransportPolicy`` relay, aiortc's
public API): its only candidate is the one coturn allocates, so "gathers a ``typ relay``
candidate" means coturn accepted the credential, and "connected" means the media went through
coturn. What each test shows is in its name.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from clients.ice import IceServer, from_welcome, parse_links
from hub.core.turn import turn_credential
from hub.media.seams_peers import close_peer_connection, new_peer_connection
from jaga.ice_hosts import announced_host_addresses
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, timeout, wait_until
from tests.media.peers import PatternTrack, ToneTrack, make_offer, wait_for_state
from tests.turn.coturn import SECRET, Coturn
from tests.wsclient import station

STATION = "35.09.01"
SDP = {"Content-Type": "application/sdp"}
TTL_S = 600


@pytest.fixture
async def hub(tmp_path: Path, coturn: Coturn) -> AsyncIterator[RunningHub]:
    stun = f"stun:127.0.0.1:{coturn.port}"  # coturn answers STUN too: a plain URL, passed on as it is
    settings = hub_settings(tmp_path, media={"ice_servers": [stun]},
                            turn={"urls": [coturn.url()], "secret": SECRET, "ttl_s": TTL_S})
    running = await start_hub(settings)
    try:
        yield running
    finally:
        await stop_hub(running)


def relay_only(servers: Sequence[IceServer]) -> RTCPeerConnection:
    ice = [RTCIceServer(urls=s.url, username=s.username, credential=s.credential) for s in servers]
    return RTCPeerConnection(RTCConfiguration(iceServers=ice, iceTransportPolicy=RTCIceTransportPolicy.RELAY))


async def relay_candidates(servers: Sequence[IceServer]) -> list[str]:
    """The ``typ relay`` candidates a relay-only peer connection gathers with ``servers``."""
    pc = relay_only(servers)
    try:
        pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        return [line for line in pc.localDescription.sdp.splitlines() if " typ relay" in line]
    finally:
        await close_peer_connection(pc)


def turn_links(response: httpx.Response, name: str, coturn: Coturn) -> list[IceServer]:
    """The response's ICE servers, checked: the STUN URL plain, then the TURN URL with a
    credential for ``name`` that expires ``TTL_S`` from now."""
    links = response.headers.get_list("link")
    assert len(links) == 2, links  # one Link header per URL (RFC 9725 §4.6)
    assert links[0] == f'<stun:127.0.0.1:{coturn.port}>; rel="ice-server"'
    assert links[1].startswith(f'<{coturn.url()}>; rel="ice-server"; username="')
    assert links[1].endswith('; credential-type="password"')
    servers = parse_links(links)
    assert [s.url for s in servers] == [f"stun:127.0.0.1:{coturn.port}", coturn.url()]
    minted = servers[1]
    assert minted.username is not None and minted.username.endswith(f":{name}")
    assert minted.expires_at is not None and abs(minted.expires_at - (time.time() + TTL_S)) < 5
    return servers[1:]


async def inbound_packets(pc: RTCPeerConnection) -> int:
    report = await pc.getStats()
    return sum(getattr(s, "packetsReceived", 0) or 0 for s in report.values() if s.type == "inbound-rtp")


async def test_whip_and_whep_answers_carry_credentials_coturn_accepts_and_media_flows_through_it(
        hub: RunningHub, coturn: Coturn) -> None:
    token = await hub.token(STATION)
    publisher = viewer = None
    async with httpx.AsyncClient(base_url=hub.http) as http:
        try:
            # RFC 9725 §4.6: ICE servers fetched before the offer; OPTIONS never names a station.
            ahead = await http.options(f"/whip/{STATION}", headers={"Origin": "https://obs.example",
                                                                    "Access-Control-Request-Method": "POST"})
            assert ahead.status_code == 204 and ahead.headers["access-control-allow-origin"] == "*"
            assert "Link" in ahead.headers["access-control-expose-headers"]
            publisher = relay_only(turn_links(ahead, "publisher", coturn))
            publisher.addTransceiver(PatternTrack(), direction="sendonly")
            publisher.addTransceiver(ToneTrack(), direction="sendonly")
            offer = await make_offer(publisher)
            assert " typ relay" in offer and " typ host" not in offer

            created = await http.post(f"/whip/{STATION}", content=offer,
                                      headers={"Authorization": f"Bearer {token}", **SDP})
            assert created.status_code == 201, created.text
            station_turn = turn_links(created, STATION, coturn)  # a WHIP answer: named after the station
            await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
            await wait_for_state(publisher, "connected")
            await wait_until(lambda: hub.hub.media.metrics()["frames_received"] > 30, 10,
                             "the hub to receive the relayed publisher's frames")
            assert await relay_candidates(station_turn)  # the answer's own credential works too

            viewer = relay_only(turn_links(await http.options(f"/whep/{STATION}"), "viewer", coturn))
            viewer.addTransceiver("video", direction="recvonly")
            viewer.addTransceiver("audio", direction="recvonly")
            watched = await http.post(f"/whep/{STATION}", content=await make_offer(viewer), headers=SDP)
            assert watched.status_code == 201, watched.text
            viewer_turn = turn_links(watched, "viewer", coturn)
            await viewer.setRemoteDescription(RTCSessionDescription(watched.text, "answer"))
            await wait_for_state(viewer, "connected")
            await wait_until(lambda: inbound_packets(viewer), 10, "RTP to reach the relay-only viewer")
            assert await relay_candidates(viewer_turn)
            assert coturn.allocated_for("publisher") and coturn.allocated_for("viewer")
            assert coturn.allocated_for(STATION)
        finally:
            for pc in (publisher, viewer):
                if pc is not None:
                    await close_peer_connection(pc)


async def test_a_stations_welcome_carries_its_turn_credential(hub: RunningHub, coturn: Coturn) -> None:
    client, welcome = await station(hub.ws, STATION, await hub.token(STATION))
    try:
        entries = welcome["ice_servers"]
        assert entries[0] == f"stun:127.0.0.1:{coturn.port}"  # STUN: a plain string, as before
        assert set(entries[1]) == {"urls", "username", "credential"} and entries[1]["urls"] == coturn.url()
        servers = from_welcome(entries)
        assert servers[1].username is not None and servers[1].username.endswith(f":{STATION}")
        assert await relay_candidates(servers[1:])
    finally:
        await client.close()


async def test_expired_or_forged_credentials_are_refused_by_coturn(coturn: Coturn) -> None:
    now = time.time()
    expired = IceServer(coturn.url(), *turn_credential(SECRET, "expired", now, -60))
    forged = IceServer(coturn.url(), *turn_credential("not-the-secret", "forged", now, 600))
    fresh = IceServer(coturn.url(), *turn_credential(SECRET, "fresh", now, 60))
    assert await relay_candidates([expired]) == []
    assert await relay_candidates([forged]) == []
    assert await relay_candidates([fresh])  # the same minting, in time and with the secret
    assert coturn.allocated_for("fresh")
    assert not coturn.allocated_for("expired") and not coturn.allocated_for("forged")
    assert ":expired>" in coturn.log_text()  # coturn saw it, and refused it


async def test_an_allocation_made_in_time_outlives_its_credential(tmp_path: Path) -> None:
    """Why ``turn.ttl_s`` only bounds *new* sessions: coturn keeps refreshing an allocation whose
    credential has expired since. Here the credential lives 1 s and coturn's allocations 2 s
    (aioice refreshes at 5/6 of that), so by its second refresh the allocation has outlived
    both; data still crosses it afterwards."""
    server = Coturn(tmp_path / "coturn", extra=("--max-allocate-lifetime=2",))
    server.start()
    relayed = relay_only([IceServer(server.url(), *turn_credential(SECRET, "short", time.time(), 1))])
    direct = new_peer_connection(())  # the other end: host candidates on loopback, no TURN
    try:
        channel = relayed.createDataChannel("probe")
        opened, received = asyncio.Event(), asyncio.Queue[str]()
        channel.on("open", opened.set)

        @direct.on("datachannel")
        def on_channel(incoming: Any) -> None:
            incoming.on("message", received.put_nowait)

        await relayed.setLocalDescription(await relayed.createOffer())
        await direct.setRemoteDescription(relayed.localDescription)
        with announced_host_addresses(["127.0.0.1"]):  # aioice leaves loopback out by itself
            await direct.setLocalDescription(await direct.createAnswer())
        await relayed.setRemoteDescription(direct.localDescription)
        await wait_until(opened.is_set, 10, "the data channel through coturn to open")
        channel.send("before")
        assert await asyncio.wait_for(received.get(), timeout(5)) == "before"

        await wait_until(lambda: server.refreshes_for("short") >= 2, 10, "two refreshes after the expiry")
        channel.send("after")
        assert await asyncio.wait_for(received.get(), timeout(5)) == "after"
    finally:
        await close_peer_connection(relayed)
        await close_peer_connection(direct)
        server.stop()
