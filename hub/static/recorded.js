// Formatting shared by the recordings' pages (/rekaman and /rekaman/{id}).

const DAYS = ["Minggu", "Senin", "Selasa", "Rabu", "Kamis", "Jumat", "Sabtu"];
const MONTHS = ["Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September", "Oktober", "November", "Desember"];

// "2026-05-05" (the API's `date`, already in WIB) → "Selasa, 5 Mei 2026", whatever the phone's zone.
export function dayText(iso) {
  const [y, m, d] = String(iso).split("-").map(Number);
  if (!y || !m || !d) return String(iso);
  const weekday = new Date(Date.UTC(y, m - 1, d)).getUTCDay();
  return `${DAYS[weekday]}, ${d} ${MONTHS[m - 1]} ${y}`;
}

// Seconds → "1:02:05" or "4:07" (a player's own way of writing a length).
export function lengthText(seconds) {
  const total = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = String(total % 60).padStart(2, "0");
  return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

const sizeFormat = new Intl.NumberFormat("id-ID", { maximumFractionDigits: 1 });
export function sizeText(bytes) {
  const n = Number(bytes) || 0;
  if (n >= 1e9) return `${sizeFormat.format(n / 1e9)} GB`;
  if (n >= 1e6) return `${sizeFormat.format(n / 1e6)} MB`;
  return `${sizeFormat.format(Math.max(1, Math.round(n / 1e3)))} KB`;
}

export function recordingHref(id) {
  return `/rekaman/${encodeURIComponent(id)}`;
}
