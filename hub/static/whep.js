// A WHEP viewer (draft-ietf-wish-whep): one recvonly RTCPeerConnection, the offer POSTed as
// application/sdp once ICE gathering is done (no trickle), the answer applied, and a DELETE
// on the session's Location when done. A 307 to the node that holds the station is followed
// by fetch itself; Location is resolved against the final URL.

export class WhepError extends Error {
  constructor(status, message) {
    super(message || `WHEP HTTP ${status}`);
    this.status = status;
  }
}

function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms); // send what we have: the hub's candidates suffice
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

export class WhepPlayer {
  constructor(endpoint, video, onState) {
    this.endpoint = endpoint;
    this.video = video;
    this.onState = onState || (() => {});
    this.pc = null;
    this.session = null;
  }

  async start() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    this.pc = pc;
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const stream = new MediaStream();
    pc.addEventListener("track", (event) => {
      stream.addTrack(event.track);
      if (this.video.srcObject !== stream) this.video.srcObject = stream;
    });
    pc.addEventListener("connectionstatechange", () => this.onState(pc.connectionState));
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 2000);
    const response = await fetch(this.endpoint, {
      method: "POST", headers: { "Content-Type": "application/sdp" }, body: pc.localDescription.sdp,
    });
    const body = await response.text();
    if (response.status !== 201) throw new WhepError(response.status, body);
    const location = response.headers.get("Location");
    if (location) this.session = new URL(location, response.url).href;
    if (this.pc !== pc) { this.deleteSession(); return; } // stopped while we waited
    await pc.setRemoteDescription({ type: "answer", sdp: body });
  }

  deleteSession() {
    if (!this.session) return;
    const url = this.session;
    this.session = null;
    // keepalive lets the DELETE outlive the page on pagehide
    fetch(url, { method: "DELETE", keepalive: true }).catch(() => {});
  }

  stop() {
    this.deleteSession();
    if (this.pc) { this.pc.close(); this.pc = null; }
    this.video.srcObject = null;
  }

  // The reliable "video is playing" signal, also used by the tests.
  async framesDecoded() {
    if (!this.pc) return 0;
    let frames = 0;
    (await this.pc.getStats()).forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video") frames += report.framesDecoded || 0;
    });
    return frames;
  }
}
