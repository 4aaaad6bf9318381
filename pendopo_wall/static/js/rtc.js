// WHEP (play) and WHIP (publish) sessions against the hub's relay (DESIGN §5).
//
// Both are non-trickle: the offer is sent once ICE gathering is complete (or after
// GATHER_MS), the 201 answer is applied, and the session's Location is kept so `close()`
// can DELETE it — a session the wall stops showing never lingers on the relay. Requests
// carry the operator's cookie (same origin) and CSRF token. The ICE servers (TURN with fresh
// credentials, for networks that drop UDP) come from an OPTIONS on the endpoint (RFC 9725
// §4.6) right before each offer, set on the peer connection before it gathers.

import { fetchIceServers } from "/static/ice_servers.js";
import { csrfToken } from "./api.js";

const GATHER_MS = 2000;
const CLOSE_AFTER_MS = 2000; // close the peer connection even if the DELETE hangs

export class MediaError extends Error {
  constructor(status, message, retryAfter) {
    super(message);
    this.status = status;
    this.retryAfter = retryAfter; // seconds, when the hub said so (429/503)
  }
}

function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, GATHER_MS);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener("icegatheringstatechange", check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === "complete") done();
    }
    pc.addEventListener("icegatheringstatechange", check);
  });
}

class Session {
  constructor(endpoint) {
    this.endpoint = endpoint;
    this.pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle" });
    this.location = null;
    this.closed = false;
  }

  async _negotiate() {
    const iceServers = await fetchIceServers(this.endpoint, { credentials: "same-origin" });
    if (this.closed) throw new MediaError(0, "ditutup");
    // Allowed until gathering starts (setLocalDescription); the rest of the configuration stays
    // (certificates cannot be given again).
    const configuration = this.pc.getConfiguration();
    delete configuration.certificates;
    this.pc.setConfiguration({ ...configuration, iceServers });
    await this.pc.setLocalDescription(await this.pc.createOffer());
    await gathered(this.pc);
    if (this.closed) throw new MediaError(0, "ditutup");
    const response = await fetch(this.endpoint, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/sdp", "X-CSRF-Token": csrfToken() || "" },
      body: this.pc.localDescription.sdp,
    });
    if (response.status !== 201) {
      let message = `HTTP ${response.status}`;
      try {
        const text = await response.text();
        const body = JSON.parse(text);
        if (body && body.error) message = body.error.message;
      } catch { /* plain text or empty */ }
      const retry = Number(response.headers.get("Retry-After"));
      throw new MediaError(response.status, message, Number.isFinite(retry) && retry > 0 ? retry : undefined);
    }
    const location = response.headers.get("Location");
    if (location) this.location = new URL(location, new URL(this.endpoint, window.location.href)).href;
    const answer = await response.text();
    if (this.closed) {
      this._delete();
      throw new MediaError(0, "ditutup");
    }
    await this.pc.setRemoteDescription({ type: "answer", sdp: answer });
  }

  /**
   * End the session: DELETE it on the hub, then close the peer connection. Idempotent.
   * The DELETE goes first: closing first would let the relay see the peer leave and end
   * the session itself, and the DELETE would then find nothing (404).
   */
  close() {
    if (this.closed) return;
    this.closed = true;
    const pc = this.pc;
    const deleted = this._delete();
    const timer = setTimeout(() => pc.close(), CLOSE_AFTER_MS);
    deleted.finally(() => {
      clearTimeout(timer);
      pc.close();
    });
  }

  _delete() {
    if (!this.location) return Promise.resolve();
    const location = this.location;
    this.location = null;
    return fetch(location, {
      method: "DELETE",
      credentials: "same-origin",
      keepalive: true,
      headers: { "X-CSRF-Token": csrfToken() || "" },
    }).catch(() => { /* the relay also ends sessions whose peer goes away */ });
  }
}

/** Play one station. `start()` resolves with a MediaStream once the offer is answered. */
export class WhepSession extends Session {
  constructor(stationId) {
    super(`/whep/${encodeURIComponent(stationId)}`);
    this.stream = new MediaStream();
    this.pc.addTransceiver("video", { direction: "recvonly" });
    this.pc.addTransceiver("audio", { direction: "recvonly" });
    this.pc.addEventListener("track", (event) => this.stream.addTrack(event.track));
  }

  async start() {
    await this._negotiate();
    return this.stream;
  }

  /** Frames decoded so far (video), from getStats(). */
  async framesDecoded() {
    let frames = 0;
    const stats = await this.pc.getStats();
    stats.forEach((report) => {
      if (report.type === "inbound-rtp" && report.kind === "video") frames += report.framesDecoded || 0;
    });
    return frames;
  }
}

/** Publish a local stream (the operator's microphone) as `stationId`. */
export class WhipSession extends Session {
  constructor(stationId, stream) {
    super(`/whip/${encodeURIComponent(stationId)}`);
    for (const track of stream.getTracks()) {
      this.pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
    }
  }

  async start() {
    await this._negotiate();
  }
}

/**
 * Calls `onLost` once when a session's connection fails, closes, stays `disconnected` for
 * `graceMs`, or its remote video track ends (the relay ends viewers when a publisher goes).
 */
export function watchConnection(session, onLost, graceMs = 4000) {
  let timer = null;
  let fired = false;
  const fire = (why) => {
    if (fired || session.closed) return;
    fired = true;
    clearTimeout(timer);
    onLost(why);
  };
  session.pc.addEventListener("connectionstatechange", () => {
    const state = session.pc.connectionState;
    clearTimeout(timer);
    if (state === "failed" || state === "closed") fire(state);
    else if (state === "disconnected") timer = setTimeout(() => fire("disconnected"), graceMs);
  });
  session.pc.addEventListener("track", (event) => {
    event.track.addEventListener("ended", () => fire("ended"));
  });
}
