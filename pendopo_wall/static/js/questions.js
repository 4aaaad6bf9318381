// Pertanyaan: citizens' questions, moderated here (docs/questions.md).
//
// The queue is loaded from GET /api/v1/questions (again at every (re)connect of the watch
// socket, so nothing missed while it was down stays missing) and kept current by the
// `question` events operators get on /ws/watch (a moderator view, applied by id). Order:
// pending first (newest first, held ones marked with the reason), then the shown ones by
// votes, then answered, then rejected. Actions POST /api/v1/questions/{id} with the CSRF
// token (api.js); the answer and the event both update the row. Text goes in as textContent.

import { getJSON, postJSON, stationUrl } from "./api.js";
import { clockWIB } from "./format.js";

const STATE_LABEL = { pending: "Menunggu", approved: "Tampil", answered: "Terjawab", rejected: "Ditolak" };
const STATE_ORDER = { pending: 0, approved: 1, answered: 2, rejected: 3 };
const ACTIONS = {
  pending: ["approve", "reject", "timeout", "ban"],
  approved: ["answered", "reject", "timeout", "ban"],
  answered: ["reopen"],
  rejected: [],
};
const ERROR_TEXT = {
  bad_action: "Tindakan ini tidak berlaku untuk status pertanyaan sekarang.",
  csrf: "Sesi kedaluwarsa, muat ulang halaman.",
  not_authenticated: "Sesi berakhir, masuk lagi.",
  not_found: "Pertanyaan tidak ditemukan.",
};

function order(a, b) {
  if (a.state !== b.state) return STATE_ORDER[a.state] - STATE_ORDER[b.state];
  if (a.state === "pending") return b.asked_at - a.asked_at;
  if (a.state === "approved") return b.votes - a.votes || a.asked_at - b.asked_at;
  return b.decided_at - a.decided_at;
}

export class QuestionsView {
  constructor({ store, onPendingChange }) {
    const $ = (id) => document.getElementById(id);
    this.store = store;
    this.list = $("questions-queue");
    this.empty = $("questions-empty");
    this.badge = $("questions-badge");
    this.station = $("questions-station");
    this.show = $("questions-show");
    this.minutes = $("questions-minutes");
    this.result = $("questions-result");
    this.slowSeconds = $("slow-seconds");
    this.template = $("question-template");
    this.onPendingChange = onPendingChange || (() => {});
    this.questions = new Map(); // id → moderator view
    this.nodes = new Map(); // id → <li>
    this.frame = 0;
    this.loadSeq = 0;
    this.station.addEventListener("change", () => this.load());
    this.show.addEventListener("change", () => this.load());
    $("slow-mode").addEventListener("submit", (event) => { event.preventDefault(); this.setSlowMode(); });
    store.subscribe((change) => {
      if (!change.reset) return;
      this.fillStations();
      this.render(); // station names
    });
  }

  states() {
    return this.show.value.split(",");
  }

  /** The queue from the API (pending always, for the tab's count); events then keep it current. */
  async load() {
    const seq = ++this.loadSeq;
    const states = [...new Set(["pending", ...this.states()])];
    const params = new URLSearchParams({ state: states.join(",") });
    if (this.station.value) params.set("station", this.station.value);
    try {
      const { questions } = await getJSON(`/api/v1/questions?${params}`);
      if (seq !== this.loadSeq) return; // a newer load (filter change) is on its way
      this.questions = new Map(questions.map((q) => [q.id, q]));
      this.render();
    } catch (error) {
      this.say(`Gagal memuat pertanyaan: ${ERROR_TEXT[error.code] || error.message}`);
    }
  }

  /** A `question` event: the moderator view of one question that changed. */
  apply(q) {
    if (!q || typeof q.id !== "string") return;
    this.questions.set(q.id, q);
    if (!this.frame) this.frame = requestAnimationFrame(() => this.render());
  }

  shown(q) {
    return this.states().includes(q.state) && (!this.station.value || q.station === this.station.value);
  }

  render() {
    this.frame = 0;
    const shown = [...this.questions.values()].filter((q) => this.shown(q)).sort(order);
    for (const id of [...this.nodes.keys()]) if (!this.questions.has(id)) this.nodes.delete(id);
    this.list.replaceChildren(...shown.map((q) => this.node(q)));
    this.empty.hidden = shown.length > 0;
    const pending = [...this.questions.values()].filter((q) => q.state === "pending").length;
    this.badge.hidden = pending === 0;
    this.badge.textContent = String(pending);
    this.onPendingChange(pending);
  }

  node(q) {
    let node = this.nodes.get(q.id);
    if (!node) {
      node = this.template.content.firstElementChild.cloneNode(true);
      node.dataset.id = q.id;
      for (const button of node.querySelectorAll("button[data-action]")) {
        button.addEventListener("click", () => this.act(node.dataset.id, button));
      }
      this.nodes.set(q.id, node);
    }
    node.dataset.state = q.state;
    node.classList.toggle("held", Boolean(q.held) && q.state === "pending");
    node.querySelector(".q-state").textContent = STATE_LABEL[q.state] || q.state;
    const held = node.querySelector(".q-held");
    held.hidden = !q.held;
    held.textContent = q.held ? `Ditahan: ${q.held}` : "";
    const station = this.store.get(q.station);
    node.querySelector(".q-station").textContent = station ? `${station.name} (${q.station})` : q.station;
    node.querySelector(".q-text").textContent = q.text;
    const meta = [q.name || "Warga", `ditanya ${clockWIB(q.asked_at)}`];
    if (q.activity) meta.push(`kegiatan: ${q.activity}`);
    if (q.decided_by) meta.push(`${STATE_LABEL[q.state].toLowerCase()} oleh ${q.decided_by} ${clockWIB(q.decided_at)}`);
    node.querySelector(".q-meta").textContent = meta.join(" · ");
    node.querySelector(".q-votes").textContent = `▲ ${q.votes}`;
    const allowed = ACTIONS[q.state] || [];
    for (const button of node.querySelectorAll("button[data-action]")) {
      button.hidden = !allowed.includes(button.dataset.action);
    }
    return node;
  }

  async act(id, button) {
    const action = button.dataset.action;
    // Blokir asks twice (no confirm(): a wall must not block on a modal the operator may miss).
    if (action === "ban" && !button.classList.contains("armed")) {
      button.classList.add("armed");
      button.textContent = "Yakin blokir?";
      setTimeout(() => { button.classList.remove("armed"); button.textContent = "Blokir"; }, 4000);
      return;
    }
    const body = { action };
    if (action === "timeout") body.minutes = Number(this.minutes.value);
    button.disabled = true;
    try {
      const { question } = await postJSON(`/api/v1/questions/${encodeURIComponent(id)}`, body);
      this.apply(question);
      this.say("");
    } catch (error) {
      this.say(`Gagal: ${ERROR_TEXT[error.code] || error.message}`);
    } finally {
      button.disabled = false;
      if (action === "ban") { button.classList.remove("armed"); button.textContent = "Blokir"; }
    }
  }

  async setSlowMode() {
    const station = this.station.value;
    if (!station) {
      this.say("Pilih satu stasiun dulu untuk mode lambat.");
      return;
    }
    const seconds = Number(this.slowSeconds.value);
    try {
      await postJSON(stationUrl(station, "/questions/slow-mode"), { seconds });
      this.say(seconds ? `Mode lambat: satu pertanyaan per ${seconds} detik per perangkat.` : "Mode lambat dimatikan.");
    } catch (error) {
      this.say(`Gagal: ${ERROR_TEXT[error.code] || error.message}`);
    }
  }

  fillStations() {
    const current = this.station.value;
    const options = this.store.all()
      .sort((a, b) => a.name.localeCompare(b.name, "id"))
      .map((s) => {
        const option = document.createElement("option");
        option.value = s.id;
        option.textContent = `${s.name} (${s.id})`;
        return option;
      });
    const all = document.createElement("option");
    all.value = "";
    all.textContent = "Semua";
    this.station.replaceChildren(all, ...options);
    this.station.value = current;
  }

  say(text) {
    this.result.textContent = text;
  }
}
