// Recordings on the wall (docs/recordings.md): in the focus view, the *Rekam* toggle and the
// station's recent recordings with a hide/show action; across the wall, the low-disk alarm.
//
// Hiding needs a reason: an inline form under the recording (no window.prompt: a wall has
// no one to answer modal boxes, and the hub refuses a hide without a reason anyway).
// Titles and reasons go into the page as text only.

import { getJSON, postJSON, stationUrl } from "./api.js";
import { clockWIB, duration } from "./format.js";

const STATUS_URL = "/api/v1/recordings/status";
const FOCUS_POLL_MS = 5000;
const ALARM_POLL_MS = 15000;
const LIST_LIMIT = 10;
const STATE_LABEL = { recording: "Merekam", finishing: "Diproses", done: "Selesai", failed: "Gagal" };

function node(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

/** The focus view's part: the Rekam toggle and the station's recordings. */
export class RecordingsPanel {
  constructor() {
    this.button = document.getElementById("rekam");
    this.state = document.getElementById("rekam-state");
    this.list = document.getElementById("focus-recordings");
    this.stationId = null;
    this.recording = false;
    this.timer = null;
    this.button.addEventListener("click", () => this._toggle());
  }

  open(id) {
    this.close();
    this.stationId = id;
    this.button.disabled = true;
    this.state.textContent = "";
    this.list.replaceChildren();
    this._refresh();
    this._loadList();
    this.timer = setInterval(() => this._refresh(), FOCUS_POLL_MS);
  }

  close() {
    clearInterval(this.timer);
    this.timer = null;
    this.stationId = null;
  }

  async _refresh() {
    const id = this.stationId;
    if (!id) return;
    try {
      const status = await getJSON(`${STATUS_URL}?station=${encodeURIComponent(id)}`);
      if (this.stationId !== id) return;
      const mine = status.station || {};
      const active = (status.active || []).find((a) => a.station === id);
      this.recording = Boolean(mine.recording);
      this.button.disabled = false;
      this.button.setAttribute("aria-pressed", String(this.recording));
      this.button.textContent = this.recording ? "■ Hentikan rekam" : "● Rekam";
      let text = this.recording ? `Merekam${active ? `: ${active.title} (sejak ${clockWIB(active.start)})` : ""}` : "Tidak merekam";
      if (!this.recording && mine.override === true) text = "Rekam diminta — menunggu video dari stasiun";
      if (status.alarm) text += ` · ${status.alarm.message}`;
      this.state.textContent = text;
    } catch (error) {
      if (this.stationId === id) this.state.textContent = `Status rekaman gagal dimuat: ${error.message}`;
    }
  }

  async _toggle() {
    const id = this.stationId;
    if (!id) return;
    this.button.disabled = true;
    try {
      await postJSON(stationUrl(id, "/recording"), { record: !this.recording });
    } catch (error) {
      this.state.textContent = `Gagal: ${error.message}`;
    }
    await this._refresh();
    this._loadList();
  }

  async _loadList() {
    const id = this.stationId;
    if (!id) return;
    let recordings;
    try {
      recordings = (await getJSON(`/api/v1/recordings?station=${encodeURIComponent(id)}&limit=${LIST_LIMIT}`)).recordings;
    } catch (error) {
      if (this.stationId === id) this.list.replaceChildren(node("li", "muted", `Rekaman gagal dimuat: ${error.message}`));
      return;
    }
    if (this.stationId !== id) return;
    if (!recordings.length) {
      this.list.replaceChildren(node("li", "muted", "Belum ada rekaman"));
      return;
    }
    this.list.replaceChildren(...recordings.map((r) => this._item(r)));
  }

  _item(r) {
    const li = node("li", "focus-recording");
    li.dataset.id = r.id;
    li.dataset.visible = String(r.visible);
    const title = node("p", "rec-title");
    if (r.url) {
      const link = node("a", "", r.title || "Tanpa judul");
      link.href = `/rekaman/${encodeURIComponent(r.id)}`;
      link.target = "_blank";
      link.rel = "noopener";
      title.append(link);
    } else {
      title.textContent = r.title || "Tanpa judul";
    }
    const meta = [r.date, clockWIB(r.start), duration(r.duration_s), STATE_LABEL[r.state] || r.state].filter(Boolean).join(" · ");
    li.append(title, node("p", "rec-meta muted", meta));
    if (!r.visible) li.append(node("p", "rec-hidden", `Disembunyikan: ${r.hidden_reason}`));
    const actions = node("div", "rec-actions");
    const button = node("button", r.visible ? "ghost" : "", r.visible ? "Sembunyikan…" : "Tampilkan lagi");
    button.type = "button";
    button.dataset.action = r.visible ? "hide" : "show";
    button.addEventListener("click", () => (r.visible ? this._askReason(li, r) : this._setVisible(li, r.id, true, "")));
    actions.append(button);
    li.append(actions);
    return li;
  }

  _askReason(li, r) {
    if (li.querySelector("form")) return;
    const form = node("form", "hide-form");
    form.noValidate = true; // our own message, in Bahasa Indonesia, for an empty reason
    const input = node("input");
    input.name = "reason";
    input.required = true;
    input.maxLength = 500;
    input.placeholder = "Alasan (wajib, tercatat di log audit)";
    input.setAttribute("aria-label", "Alasan menyembunyikan rekaman");
    const send = node("button", "danger", "Sembunyikan");
    send.type = "submit";
    const cancel = node("button", "ghost", "Batal");
    cancel.type = "button";
    const result = node("p", "muted");
    result.setAttribute("aria-live", "polite");
    cancel.addEventListener("click", () => form.remove());
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const reason = input.value.trim();
      if (!reason) {
        result.textContent = "Tulis alasannya dulu.";
        return;
      }
      this._setVisible(li, r.id, false, reason, result);
    });
    form.append(input, send, cancel, result);
    li.append(form);
    input.focus();
  }

  async _setVisible(li, recordingId, visible, reason, result) {
    try {
      await postJSON(`/api/v1/recordings/${encodeURIComponent(recordingId)}/visibility`, visible ? { visible } : { visible, reason });
      this._loadList();
    } catch (error) {
      const target = result || li.querySelector(".rec-meta");
      target.textContent = `Gagal: ${error.message}`;
    }
  }
}

/** The low-disk alarm: a banner on every view while recording is stopped for lack of space. */
export class DiskAlarm {
  constructor(banner) {
    this.banner = banner;
  }

  start() {
    this._check();
    setInterval(() => this._check(), ALARM_POLL_MS);
  }

  async _check() {
    try {
      const status = await getJSON(STATUS_URL);
      const alarm = status.alarm;
      this.banner.hidden = !alarm;
      if (alarm) {
        const free = alarm.free_bytes !== null && alarm.free_bytes !== undefined ? ` Sisa ${(alarm.free_bytes / 1e9).toFixed(1)} GB, batas ${(alarm.min_free_bytes / 1e9).toFixed(1)} GB.` : "";
        this.banner.textContent = `⚠ ${alarm.message}${free} Siaran langsung dan kehadiran tetap berjalan.`;
      }
    } catch { /* the next poll tries again; the link state shows a hub that is away */ }
  }
}
