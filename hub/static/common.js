// Shared helpers for the public pages. Everything a station sends (names, titles) reaches the
// DOM through el()/text nodes, i.e. textContent: never innerHTML, anywhere in these pages.

export const STATUS_LABEL = {
  live: "Siaran langsung",
  online: "Aktif",
  missing: "Tidak aktif",
  reconnecting: "Menyambung ulang",
  "off-hours": "Di luar jam kantor",
};

/** A station's label: its status, told more exactly when the media says more (a stalled
 *  stream; a station stepped down to audio on a weak uplink). */
export function stationLabel(station) {
  if (station.state === "live" && station.media === "audio") return "Siaran langsung · hanya suara";
  if (station.state === "reconnecting" && station.reason === "media_stalled") return "Siaran terhenti";
  return STATUS_LABEL[station.status] || station.status;
}

export const KIND_LABEL = { opd: "OPD", kecamatan: "Kecamatan", kelurahan: "Kelurahan", desa: "Desa" };

const SVG_NS = "http://www.w3.org/2000/svg";

// el("a", {href: "/x", class: "card"}, "text", childNode, ...): a text argument becomes a text
// node, so markup inside it is shown, not parsed.
export function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  return fill(node, attrs, children);
}

export function svg(tag, attrs, ...children) {
  return fill(document.createElementNS(SVG_NS, tag), attrs, children);
}

function fill(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function badge(status, label) {
  return el("span", { class: `badge ${String(status).replace(/\s+/g, "-")}` }, label || STATUS_LABEL[status] || status);
}

export function setBadge(node, status, label) {
  node.className = `badge ${String(status).replace(/\s+/g, "-")}`;
  node.textContent = label || STATUS_LABEL[status] || status;
}

const numberId = new Intl.NumberFormat("id-ID", { maximumFractionDigits: 1 });
export const formatNumber = (n) => numberId.format(n);
export const formatPercent = (fraction) => `${numberId.format(Math.round(fraction * 1000) / 10)}%`;

// Seconds → "3 j 05 m" (exact figures stay in the downloads; the page rounds to minutes).
export function formatDuration(seconds) {
  if (!seconds) return "0 m";
  const minutes = Math.round(seconds / 60);
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  return h ? `${h} j ${String(m).padStart(2, "0")} m` : `${m} m`;
}

// The API's instants are ISO 8601 already in WIB ("2026-05-04T07:58:12+07:00"): show the
// clock part as written, so the page never depends on the phone's own timezone.
export function clockOf(iso) {
  return typeof iso === "string" && iso.length >= 16 ? iso.slice(11, 16).replace(":", ".") : "–";
}

// Epoch seconds (the wire's `since`, `at`) → "HH.MM" in WIB.
const wibClock = new Intl.DateTimeFormat("id-ID", { timeZone: "Asia/Jakarta", hour: "2-digit", minute: "2-digit", hour12: false });
export function clockOfEpoch(seconds) {
  return typeof seconds === "number" ? wibClock.format(new Date(seconds * 1000)).replace(":", ".") : "–";
}

export function stationHref(id) {
  return `/watch/${encodeURIComponent(id)}`;
}

export function thumbnailUrl(id, at) {
  return `/api/v1/stations/${encodeURIComponent(id)}/thumbnail.jpg?t=${encodeURIComponent(at)}`;
}

export async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) {
    const error = new Error(`${url}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

// A /ws/watch follower: JSON subprotocol, resumes with ?since=<last seq> after a drop, backs
// off 1 s → 30 s, and reconnects at once when the phone comes back online or the tab returns.
export class WatchFeed {
  constructor(onMessage, onState) {
    this.onMessage = onMessage;
    this.onState = onState || (() => {});
    this.seq = null;
    this.delay = 1000;
    this.timer = null;
    this.socket = null;
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  open() {
    clearTimeout(this.timer);
    this.timer = null;
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const query = this.seq === null ? "" : `?since=${this.seq}`;
    const socket = new WebSocket(`${scheme}//${location.host}/ws/watch${query}`, "jaga.v1.json");
    this.socket = socket;
    socket.onopen = () => { this.delay = 1000; this.onState("up"); };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch { return; }
      // Resume point: a snapshot resets it; deltas only move it forward (with several hub
      // nodes, frames of different stations may arrive slightly out of seq order).
      if (typeof message.seq === "number") {
        this.seq = message.t === "snapshot" || this.seq === null ? message.seq : Math.max(this.seq, message.seq);
      }
      this.onMessage(message);
    };
    socket.onclose = () => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onState("down");
      this.timer = setTimeout(() => this.open(), this.delay * (0.75 + Math.random() / 2));
      this.delay = Math.min(this.delay * 2, 30000);
    };
  }

  reconnectNow() {
    if (this.socket === null && this.timer !== null) {
      this.delay = 1000;
      this.open();
    }
  }
}
