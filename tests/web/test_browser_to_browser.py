"""Chromium to Chromium through the hub: one page publishes its (fake) camera and microphone
with WHIP, like a browser-based station or OBS would, with no agent and no WebSocket; the
public watch page in another browser context plays it with WHEP and decodes frames."""

from __future__ import annotations

import httpx
import pytest
from playwright.async_api import Browser

from tests.kit import RunningHub, timeout, wait_until
from tests.web.browser import RECORD_PEERS, frames_decoded, open_page

pytestmark = pytest.mark.browser

WHIP_PUBLISH = """
async ({url, token, codec}) => {
  const media = await navigator.mediaDevices.getUserMedia({video: {width: 320, height: 240}, audio: true});
  const pc = new RTCPeerConnection({iceServers: []});
  for (const track of media.getTracks()) {
    const transceiver = pc.addTransceiver(track, {direction: "sendonly"});
    if (track.kind === "video") {
      const wanted = RTCRtpSender.getCapabilities("video").codecs.filter(
        (c) => c.mimeType === "video/" + codec &&
               (codec !== "H264" || (c.sdpFmtpLine || "").includes("packetization-mode=1")));
      transceiver.setCodecPreferences(wanted);
    }
  }
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((done) => {
    if (pc.iceGatheringState === "complete") return done();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && done());
  });
  const response = await fetch(url, {method: "POST", body: pc.localDescription.sdp,
    headers: {"Content-Type": "application/sdp", "Authorization": "Bearer " + token}});
  if (response.status !== 201) throw new Error("WHIP " + response.status + " " + await response.text());
  await pc.setRemoteDescription({type: "answer", sdp: await response.text()});
  window.__publisher = pc;
  return response.headers.get("Location");
}
"""


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_chromium_publishes_with_whip_and_chromium_plays_with_whep(
        browser: Browser, web_hub: RunningHub, codec: str) -> None:
    station_id = "35.09.02"
    token = await web_hub.token(station_id)
    publisher, publisher_log = await open_page(browser, f"{web_hub.http}/login")
    location = await publisher.evaluate(WHIP_PUBLISH, {"url": f"{web_hub.http}/whip/{station_id}",
                                                       "token": token, "codec": codec})
    assert location.startswith(f"/whip/{station_id}/")
    async with httpx.AsyncClient(base_url=web_hub.http, timeout=timeout(5)) as http:
        async def live() -> bool:
            return bool((await http.get(f"/api/v1/stations/{station_id}")).json()["state"] == "live")

        await wait_until(live, 15, "the browser publisher to make the station live", every=0.1)
        viewer, viewer_log = await open_page(browser, f"{web_hub.http}/watch/{station_id}", init_script=RECORD_PEERS)
        first = await wait_until(lambda: frames_decoded(viewer), 15, f"a first decoded {codec} frame", every=0.1)
        await wait_until(lambda: frames_decoded(viewer, beyond=first + 10), 10, f"ten more decoded {codec} frames",
                         every=0.1)
        negotiated = await viewer.evaluate("""async () => {
            let mime = "";
            for (const pc of window.__jagaPeers) (await pc.getStats()).forEach((r) => {
                if (r.type === "codec" && r.mimeType.startsWith("video/")) mime = r.mimeType;
            });
            return mime;
        }""")
        assert negotiated.lower() == f"video/{codec}".lower()  # exactly what the publisher sends
        assert (await http.delete(location, headers={"Authorization": f"Bearer {token}"})).status_code == 200
    viewer_log.assert_clean()
    publisher_log.assert_clean()
