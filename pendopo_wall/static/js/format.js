// Labels and formatting in Bahasa Indonesia. Every string built here ends up in textContent.

export const STATUSES = ["live", "online", "missing", "reconnecting", "off-hours"];

export const STATUS_LABEL = {
  live: "Live",
  online: "Online",
  missing: "Tidak hadir",
  reconnecting: "Menyambung ulang",
  "off-hours": "Di luar jam",
};

export const KINDS = ["kecamatan", "kelurahan", "desa", "opd"];

export const KIND_LABEL = {
  opd: "OPD",
  kecamatan: "Kecamatan",
  kelurahan: "Kelurahan",
  desa: "Desa",
};

export const ATTENDANCE_LABEL = {
  hadir: "Hadir",
  terlambat: "Terlambat",
  sebagian: "Sebagian",
  "tidak hadir": "Tidak hadir",
  libur: "Libur",
};

export const REASON_LABEL = {
  closed: "koneksi ditutup",
  timeout: "detak hilang",
  replaced: "diganti koneksi baru",
  shutdown: "hub dimatikan",
  media_stalled: "gambar dan suara terhenti",
  media_resumed: "siaran kembali mengalir",
};

export const NO_KECAMATAN = "Perangkat Daerah (OPD)";

export function kindLabel(kind) {
  return KIND_LABEL[kind] || String(kind || "");
}

export function statusLabel(status) {
  return STATUS_LABEL[status] || String(status || "");
}

/** A station's own label: its status, told more exactly when the media says more (a stalled
 *  stream, a station that steps down to audio on a weak uplink). */
export function stationLabel(station) {
  if (station.state === "live" && station.media === "audio") return `${statusLabel(station.status)} · hanya suara`;
  if (station.state === "reconnecting" && station.reason === "media_stalled") return "Siaran terhenti";
  return statusLabel(station.status);
}

export function kecamatanLabel(kecamatan) {
  return kecamatan ? String(kecamatan) : NO_KECAMATAN;
}

/** "12 dtk", "5 mnt", "2 j 5 mnt", "3 hr 4 j" — short enough for a tile. */
export function duration(seconds) {
  if (!Number.isFinite(seconds)) return "";
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} dtk`;
  const minutes = Math.floor(s / 60);
  if (minutes < 60) return `${minutes} mnt`;
  const hours = Math.floor(minutes / 60);
  if (hours < 24) return minutes % 60 ? `${hours} j ${minutes % 60} mnt` : `${hours} j`;
  const days = Math.floor(hours / 24);
  return hours % 24 ? `${days} hr ${hours % 24} j` : `${days} hr`;
}

const CLOCK = new Intl.DateTimeFormat("id-ID", {
  timeZone: "Asia/Jakarta", hour: "2-digit", minute: "2-digit", hourCycle: "h23",
});
const CLOCK_SECONDS = new Intl.DateTimeFormat("id-ID", {
  timeZone: "Asia/Jakarta", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
});

/** Wall-clock time in WIB for an epoch (seconds) or an ISO string; "" when unknown. */
export function clockWIB(value, withSeconds = false) {
  if (value === null || value === undefined || value === "") return "";
  const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
  if (Number.isNaN(date.getTime())) return "";
  return (withSeconds ? CLOCK_SECONDS : CLOCK).format(date).replace(/\./g, ":") + " WIB";
}

export function percent(fraction) {
  if (!Number.isFinite(fraction)) return "";
  return `${Math.round(fraction * 100)}%`;
}
