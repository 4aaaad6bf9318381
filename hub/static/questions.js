// The watch page's "Tanya": ask a question (with a proof of work), and the approved ones,
// ordered by votes, kept live from /ws/watch `question` events (docs/questions.md).
//
// Asking: GET …/questions/challenge → {token, difficulty}; find a decimal nonce such that
// SHA-256(token + ":" + nonce) starts with `difficulty` zero bits (WebCrypto, in batches,
// yielding to the page between them); POST the question with {proof: {token, nonce}}.
// Everything a citizen typed reaches the DOM as text (el() / textContent), never as markup.
import { clockOfEpoch, el, getJSON } from "/static/common.js";

const BATCH = 512; // digests per batch: a batch takes a few ms, then the page gets to paint
const VISIBLE = new Set(["approved", "answered"]);
const VOTED_KEY = "jaga.voted";

const ERRORS = {
  empty: "Pertanyaan masih kosong.",
  too_long: "Terlalu panjang: pertanyaan paling banyak 280 karakter, nama 40.",
  too_large: "Terlalu panjang: pertanyaan paling banyak 280 karakter, nama 40.",
  reserved_name: "Nama itu tidak boleh dipakai. Pakai nama lain atau kosongkan.",
  duplicate: "Pertanyaan yang sama sudah dikirim.",
  banned: "Anda tidak dapat mengirim pertanyaan saat ini.",
  proof: "Pemeriksaan gagal. Silakan kirim lagi.",
  queue_full: "Antrean pertanyaan sedang penuh. Coba lagi nanti.",
  already_voted: "Anda sudah mendukung pertanyaan ini.",
  not_found: "Pertanyaan tidak ditemukan.",
  unavailable: "Layanan sedang sibuk. Coba lagi sebentar lagi.",
};

class QuestionError extends Error {
  constructor(status, code, retryAfter) {
    super(code);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

/** What to tell the citizen, in Bahasa Indonesia. */
export function errorText(error) {
  if (!(error instanceof QuestionError)) return "Gagal terhubung. Periksa koneksi lalu coba lagi.";
  const wait = error.retryAfter || 0;
  if (error.code === "rate_limited") return `Terlalu sering, coba lagi dalam ${wait || 60} detik.`;
  if (error.code === "slow_mode") return `Mode lambat aktif: coba lagi dalam ${wait || 30} detik.`;
  return ERRORS[error.code] || "Gagal mengirim. Coba lagi.";
}

async function call(url, body) {
  const response = await fetch(url, body === undefined
    ? { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } }
    : {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  let answer = null;
  try { answer = await response.json(); } catch { /* not JSON */ }
  if (!response.ok) {
    const code = (answer && answer.error && answer.error.code) || "http";
    throw new QuestionError(response.status, code, Number(response.headers.get("Retry-After")) || 0);
  }
  return answer;
}

// --- proof of work -------------------------------------------------------------------------

export function leadingZeroBits(bytes) {
  let bits = 0;
  for (const byte of bytes) {
    if (byte === 0) { bits += 8; continue; }
    return bits + Math.clz32(byte) - 24;
  }
  return bits;
}

/** The first nonce ("0", "1", …) whose digest has `difficulty` leading zero bits. */
export async function solve(token, difficulty, { onProgress } = {}) {
  const encoder = new TextEncoder();
  const prefix = `${token}:`;
  const digest = crypto.subtle
    ? (text) => crypto.subtle.digest("SHA-256", encoder.encode(text))
    : async (text) => sha256(encoder.encode(text)); // not a secure context (plain http): slower, still right
  for (let start = 0; ; start += BATCH) {
    const digests = [];
    for (let n = start; n < start + BATCH; n++) digests.push(digest(prefix + n));
    const results = await Promise.all(digests);
    for (let i = 0; i < results.length; i++) {
      if (leadingZeroBits(new Uint8Array(results[i])) >= difficulty) return String(start + i);
    }
    if (onProgress) onProgress(start + BATCH);
    await new Promise((resolve) => setTimeout(resolve, 0)); // let the page paint and take taps
  }
}

// SHA-256 in plain JavaScript, only where crypto.subtle is missing (an http:// page that is
// not localhost). FIPS 180-4, on a Uint8Array; returns the digest's ArrayBuffer.
const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2]);

export function sha256(data) {
  const length = data.length;
  const blocks = Math.ceil((length + 9) / 64);
  const padded = new Uint8Array(blocks * 64);
  padded.set(data);
  padded[length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, Math.floor(length / 0x20000000));
  view.setUint32(padded.length - 4, (length * 8) >>> 0);
  const h = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);
  const w = new Uint32Array(64);
  const rotr = (x, n) => (x >>> n) | (x << (32 - n));
  for (let block = 0; block < blocks; block++) {
    for (let i = 0; i < 16; i++) w[i] = view.getUint32(block * 64 + i * 4);
    for (let i = 16; i < 64; i++) {
      const s0 = rotr(w[i - 15], 7) ^ rotr(w[i - 15], 18) ^ (w[i - 15] >>> 3);
      const s1 = rotr(w[i - 2], 17) ^ rotr(w[i - 2], 19) ^ (w[i - 2] >>> 10);
      w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    let [a, b, c, d, e, f, g, k] = h;
    for (let i = 0; i < 64; i++) {
      const t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
      const t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
      k = g; g = f; f = e; e = (d + t1) >>> 0; d = c; c = b; b = a; a = (t1 + t2) >>> 0;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e; h[5] += f; h[6] += g; h[7] += k;
  }
  const out = new DataView(new ArrayBuffer(32));
  h.forEach((value, i) => out.setUint32(i * 4, value));
  return out.buffer;
}

// --- ordering ---------------------------------------------------------------------------------

// As the hub's for_display: approved by votes (most first), then the earlier asked; then the
// answered ones, the most recently answered first (`answeredRank`: the hub's order on load,
// then each one answered while the page is open goes on top).
export function displayOrder(a, b) {
  if (a.state !== b.state) return a.state === "approved" ? -1 : 1;
  if (a.state === "approved") return b.votes - a.votes || a.asked_at - b.asked_at;
  return (b.answeredRank || 0) - (a.answeredRank || 0);
}

// --- the section ------------------------------------------------------------------------------

export class QuestionsBox {
  constructor(stationId) {
    const $ = (id) => document.getElementById(id);
    this.base = `/api/v1/stations/${encodeURIComponent(stationId)}/questions`;
    this.section = $("questions");
    this.form = $("ask-form");
    this.text = $("ask-text");
    this.name = $("ask-name");
    this.count = $("ask-count");
    this.send = $("ask-send");
    this.status = $("ask-status");
    this.list = $("questions-list");
    this.empty = $("questions-empty");
    this.questions = new Map(); // id → public view (+ answeredRank)
    this.nodes = new Map(); // id → <li>
    this.rank = 0;
    this.loading = null;
    this.pending = []; // events that arrived while the list was loading
    this.voted = new Set(JSON.parse(localStorage.getItem(VOTED_KEY) || "[]"));
    this.form.addEventListener("submit", (event) => { event.preventDefault(); this.ask(); });
    this.text.addEventListener("input", () => { this.count.textContent = `${this.text.value.length}/280`; });
  }

  /** Load the shown questions; events that come meanwhile are applied after. False: no questions here. */
  async load() {
    this.loading = getJSON(this.base);
    let answer;
    try {
      answer = await this.loading;
    } catch (error) {
      this.loading = null;
      if (error.status === 404) { this.section.hidden = true; return false; }
      throw error;
    }
    this.loading = null;
    this.questions.clear();
    const answered = answer.questions.filter((q) => q.state === "answered");
    answered.forEach((q, i) => { q.answeredRank = -i; }); // the hub sends the newest answered first
    for (const q of answer.questions) if (VISIBLE.has(q.state)) this.questions.set(q.id, q);
    for (const q of this.pending.splice(0)) this._fold(q);
    this.section.hidden = false;
    this.render();
    return true;
  }

  /** A `question` event from /ws/watch: `q` is a public view; apply it by id. */
  apply(q) {
    if (!q || typeof q.id !== "string") return;
    if (this.loading) { this.pending.push(q); return; }
    this._fold(q);
    this.render();
  }

  _fold(q) {
    const known = this.questions.get(q.id);
    if (!VISIBLE.has(q.state)) { this.questions.delete(q.id); return; }
    const answeredRank = q.state === "answered"
      ? (known && known.state === "answered" ? known.answeredRank : ++this.rank) : 0;
    this.questions.set(q.id, { ...q, answeredRank });
  }

  render() {
    const shown = [...this.questions.values()].sort(displayOrder);
    for (const id of [...this.nodes.keys()]) if (!this.questions.has(id)) this.nodes.delete(id);
    this.list.replaceChildren(...shown.map((q) => this._node(q)));
    this.empty.hidden = shown.length > 0;
  }

  _node(q) {
    let node = this.nodes.get(q.id);
    if (!node) {
      const vote = el("button", { type: "button", class: "vote ghost" });
      vote.addEventListener("click", () => this.vote(q.id));
      node = el("li", { "data-id": q.id }, vote,
        el("div", {}, el("p", { class: "text" }), el("p", { class: "meta" })));
      this.nodes.set(q.id, node);
    }
    const answered = q.state === "answered";
    node.className = answered ? "answered" : "";
    const vote = node.querySelector(".vote");
    const voted = this.voted.has(q.id);
    vote.textContent = `▲ ${q.votes}`;
    vote.setAttribute("aria-label", `Dukung pertanyaan ini (${q.votes} dukungan)`);
    vote.setAttribute("aria-pressed", String(voted));
    vote.disabled = voted || answered;
    node.querySelector(".text").textContent = q.text;
    const meta = node.querySelector(".meta");
    meta.replaceChildren(`${q.name || "Warga"} · ${clockOfEpoch(q.asked_at)}`,
      answered ? el("span", { class: "badge answered" }, "Terjawab") : "");
    return node;
  }

  async vote(id) {
    const q = this.questions.get(id);
    if (!q || this.voted.has(id)) return;
    this._markVoted(id);
    try {
      const { votes } = await call(`${this.base}/${encodeURIComponent(id)}/vote`, {});
      const current = this.questions.get(id);
      if (current && votes > current.votes) current.votes = votes; // the event may be ahead already
    } catch (error) {
      if (!(error instanceof QuestionError && error.code === "already_voted")) {
        this.voted.delete(id);
        this._say(errorText(error), "bad");
      }
    }
    this.render();
  }

  _markVoted(id) {
    this.voted.add(id);
    localStorage.setItem(VOTED_KEY, JSON.stringify([...this.voted].slice(-500)));
    this.render();
  }

  async ask() {
    const text = this.text.value.trim();
    if (!text) { this._say(ERRORS.empty, "bad"); return; }
    this.send.disabled = true;
    this._say("Menyiapkan…", "");
    try {
      const { token, difficulty } = await call(`${this.base}/challenge`);
      const nonce = await solve(token, difficulty);
      this._say("Mengirim…", "");
      await call(this.base, { text, name: this.name.value.trim(), proof: { token, nonce } });
      this.text.value = "";
      this.count.textContent = "0/280";
      this._say("Pertanyaan terkirim — menunggu moderasi.", "ok");
    } catch (error) {
      this._say(errorText(error), "bad");
    } finally {
      this.send.disabled = false;
    }
  }

  _say(text, kind) {
    this.status.textContent = text;
    this.status.className = `ask-status ${kind}`.trim();
  }
}
