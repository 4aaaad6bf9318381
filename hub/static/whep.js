// A WHEP viewer (draft-ietf-wish-whep): one recvonly RTCPeerConnection, the offer POSTed as
// application/sdp once ICE gathering is done (no trickle), the answer applied, and a DELETE
// on the session's Location when done. A 307 to the node that holds the station is followed
// by fetch itself; Location is resolved against the final URL. The ICE servers (TURN with
// fresh credentials, for networks that drop UDP) come from an OPTIONS on the endpoint first.

import { fetchIceServers } from "./ice_servers.js";

export class WhepError extends Error {
  constructor(status, message, retryAfterS, code) {
    super(message || `WHEP HTTP ${status}`);
    this.status = status;
    this.retryAfterS = retryAfterS || 0; // Retry-After of a 429/503 (the viewer caps), seconds
    this.code = code || ""; // the hub's error code ("station_full", "busy", …), when it sent one
  }
}

// The hub's refusals are {"error": {"code", "message"}} (docs/http-api.md).
function errorCode(body) {
  try {
    return JSON.parse(body).error.code || "";
  } catch {
    return "";
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
    this.runs = 0; // start() and stop() each count one: a start() that was stopped meanwhile gives up
    this.buffered = null; // the last jitter-buffer totals read by delayMs()
  }

  async start() {
    const run = ++this.runs;
    const iceServers = await fetchIceServers(this.endpoint);
    if (run !== this.runs) return;
    const pc = new RTCPeerConnection({ iceServers });
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
    if (response.status !== 201) {
      throw new WhepError(response.status, body, Number(response.headers.get("Retry-After")) || 0, errorCode(body));
    }
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
    this.runs++;
    this.deleteSession();
    if (this.pc) { this.pc.close(); this.pc = null; }
    this.video.srcObject = null;
  }

  // The reliable "video is playing" signal, also used by the tests.
  async framesDecoded() {
    return (await this.flow()).frames;
  }

  // What arrives: video frames decoded and audio packets received so far. Video that stops
  // while audio goes on is what a viewer on a weak link sees when the hub stops its video.
  async flow() {
    const flow = { frames: 0, audio: 0 };
    if (!this.pc) return flow;
    (await this.pc.getStats()).forEach((report) => {
      if (report.type !== "inbound-rtp") return;
      if (report.kind === "video") flow.frames += report.framesDecoded || 0;
      if (report.kind === "audio") flow.audio += report.packetsReceived || 0;
    });
    return flow;
  }

  // About how far behind the station the picture is, in ms, or null before media: this
  // browser's jitter buffer (over the last reading, video first, audio when there is no
  // video) plus half the round trip to the hub. It leaves out the station's own encoder and
  // its uplink to the hub, which the page cannot see: a lower bound, not a measurement.
  async delayMs() {
    if (!this.pc) return null;
    const stats = await this.pc.getStats();
    const buffers = {};
    let selectedPair = null;
    let rtt = null;
    stats.forEach((report) => {
      if (report.type === "transport" && report.selectedCandidatePairId) selectedPair = report.selectedCandidatePairId;
      if (report.type === "inbound-rtp" && (report.kind === "video" || report.kind === "audio")) {
        buffers[report.kind] = { delay: report.jitterBufferDelay || 0, count: report.jitterBufferEmittedCount || 0 };
      }
    });
    stats.forEach((report) => {
      if (report.type !== "candidate-pair" || typeof report.currentRoundTripTime !== "number") return;
      if (report.id === selectedPair || (selectedPair === null && report.nominated && report.state === "succeeded")) {
        rtt = report.currentRoundTripTime;
      }
    });
    const previous = this.buffered || {};
    this.buffered = buffers;
    const kinds = ["video", "audio"].filter((kind) => buffers[kind] && buffers[kind].count > 0);
    if (!kinds.length) return null;
    // What flowed since the last reading (video stopped by the hub, then audio), else the totals
    const recent = kinds.find((kind) => previous[kind] && buffers[kind].count > previous[kind].count);
    const buffer = recent
      ? (buffers[recent].delay - previous[recent].delay) / (buffers[recent].count - previous[recent].count)
      : buffers[kinds[0]].delay / buffers[kinds[0]].count;
    return Math.round((buffer + (rtt || 0) / 2) * 1000);
  }

  // The session resource (GET on the Location): {"video": "on"|"off", "reason", "retry_in_s",
  // "thumbnail_s", …} (docs/http-api.md), or null when it cannot be read.
  async videoStatus() {
    if (!this.session) return null;
    try {
      const response = await fetch(this.session, { headers: { Accept: "application/json" }, cache: "no-store" });
      return response.ok ? await response.json() : null;
    } catch {
      return null;
    }
  }
}
