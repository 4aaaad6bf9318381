"""WHIP / WHEP over HTTP on a real hub (uvicorn on port 0): RFC 9725 status codes and headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription

from hub.media.seams_peers import close_peer_connection, new_peer_connection
from hub.routes.middleware import retry_after_header
from tests.kit import RunningHub, hub_settings, start_hub, stop_hub, wait_until
from tests.media.peers import PatternTrack, ToneTrack, make_offer, wait_for_state

STATION = "35.09.01"
PRIVATE = "opd.bakesbangpol"
SDP = {"Content-Type": "application/sdp"}


async def publisher_offer() -> tuple[RTCPeerConnection, str]:
    pc = new_peer_connection(())
    pc.addTransceiver(PatternTrack(), direction="sendonly")
    pc.addTransceiver(ToneTrack(), direction="sendonly")
    return pc, await make_offer(pc)


async def viewer_offer() -> tuple[RTCPeerConnection, str]:
    pc = new_peer_connection(())
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    return pc, await make_offer(pc)


async def test_whip_and_whep_round_trip_with_rfc_9725_headers(hub: RunningHub) -> None:
    token = await hub.token(STATION)
    publisher, offer = await publisher_offer()
    viewer, view_offer = await viewer_offer()
    async with httpx.AsyncClient(base_url=hub.http) as http:
        auth = {"Authorization": f"Bearer {token}", **SDP}
        created = await http.post(f"/whip/{STATION}", content=offer, headers=auth)
        assert created.status_code == 201, created.text
        assert created.headers["content-type"].startswith("application/sdp")
        location, etag = created.headers["location"], created.headers["etag"]
        assert location.startswith(f"/whip/{STATION}/") and len(location.rsplit("/", 1)[1]) >= 24
        assert etag.startswith('"') and created.headers["access-control-allow-origin"] == "*"
        assert "Location" in created.headers["access-control-expose-headers"]
        assert "link" not in created.headers  # no ICE servers configured: nothing to announce
        await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
        await wait_for_state(publisher, "connected")

        watched = await http.post(f"/whep/{STATION}", content=view_offer, headers=SDP)
        assert watched.status_code == 201, watched.text
        await viewer.setRemoteDescription(RTCSessionDescription(watched.text, "answer"))
        await wait_for_state(viewer, "connected")
        assert hub.hub.media.viewer_count(STATION) == 1

        whep = watched.headers["location"]
        trickle = {"Content-Type": "application/trickle-ice-sdpfrag"}
        assert (await http.patch(whep, content="a=candidate", headers=trickle)).status_code == 405
        assert (await http.delete(location)).status_code == 401  # no token
        other = await hub.token("35.09.02")
        assert (await http.delete(location, headers={"Authorization": f"Bearer {other}"})).status_code == 401
        assert (await http.delete(f"/whip/{STATION}/not-a-session", headers=auth)).status_code == 404
        assert (await http.delete(whep)).status_code == 200
        await wait_for_state(viewer, "closed")
        assert (await http.delete(whep)).status_code == 404  # gone
        assert (await http.delete(location, headers=auth)).status_code == 200
        await wait_for_state(publisher, "closed")
        assert not hub.hub.media.is_publishing(STATION)
    await close_peer_connection(viewer)
    await close_peer_connection(publisher)


async def test_whep_session_of_an_operator_cannot_be_deleted_anonymously(hub: RunningHub) -> None:
    token = await hub.token(PRIVATE)
    await hub.hub.auth.add_operator("budi", "rahasia-sekali")
    publisher, offer = await publisher_offer()
    viewer, view_offer = await viewer_offer()
    async with httpx.AsyncClient(base_url=hub.http) as anonymous, httpx.AsyncClient(base_url=hub.http) as operator:
        login = await operator.post("/api/v1/auth/login", json={"username": "budi", "password": "rahasia-sekali"})
        assert login.status_code == 200
        operator.headers["X-CSRF-Token"] = login.json()["csrf"]  # as the wall sends it
        created = await anonymous.post(f"/whip/{PRIVATE}", content=offer,
                                       headers={"Authorization": f"Bearer {token}", **SDP})
        assert created.status_code == 201
        assert (await anonymous.post(f"/whep/{PRIVATE}", content=view_offer, headers=SDP)).status_code == 404
        watched = await operator.post(f"/whep/{PRIVATE}", content=view_offer, headers=SDP)
        assert watched.status_code == 201, watched.text
        whep = watched.headers["location"]
        assert (await anonymous.delete(whep)).status_code == 404  # not even visible to the public
        assert (await operator.delete(whep)).status_code == 200
    await close_peer_connection(viewer)
    await close_peer_connection(publisher)


async def test_bad_requests_get_clear_errors(hub: RunningHub) -> None:
    token = await hub.token(STATION)
    publisher, offer = await publisher_offer()
    await close_peer_connection(publisher)
    auth = {"Authorization": f"Bearer {token}"}
    whip, whep = f"/whip/{STATION}", f"/whep/{STATION}"
    async with httpx.AsyncClient(base_url=hub.http) as http:
        cases = [
            (await http.post(whip, content=offer, headers=SDP), 401, "not_authenticated"),
            (await http.post(whip, content=offer, headers={"Authorization": "Bearer nope", **SDP}), 401,
             "not_authenticated"),
            (await http.post(whip, content=offer, headers={**auth, "Content-Type": "text/plain"}), 415,
             "unsupported_media_type"),
            (await http.post(whip, content=offer + "a=x:" + "y" * 30_000, headers={**auth, **SDP}), 413, "too_large"),
            (await http.post(whip, content="v=0\r\nnonsense", headers={**auth, **SDP}), 400, "protocol"),
            # An unknown station answers as a known one does to a token that is not its own.
            (await http.post("/whip/99.99.99", content=offer, headers={**auth, **SDP}), 401, "not_authenticated"),
            (await http.post(whep, content=offer.replace("sendonly", "recvonly"), headers=SDP), 404, "not_live"),
        ]
    for response, status, code in cases:
        assert response.status_code == status, response.text
        assert response.json()["error"]["code"] == code
    assert hub.hub.media.metrics()["sessions"] == 0


async def test_options_preflight_announces_cors_and_ice_servers(tmp_path: Path) -> None:
    settings = hub_settings(tmp_path, media={"ice_servers": ["stun:127.0.0.1:3478", "stun:127.0.0.2:3478"]})
    running = await start_hub(settings)
    try:
        async with httpx.AsyncClient(base_url=running.http) as http:
            for path in (f"/whip/{STATION}", f"/whep/{STATION}", f"/whep/{STATION}/some-session"):
                response = await http.options(path, headers={"Origin": "https://obs.example",
                                                             "Access-Control-Request-Method": "POST"})
                assert response.status_code == 204
                assert response.headers["access-control-allow-origin"] == "*"
                assert "Authorization" in response.headers["access-control-allow-headers"]
                assert response.headers["link"] == (
                    '<stun:127.0.0.1:3478>; rel="ice-server", <stun:127.0.0.2:3478>; rel="ice-server"')
    finally:
        await stop_hub(running)


async def test_an_operators_view_of_a_non_public_station_is_audited(hub: RunningHub) -> None:
    token = await hub.token(PRIVATE)
    await hub.hub.auth.add_operator("sari", "rahasia-sekali")
    publisher, offer = await publisher_offer()
    viewer, view_offer = await viewer_offer()
    async with httpx.AsyncClient(base_url=hub.http) as http:
        created = await http.post(f"/whip/{PRIVATE}", content=offer,
                                  headers={"Authorization": f"Bearer {token}", **SDP})
        await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
        await wait_for_state(publisher, "connected")
        assert (await http.post(f"/whep/{PRIVATE}", content=view_offer, headers=SDP)).status_code == 404
        login = await http.post("/api/v1/auth/login", json={"username": "sari", "password": "rahasia-sekali"})
        watched = await http.post(f"/whep/{PRIVATE}", content=view_offer,
                                  headers={**SDP, "X-CSRF-Token": login.json()["csrf"]})
        assert watched.status_code == 201, watched.text
        audit = (await http.get("/api/v1/audit")).json()["entries"]
    assert audit[0] == {"id": audit[0]["id"], "at": audit[0]["at"], "actor": "sari", "action": "view",
                        "detail": PRIVATE}
    await close_peer_connection(viewer)
    await close_peer_connection(publisher)


async def test_rotating_a_token_ends_the_whip_session_opened_with_it(hub: RunningHub) -> None:
    token = await hub.token(STATION)
    publisher, offer = await publisher_offer()
    async with httpx.AsyncClient(base_url=hub.http) as http:
        created = await http.post(f"/whip/{STATION}", content=offer,
                                  headers={"Authorization": f"Bearer {token}", **SDP})
        assert created.status_code == 201
        await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
        await wait_for_state(publisher, "connected")
        session_id = created.headers["location"].rsplit("/", 1)[1]
        await hub.token(STATION)  # `jaga-hub stations token` from any process
        await wait_until(lambda: hub.hub.media.session(session_id) is None, 10,  # the next checkpoint ends it
                         "the WHIP session to end", every=0.05)
        assert not hub.hub.media.is_publishing(STATION)
    await close_peer_connection(publisher)


async def test_an_offer_that_breaks_aiortcs_answer_is_a_400_and_leaves_nothing(hub: RunningHub) -> None:
    """Found by the SDP fuzzer: the video m= line gone, its attributes and BUNDLE left."""
    token = await hub.token(STATION)
    publisher, offer = await publisher_offer()
    broken = "\r\n".join(line for line in offer.splitlines() if not line.startswith("m=video")) + "\r\n"
    async with httpx.AsyncClient(base_url=hub.http) as http:
        response = await http.post(f"/whip/{STATION}", content=broken,
                                   headers={"Authorization": f"Bearer {token}", **SDP})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "protocol"
    assert hub.hub.media.metrics()["peer_connections"] == 0
    await close_peer_connection(publisher)


async def publish_and_answer_one_viewer(running: RunningHub, http: httpx.AsyncClient,
                                        publishing: tuple[RTCPeerConnection, str], viewer_sdp: str) -> None:
    """The station publishes over WHIP (connected), and one public WHEP offer is answered: with
    joins paced, that viewer has taken the current turn."""
    publisher, offer = publishing
    auth = {"Authorization": f"Bearer {await running.token(STATION)}", **SDP}
    created = await http.post(f"/whip/{STATION}", content=offer, headers=auth)
    assert created.status_code == 201, created.text
    await publisher.setRemoteDescription(RTCSessionDescription(created.text, "answer"))
    await wait_for_state(publisher, "connected")
    watched = await http.post(f"/whep/{STATION}", content=viewer_sdp, headers=SDP)
    assert watched.status_code == 201, watched.text


async def test_a_public_viewer_leaving_while_its_offer_waits_frees_its_place_and_builds_nothing(
        tmp_path: Path) -> None:
    """Joins paced one per 5 s, a station allowing 2 viewers: the first viewer is answered; the
    second's offer waits for its turn and its client gives up (a page reloaded in a crowd). The
    hub stops waiting at once: no peer connection is built for it and its viewer slot is free
    again — a third offer is queued, not refused ``station_full``."""
    running = await start_hub(hub_settings(tmp_path, media={"public_joins_per_s": 0.2, "public_join_wait_s": 20.0,
                                                            "max_viewers_per_station": 2}))
    publisher, offer = await publisher_offer()
    first, first_offer = await viewer_offer()
    second, second_offer = await viewer_offer()
    third, third_offer = await viewer_offer()
    relay = running.hub.media
    try:
        async with httpx.AsyncClient(base_url=running.http) as http:
            await publish_and_answer_one_viewer(running, http, (publisher, offer), first_offer)

            def abandoned(n: int) -> Callable[[], bool]:
                return lambda: relay.metrics()["joins_abandoned"] == n

            for count, waiting in ((1, second_offer), (2, third_offer)):
                with pytest.raises(httpx.ReadTimeout):  # the client closes its connection
                    await http.post(f"/whep/{STATION}", content=waiting, headers=SDP, timeout=1.0)
                await wait_until(abandoned(count), 5, "the hub to notice the client left", every=0.05)
                metrics = relay.metrics()
                assert (metrics["joins_waiting"], metrics["peer_connections"], metrics["viewers"]) == (0, 2, 1)
            assert relay.metrics()["sessions_refused"] == 0  # the third was queued: the second's slot was free
            errors = running.hub.metrics.registry.get_sample_value("jaga_errors_total", {"code": "client_gone"})
            assert errors == 2  # answered 499 to no one, and counted
    finally:
        for pc in (third, second, first, publisher):
            await close_peer_connection(pc)
        await stop_hub(running)


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    """A client back when told must find that refusal over: 9.4 s is said as 10; at least 1."""
    assert [retry_after_header(s) for s in (0.0, 0.2, 1.0, 9.4, 9.5, 30.0)] == ["1", "1", "1", "10", "10", "30"]


async def test_a_public_viewer_past_the_queue_of_turns_gets_503_busy_with_retry_after(tmp_path: Path) -> None:
    """Joins paced one per 5 s and no waiting allowed: the first public WHEP offer is answered,
    the next one at once gets 503 ``busy`` and a Retry-After, and nothing is left open for it."""
    running = await start_hub(hub_settings(tmp_path, media={"public_joins_per_s": 0.2, "public_join_wait_s": 0.0}))
    publisher, offer = await publisher_offer()
    first, first_offer = await viewer_offer()
    second, second_offer = await viewer_offer()
    try:
        async with httpx.AsyncClient(base_url=running.http) as http:
            await publish_and_answer_one_viewer(running, http, (publisher, offer), first_offer)
            refused = await http.post(f"/whep/{STATION}", content=second_offer, headers=SDP)
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"]["code"] == "busy"
            assert 1 <= int(refused.headers["retry-after"]) <= 5
            metrics = running.hub.media.metrics()
            assert (metrics["viewers"], metrics["joins_refused_busy"], metrics["sessions_refused"]) == (1, 1, 1)
    finally:
        for pc in (second, first, publisher):
            await close_peer_connection(pc)
        await stop_hub(running)
