// One station's live video in one <video>, reconnecting on its own until stopped.
//
// A Player holds at most one WHEP session. When the session is lost (ICE failure, the
// publisher went away, the hub refused) it waits — 1 s doubling to 15 s, or the hub's
// Retry-After — and tries again, but only while the station is live; `kick()` retries at
// once (called when the station turns live again). `stop()` ends the session for good.

import { WhepSession, watchConnection } from "./rtc.js";

const MAX_DELAY_MS = 15000;

export class Player {
  constructor({ stationId, video, stateEl, isLive }) {
    this.stationId = stationId;
    this.video = video;
    this.stateEl = stateEl;
    this.isLive = isLive; // () => whether the station publishes now
    this.session = null;
    this.stopped = false;
    this.delay = 1000;
    this.timer = null;
    this.attempt = 0;
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this._endSession();
    this.video.srcObject = null;
  }

  /** Try now (e.g. the station just went live) unless a session is up or starting. */
  kick() {
    if (this.stopped || this.session) return;
    clearTimeout(this.timer);
    this.delay = 1000;
    this._connect();
  }

  _say(text, state) {
    if (this.stateEl) {
      this.stateEl.textContent = text;
      this.stateEl.dataset.state = state;
    }
  }

  async _connect() {
    if (this.stopped) return;
    if (!this.isLive()) {
      this._say("Stasiun tidak sedang siaran", "idle");
      return; // kick() brings us back when it goes live
    }
    const attempt = ++this.attempt;
    const session = new WhepSession(this.stationId);
    this.session = session;
    this._say("Menghubungkan…", "connecting");
    watchConnection(session, (why) => this._lost(session, why));
    session.pc.addEventListener("connectionstatechange", () => {
      if (session.pc.connectionState === "connected" && this.session === session) {
        this.delay = 1000;
        this._say("", "playing");
      }
    });
    try {
      const stream = await session.start();
      if (this.stopped || attempt !== this.attempt) return session.close();
      this.video.srcObject = stream;
      this.video.play().catch(() => { /* autoplay with sound needs a gesture; muted tiles are fine */ });
    } catch (error) {
      if (this.stopped || attempt !== this.attempt) return;
      const wait = error.retryAfter ? error.retryAfter * 1000 : this.delay;
      this._lost(session, error.status === 404 ? "not-live" : "error", wait, error.message);
    }
  }

  _lost(session, why, wait = this.delay, detail = "") {
    if (this.session !== session || this.stopped) return;
    this._endSession();
    this.video.srcObject = null;
    const seconds = Math.round(wait / 1000);
    this._say(why === "not-live" ? "Stasiun tidak sedang siaran"
      : `Terputus${detail ? ` (${detail})` : ""}, mencoba lagi dalam ${seconds} dtk`, "retrying");
    this.timer = setTimeout(() => this._connect(), wait);
    this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
  }

  _endSession() {
    if (this.session) {
      this.session.close();
      this.session = null;
    }
  }

  framesDecoded() {
    return this.session ? this.session.framesDecoded() : Promise.resolve(0);
  }
}
