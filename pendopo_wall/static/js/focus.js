// Focus: one station large, with sound, its details, today's attendance and the actions
// (push-to-talk and announce). While focus is open the grid behind it is closed.

import { getJSON, serverNow, stationUrl, thumbnailUrl } from "./api.js";
import {
  ATTENDANCE_LABEL, REASON_LABEL, clockWIB, duration, kindLabel, percent, stationLabel, statusLabel,
} from "./format.js";
import { Player } from "./player.js";
import { RecordingsPanel } from "./recordings.js";
import { TalkBack } from "./talk.js";

export class Focus {
  constructor({ store, announce, onOpenChange }) {
    this.store = store;
    this.announce = announce;
    this.onOpenChange = onOpenChange;
    this.dialog = document.getElementById("focus");
    this.video = document.getElementById("focus-video");
    this.thumb = document.getElementById("focus-thumb");
    this.mediaState = document.getElementById("focus-media-state");
    this.badge = document.getElementById("focus-badge");
    this.name = document.getElementById("focus-name");
    this.sub = document.getElementById("focus-sub");
    this.details = document.getElementById("focus-details");
    this.attendance = document.getElementById("focus-attendance");
    this.jejak = document.getElementById("focus-jejak");
    this.talkButton = document.getElementById("talk");
    this.talkState = document.getElementById("talk-state");
    this.stationId = null;
    this.player = null;
    this.recordings = new RecordingsPanel();
    this.talk = new TalkBack({
      onState: (state, text) => {
        this.talkButton.dataset.state = state;
        this.talkState.textContent = text;
      },
    });
    this.thumb.addEventListener("load", () => { this.thumb.hidden = !!this.video.srcObject; });
    this.thumb.addEventListener("error", () => { this.thumb.hidden = true; });
    this.video.addEventListener("playing", () => { this.thumb.hidden = true; });
    this.video.addEventListener("emptied", () => { this.thumb.hidden = !this.thumb.complete || !this.thumb.naturalWidth; });
    document.getElementById("focus-close").addEventListener("click", () => this.close());
    document.getElementById("focus-announce").addEventListener("click", () => this.announce.open(this.stationId));
    this.dialog.addEventListener("close", () => this._closed());
    this._wireTalk();
    store.subscribe((change) => {
      if (this.stationId && (change.reset || change.id === this.stationId)) this._render();
    });
    setInterval(() => this.stationId && this._renderDetails(), 5000);
  }

  get isOpen() {
    return this.dialog.open;
  }

  open(id) {
    const station = this.store.get(id);
    if (!station) return;
    if (this.stationId && this.stationId !== id) this._teardown();
    this.stationId = id;
    this.talkButton.dataset.state = "idle";
    this.talkState.textContent = "";
    this.video.muted = false;
    this.player = new Player({
      stationId: id,
      video: this.video,
      stateEl: this.mediaState,
      isLive: () => this.store.get(id)?.state === "live",
    });
    this.thumb.hidden = true;
    if (station.thumb_at) this.thumb.src = thumbnailUrl(id, station.thumb_at);
    else this.thumb.removeAttribute("src");
    this._render();
    this.attendance.replaceChildren();
    this._loadAttendance(id);
    this.jejak.replaceChildren();
    this._loadJejak(id);
    this.recordings.open(id);
    if (!this.dialog.open) this.dialog.showModal();
    this.onOpenChange(true);
    this.player.start();
  }

  close() {
    if (this.dialog.open) this.dialog.close();
  }

  _closed() {
    this._teardown();
    this.stationId = null;
    this.onOpenChange(false);
  }

  _teardown() {
    this.talk.release();
    this.recordings.close();
    if (this.player) {
      this.player.stop();
      this.player = null;
    }
  }

  _render() {
    const station = this.store.get(this.stationId);
    if (!station) return;
    this.badge.textContent = stationLabel(station);
    this.badge.dataset.status = station.status;
    this.name.textContent = station.name;
    this.sub.textContent = [kindLabel(station.kind), station.kecamatan, station.id].filter(Boolean).join(" · ");
    this._renderDetails();
    if (this.player && station.state === "live") this.player.kick();
  }

  _renderDetails() {
    const station = this.store.get(this.stationId);
    if (!station) return;
    const now = serverNow();
    const rows = [
      ["Status", `${stationLabel(station)}${station.since ? ` sejak ${clockWIB(station.since)} (${duration(now - station.since)})` : ""}`],
      ["Alasan terakhir", station.reason ? REASON_LABEL[station.reason] || station.reason : ""],
      ["Kegiatan", station.activity ? `${station.activity.title} (sejak ${clockWIB(station.activity.since)})` : ""],
      ["Penonton", station.viewers ? String(station.viewers) : ""],
      ["Gambar terakhir", station.thumb_at ? `${duration(now - station.thumb_at)} lalu` : "belum ada"],
      ["Publik", station.public ? "Ya" : "Tidak (hanya operator)"],
    ];
    fillList(this.details, rows);
  }

  async _loadAttendance(id) {
    try {
      const detail = await getJSON(stationUrl(id));
      if (this.stationId !== id) return;
      const today = detail.today;
      if (!today) return;
      fillList(this.attendance, [
        ["Status hari ini", ATTENDANCE_LABEL[today.status] || today.status],
        ["Pertama online", clockWIB(today.first_online) || "—"],
        ["Pertama live", clockWIB(today.first_live) || "—"],
        ["Waktu online", duration(today.online_s)],
        ["Waktu live", duration(today.live_s)],
        ["Cakupan", percent(today.coverage)],
        ["Terlambat", today.late_s ? duration(today.late_s) : "—"],
        ["Gangguan", String(today.interruptions)],
      ]);
    } catch (error) {
      fillList(this.attendance, [["Kehadiran", `Gagal dimuat: ${error.message}`]]);
    }
  }

  // Today's jejak (the thumbnail kept every few minutes): a row of small pictures, oldest first.
  async _loadJejak(id) {
    let items;
    try {
      items = (await getJSON(stationUrl(id, "/jejak"))).jejak || [];
    } catch (error) {
      items = null;
    }
    if (this.stationId !== id) return;
    if (!items || !items.length) {
      const empty = document.createElement("li");
      empty.className = "muted";
      empty.textContent = items ? "Belum ada gambar tersimpan" : "Jejak gagal dimuat";
      this.jejak.replaceChildren(empty);
      return;
    }
    this.jejak.replaceChildren(...items.map((item) => {
      const li = document.createElement("li");
      const link = document.createElement("a");
      link.href = item.url;
      link.target = "_blank";
      link.rel = "noopener";
      const img = document.createElement("img");
      img.src = item.url;
      img.alt = `Gambar pukul ${item.time}`;
      img.loading = "lazy";
      const time = document.createElement("span");
      time.textContent = item.time;
      link.append(img);
      li.append(link, time);
      return li;
    }));
  }

  _wireTalk() {
    const press = (event) => {
      event.preventDefault();
      if (this.stationId) this.talk.press(this.stationId);
    };
    const release = () => this.talk.release();
    this.talkButton.addEventListener("pointerdown", press);
    this.talkButton.addEventListener("pointerup", release);
    this.talkButton.addEventListener("pointerleave", release);
    this.talkButton.addEventListener("pointercancel", release);
    // Hold the space bar while focus is open (and no text field has the cursor).
    this.dialog.addEventListener("keydown", (event) => {
      if (event.code !== "Space" || event.repeat || isTyping(event.target)) return;
      press(event);
    });
    this.dialog.addEventListener("keyup", (event) => {
      if (event.code !== "Space" || isTyping(event.target)) return;
      event.preventDefault();
      release();
    });
    window.addEventListener("blur", release); // a key-up we never see must not leave the mic on
  }
}

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function fillList(dl, rows) {
  const nodes = [];
  for (const [term, value] of rows) {
    if (!value) continue;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    nodes.push(dt, dd);
  }
  dl.replaceChildren(...nodes);
}
