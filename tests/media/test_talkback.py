"""Talk-back on a real hub: the Pendopo publishes ``pendopo``; only addressed stations listen.

The operator's wall publishes its microphone over WHIP as ``pendopo`` and addresses one
station with ``talk.start``; that station, and no other, may then view ``pendopo`` over WHEP
with its own token, until ``talk.stop`` ends its session.
"""

from __future__ import annotations

import httpx
from aiortc import RTCPeerConnection, RTCSessionDescription

from clients import whip
from hub.media.seams_peers import close_peer_connection, new_peer_connection
from tests.kit import RunningHub, wait_until
from tests.media.peers import ToneTrack, make_offer, wait_for_state

ADDRESSED, OTHER = "35.09.01", "35.09.02"
SDP = {"Content-Type": "application/sdp"}
OPERATOR, PASSWORD = "budi", "rahasia-sekali"


async def pendopo_offer() -> tuple[RTCPeerConnection, str]:
    pc = new_peer_connection(())
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    return pc, await make_offer(pc)


async def listener_offer() -> tuple[RTCPeerConnection, str]:
    pc = new_peer_connection(())
    pc.addTransceiver("audio", direction="recvonly")
    return pc, await make_offer(pc)


async def operator_client(base_url: str) -> httpx.AsyncClient:
    """Logged in (the operator must exist), with the CSRF header every state change needs."""
    http = httpx.AsyncClient(base_url=base_url)
    login = await http.post("/api/v1/auth/login", json={"username": OPERATOR, "password": PASSWORD})
    assert login.status_code == 200, login.text
    http.headers["X-CSRF-Token"] = login.json()["csrf"]
    return http


async def publish_pendopo(operator: httpx.AsyncClient) -> tuple[RTCPeerConnection, str]:
    """The wall's push-to-talk: the operator's microphone as ``pendopo``; (pc, WHIP location)."""
    pc, offer = await pendopo_offer()
    created = await operator.post("/whip/pendopo", content=offer, headers=SDP)
    assert created.status_code == 201, created.text
    await pc.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
    await wait_for_state(pc, "connected")
    return pc, created.headers["location"]


async def listen(base_url: str, token: str, offer: str) -> tuple[int, whip.Answer | None]:
    """A station's WHEP of the Pendopo with its own token, as the agent makes it (redirects to
    the node that holds the stream included): (status, answer when 201)."""
    try:
        answer = await whip.post_offer(f"{base_url}/whep/pendopo", offer, token)
    except whip.HttpError as exc:
        return exc.status, None
    return 201, answer


async def test_only_stations_addressed_by_talk_start_listen_and_talk_stop_ends_them(hub: RunningHub) -> None:
    await hub.hub.auth.add_operator(OPERATOR, PASSWORD)
    addressed, other = await hub.token(ADDRESSED), await hub.token(OTHER)
    operator = await operator_client(hub.http)
    publisher, _ = await publish_pendopo(operator)
    listener, offer = await listener_offer()
    try:
        assert (await listen(hub.http, addressed, offer))[0] == 403  # nobody was addressed yet

        started = await operator.post(f"/api/v1/stations/{ADDRESSED}/talk", json={"active": True})
        assert started.status_code == 200, started.text
        assert (await listen(hub.http, other, offer))[0] == 403  # another station: it would overhear
        status, heard = await listen(hub.http, addressed, offer)
        assert status == 201 and heard is not None
        await listener.setRemoteDescription(RTCSessionDescription(heard.sdp, "answer"))
        await wait_for_state(listener, "connected")
        session_id = heard.location.rsplit("/", 1)[1]

        stopped = await operator.post(f"/api/v1/stations/{ADDRESSED}/talk", json={"active": False})
        assert stopped.status_code == 200, stopped.text
        await wait_until(lambda: hub.hub.media.session(session_id) is None, 5, "talk.stop to end the listener")
        assert (await listen(hub.http, addressed, offer))[0] == 403

        # Who published the Pendopo's voice, and when, is in the audit log.
        entries = (await operator.get("/api/v1/audit")).json()["entries"]
        published = [e for e in entries if e["action"] == "talk.publish"]
        assert [(e["actor"], e["detail"]) for e in published] == [(OPERATOR, "pendopo")]
    finally:
        await operator.aclose()
        await close_peer_connection(listener)
        await close_peer_connection(publisher)
