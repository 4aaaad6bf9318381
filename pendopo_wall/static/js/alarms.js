// Alarms: stations `missing` (expected on, but offline) during office hours, longest first.
//
// A station that turns missing after the wall has its first snapshot raises a cue: a short
// two-tone beep (Web Audio, no file) and a flashing badge. An operator acknowledges an alarm;
// the acknowledgement belongs to that absence (station id + since), so the next absence of
// the same station alarms again. Acknowledgements are kept in localStorage for this wall.

import { serverNow } from "./api.js";
import { REASON_LABEL, clockWIB, duration, kindLabel } from "./format.js";

const ACK_KEY = "jaga.wall.acks";
const REFRESH_MS = 10000;

export class Alarms {
  constructor({ store, list, empty, badge, operator, onOpen, soundToggle }) {
    this.store = store;
    this.list = list;
    this.empty = empty;
    this.badge = badge;
    this.operator = operator;
    this.onOpen = onOpen;
    this.soundToggle = soundToggle;
    this.template = document.getElementById("alarm-template");
    this.acks = this._loadAcks();
    this.known = null; // ids missing at the last render; null before the first snapshot
    this.rows = new Map(); // id → {el, parts}
    this.audio = null;
    this.frame = 0;
    store.subscribe((change) => this._changed(change));
    list.addEventListener("click", (event) => {
      const row = event.target.closest(".alarm");
      if (!row) return;
      if (event.target.closest(".ack")) this.acknowledge(row.dataset.id);
      else if (event.target.closest(".open")) this.onOpen(row.dataset.id);
    });
    // Browsers start audio only after a gesture; unlock it on the first one.
    const unlock = () => this._audio()?.resume();
    window.addEventListener("pointerdown", unlock, { once: true });
    window.addEventListener("keydown", unlock, { once: true });
    setInterval(() => this._renderDurations(), REFRESH_MS);
  }

  missing() {
    return this.store.all()
      .filter((s) => s.status === "missing")
      .sort((a, b) => (a.since ?? 0) - (b.since ?? 0) || a.id.localeCompare(b.id, "en"));
  }

  unacknowledged() {
    return this.missing().filter((s) => !this.acks[this._ackKey(s)]);
  }

  acknowledge(id) {
    const station = this.store.get(id);
    if (!station || station.status !== "missing") return;
    this.acks[this._ackKey(station)] = { by: this.operator, at: serverNow() };
    this._saveAcks();
    this.render();
  }

  acknowledgeAll() {
    for (const station of this.missing()) {
      this.acks[this._ackKey(station)] = { by: this.operator, at: serverNow() };
    }
    this._saveAcks();
    this.render();
  }

  _ackKey(station) {
    return `${station.id}@${station.since ?? ""}`;
  }

  _changed(change) {
    if (!change.reset && change.kind !== "presence") return;
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  render() {
    const missing = this.missing();
    const ids = new Set(missing.map((s) => s.id));
    if (this.known !== null) {
      const fresh = missing.filter((s) => !this.known.has(s.id) && !this.acks[this._ackKey(s)]);
      if (fresh.length) this._cue();
    }
    this.known = ids;
    for (const [id, row] of this.rows) {
      if (!ids.has(id)) {
        row.el.remove();
        this.rows.delete(id);
      }
    }
    const ordered = missing.map((station) => {
      const row = this.rows.get(station.id) || this._create(station.id);
      this.rows.set(station.id, row);
      this._render(row, station);
      return row.el;
    });
    this.list.replaceChildren(...ordered);
    this.empty.hidden = missing.length > 0;
    const open = missing.filter((s) => !this.acks[this._ackKey(s)]).length;
    this.badge.textContent = String(open);
    this.badge.hidden = open === 0;
    document.title = open ? `(${open}) Jaga · Dinding Pendopo` : "Jaga · Dinding Pendopo";
    this._pruneAcks(missing);
  }

  _create(id) {
    const el = this.template.content.firstElementChild.cloneNode(true);
    el.dataset.id = id;
    return {
      el,
      parts: {
        name: el.querySelector(".name"),
        sub: el.querySelector(".sub"),
        duration: el.querySelector(".duration"),
        ack: el.querySelector(".ack-state"),
        button: el.querySelector("button.ack"),
      },
    };
  }

  _render(row, station) {
    const { parts } = row;
    parts.name.textContent = station.name;
    const reason = station.reason ? REASON_LABEL[station.reason] || station.reason : "";
    parts.sub.textContent = [kindLabel(station.kind), station.kecamatan, station.id, reason].filter(Boolean).join(" · ");
    parts.duration.textContent = station.since
      ? `sejak ${clockWIB(station.since)} (${duration(serverNow() - station.since)})`
      : "belum terhubung sejak hub berjalan";
    const ack = this.acks[this._ackKey(station)];
    row.el.classList.toggle("acknowledged", !!ack);
    parts.ack.textContent = ack ? `Diketahui oleh ${ack.by} pukul ${clockWIB(ack.at)}` : "";
    parts.button.hidden = !!ack;
  }

  _renderDurations() {
    for (const [id, row] of this.rows) {
      const station = this.store.get(id);
      if (station) this._render(row, station);
    }
  }

  _cue() {
    this.badge.classList.remove("flash");
    void this.badge.offsetWidth; // restart the animation
    this.badge.classList.add("flash");
    document.body.classList.add("alarm-flash");
    setTimeout(() => document.body.classList.remove("alarm-flash"), 3000);
    if (this.soundToggle.checked) this._beep();
  }

  _audio() {
    if (!this.audio && window.AudioContext) this.audio = new AudioContext();
    return this.audio;
  }

  _beep() {
    const audio = this._audio();
    if (!audio || audio.state !== "running") return;
    const start = audio.currentTime;
    [880, 660].forEach((frequency, i) => {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, start + i * 0.25);
      gain.gain.exponentialRampToValueAtTime(0.3, start + i * 0.25 + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, start + i * 0.25 + 0.22);
      osc.connect(gain).connect(audio.destination);
      osc.start(start + i * 0.25);
      osc.stop(start + i * 0.25 + 0.24);
    });
  }

  _loadAcks() {
    try {
      return JSON.parse(localStorage.getItem(ACK_KEY) || "{}") || {};
    } catch {
      return {};
    }
  }

  _saveAcks() {
    localStorage.setItem(ACK_KEY, JSON.stringify(this.acks));
  }

  /** Forget acknowledgements of absences that are over (once the wall has a snapshot). */
  _pruneAcks(missing) {
    if (!this.store.ready) return;
    const current = new Set(missing.map((s) => this._ackKey(s)));
    let changed = false;
    for (const key of Object.keys(this.acks)) {
      if (!current.has(key)) {
        delete this.acks[key];
        changed = true;
      }
    }
    if (changed) this._saveAcks();
  }
}
