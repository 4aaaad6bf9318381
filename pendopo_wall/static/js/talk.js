// Push-to-talk: while held, the operator's microphone is published as `pendopo` over WHIP
// and the station is told to play it (talk.start); on release both are undone.
//
// Order matters: the station is told to listen only once the publish is answered, and is
// told to stop before the publish ends. A release during start-up unwinds whatever was
// already done. Errors are shown, never thrown at the caller.

import { postJSON, stationUrl } from "./api.js";
import { WhipSession } from "./rtc.js";

export const TALK_STATION = "pendopo";

export class TalkBack {
  constructor({ onState }) {
    this.onState = onState; // (state, text) with state in idle|starting|on|error
    this.held = false;
    this.busy = null; // the running start() promise
    this.stationId = null;
    this.stream = null;
    this.session = null;
    this.told = false;
  }

  async press(stationId) {
    if (this.held) return;
    this.held = true;
    this.stationId = stationId;
    this.onState("starting", "Menyalakan mikrofon…");
    this.busy = this._start(stationId);
    await this.busy;
  }

  async release() {
    if (!this.held) return;
    this.held = false;
    await this.busy;
    await this._stop();
  }

  async _start(stationId) {
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: false,
      });
      if (!this.held) return;
      this.session = new WhipSession(TALK_STATION, this.stream);
      await this.session.start();
      if (!this.held) return;
      await postJSON(stationUrl(stationId, "/talk"), { active: true });
      this.told = true;
      if (this.held) this.onState("on", "Sedang bicara — lepas untuk berhenti");
    } catch (error) {
      const text = error.name === "NotAllowedError" || error.name === "NotFoundError"
        ? "Mikrofon tidak tersedia atau tidak diizinkan"
        : `Gagal memulai bicara: ${error.message}`;
      this.onState("error", text);
      this.held = false;
      await this._stop(true);
    }
  }

  async _stop(keepMessage = false) {
    if (this.told) {
      this.told = false;
      try {
        await postJSON(stationUrl(this.stationId, "/talk"), { active: false }, { keepalive: true });
      } catch (error) {
        console.warn("wall: talk stop failed", error);
      }
    }
    if (this.session) {
      this.session.close();
      this.session = null;
    }
    if (this.stream) {
      for (const track of this.stream.getTracks()) track.stop();
      this.stream = null;
    }
    if (!keepMessage) this.onState("idle", "");
  }
}
