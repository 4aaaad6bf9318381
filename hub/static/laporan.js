// /laporan: attendance for one day (?date=, default today) or one month (?month=), per station
// and rolled up by kecamatan, kind and OPD, with sortable tables, a coverage chart, one
// station's calendar (?station=) and the API's CSV/JSON links. The day's roll-ups are summed
// here from the daily rows with the same rules as the API's monthly roll-up.
import { KIND_LABEL, badge, clockOf, el, formatDuration, formatPercent, getJSON, stationHref } from "/static/common.js";
import { HEAT_COLORS, calendarHeatmap, coverageBars } from "/static/charts.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const STATUSES = ["hadir", "terlambat", "sebagian", "tidak hadir", "libur"];
const MONTHS = ["Januari", "Februari", "Maret", "April", "Mei", "Juni", "Juli", "Agustus", "September", "Oktober", "November", "Desember"];

function dateText(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  return `${d} ${MONTHS[m - 1]} ${y}`;
}
const monthText = (iso) => { const [y, m] = iso.split("-").map(Number); return `${MONTHS[m - 1]} ${y}`; };
const query = (values) => new URLSearchParams(Object.entries(values).filter(([, v]) => v)).toString();

// --- sortable tables ----------------------------------------------------------------------
// column: {key, label, num, show(row) → Node|string, sort(row) → number|string}

function sortableTable(columns, rows, rowId) {
  const tbody = el("tbody");
  const headers = columns.map((column) => el("th", { scope: "col", class: column.num ? "num" : null, "data-key": column.key },
    el("button", { type: "button" }, column.label)));
  let sorted = { key: null, dir: 1 };
  const paint = (list) => tbody.replaceChildren(...list.map((row) => el("tr", { "data-id": rowId ? rowId(row) : null },
    ...columns.map((c) => el("td", { class: c.num ? "num" : null, "data-key": c.key }, c.show ? c.show(row) : row[c.key] ?? "–")))));
  headers.forEach((th, i) => th.firstChild.addEventListener("click", () => {
    const column = columns[i];
    sorted = { key: column.key, dir: sorted.key === column.key ? -sorted.dir : (column.num ? -1 : 1) };
    const value = column.sort || ((row) => row[column.key]);
    const list = rows.slice().sort((a, b) => {
      const x = value(a), y = value(b);
      if (x === y) return 0;
      if (x === null || x === undefined) return 1;
      if (y === null || y === undefined) return -1;
      return (typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), "id")) * sorted.dir;
    });
    headers.forEach((h) => h.removeAttribute("aria-sort"));
    th.setAttribute("aria-sort", sorted.dir > 0 ? "ascending" : "descending");
    paint(list);
  }));
  paint(rows);
  return el("table", {}, el("thead", {}, el("tr", {}, ...headers)), tbody);
}

const dayStatus = (row) => (row.status === "tidak hadir" && !row.window_s ? "belum mulai" : row.status);
const number = (key, label, show) => ({ key, label, num: true, show: show || ((r) => String(r[key] ?? 0)) });
const seconds = (key, label) => number(key, label, (r) => formatDuration(r[key]));
const coverage = number("coverage", "Cakupan", (r) => formatPercent(r.coverage || 0));

const DAILY_COLUMNS = [
  { key: "name", label: "Kantor", show: (r) => el("a", { href: stationHref(r.id) }, r.name) },
  { key: "kecamatan", label: "Kecamatan", show: (r) => r.kecamatan || "–" },
  { key: "kind", label: "Jenis", show: (r) => KIND_LABEL[r.kind] || r.kind },
  { key: "status", label: "Status", show: (r) => badge(r.status, dayStatus(r)), sort: (r) => STATUSES.indexOf(r.status) },
  { key: "first_online", label: "Pertama terhubung", show: (r) => clockOf(r.first_online) },
  { key: "first_live", label: "Pertama siaran", show: (r) => clockOf(r.first_live) },
  seconds("online_s", "Terhubung"), seconds("live_s", "Siaran"), coverage,
  seconds("late_s", "Terlambat"), number("interruptions", "Gangguan"),
];

function rollupColumns(group, withDays) {
  const head = {
    station: [{ key: "name", label: "Kantor", show: (r) => el("a", { href: stationHref(r.station) }, r.name) }],
    opd: [{ key: "name", label: "OPD", show: (r) => el("a", { href: stationHref(r.opd) }, r.name) }],
    kecamatan: [{ key: "kecamatan", label: "Kecamatan", show: (r) => r.kecamatan || "(OPD, tanpa kecamatan)" }],
    kind: [{ key: "kind", label: "Jenis", show: (r) => KIND_LABEL[r.kind] || r.kind }],
  }[group];
  return [...head, number("stations", "Kantor"), ...(withDays ? [number("days", "Hari")] : []),
    number("hadir", "Hadir"), number("terlambat", "Terlambat"), number("sebagian", "Sebagian"),
    number("tidak_hadir", "Tidak hadir"), seconds("online_s", "Terhubung"), seconds("live_s", "Siaran"), coverage,
    seconds("late_s", "Total terlambat"), number("interruptions", "Gangguan")];
}

// The day's roll-up, the same rules as hub/core/attendance.monthly().
function rollUp(rows, group) {
  const out = new Map();
  for (const row of rows) {
    if (group === "opd" && row.kind !== "opd") continue;
    const key = group === "kecamatan" ? row.kecamatan : group === "kind" ? row.kind : row.id;
    if (!out.has(key)) {
      out.set(key, { [group]: key, name: row.name, stations: 0, days: 0, hadir: 0, terlambat: 0, sebagian: 0, tidak_hadir: 0,
        online_s: 0, live_s: 0, late_s: 0, interruptions: 0, coverage: 0, window_s: 0 });
    }
    const item = out.get(key);
    item.stations += 1;
    if (row.status === "libur" || !(row.window_s > 0)) continue;
    item.days += 1;
    item[row.status.replace(" ", "_")] += 1;
    for (const name of ["online_s", "live_s", "late_s", "interruptions", "window_s"]) item[name] += row[name];
  }
  const result = [...out.values()].sort((a, b) => String(a[group]).localeCompare(String(b[group]), "id"));
  for (const item of result) item.coverage = item.window_s > 0 ? Math.min(1, item.live_s / item.window_s) : 0;
  return result;
}

function links(label, path) {
  return [el("a", { href: `${path}&format=csv`, download: "" }, `${label} (CSV)`), " ", el("a", { href: path }, `${label} (JSON)`)];
}

function showTable(id, columns, rows, rowId) {
  $(id).replaceChildren(rows.length ? sortableTable(columns, rows, rowId) : el("p", { class: "muted" }, "Tidak ada data."));
}

function showChart(kecamatanRows, title) {
  const rows = kecamatanRows.filter((r) => r.kecamatan).map((r) => ({ label: r.kecamatan, value: r.coverage }));
  $("chart-section").hidden = rows.length === 0;
  $("chart").replaceChildren(coverageBars(rows, title));
}

function summarize(rows) {
  const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
  for (const row of rows) counts[row.status] += 1;
  return `${rows.length} kantor: ${STATUSES.map((s) => `${s} ${counts[s]}`).join(", ")}.`;
}

// --- one day ------------------------------------------------------------------------------

async function showDay(date) {
  const body = await getJSON(`/api/v1/attendance/daily?${query({ date })}`);
  const rows = body.rows;
  $("pick-date").value = body.date;
  $("title").textContent = `Kehadiran ${dateText(body.date)}`;
  $("summary").textContent = summarize(rows);
  $("downloads").replaceChildren(...links("Unduh laporan harian", `/api/v1/attendance/daily?date=${body.date}`));
  showTable("table-station", DAILY_COLUMNS, rows, (r) => r.id);
  const byKecamatan = rollUp(rows.filter((r) => r.kecamatan), "kecamatan");
  showTable("table-kecamatan", rollupColumns("kecamatan", false), byKecamatan, (r) => r.kecamatan);
  showTable("table-kind", rollupColumns("kind", false), rollUp(rows, "kind"), (r) => r.kind);
  showTable("table-opd", rollupColumns("opd", false), rollUp(rows, "opd"), (r) => r.opd);
  showChart(byKecamatan, `Cakupan siaran per kecamatan, ${dateText(body.date)}`);
}

// --- one month ----------------------------------------------------------------------------

async function showMonth(month, stationId) {
  const groups = ["station", "kecamatan", "kind", "opd"];
  const bodies = await Promise.all(groups.map((group) => getJSON(`/api/v1/attendance/monthly?${query({ month, group })}`)));
  const [stations, kecamatan, kinds, opd] = bodies.map((b) => b.rows);
  month = bodies[0].month;
  $("pick-month").value = month;
  $("title").textContent = `Kehadiran ${monthText(month)}`;
  const days = stations.reduce((sum, r) => sum + r.days, 0);
  const hadir = stations.reduce((sum, r) => sum + r.hadir, 0);
  $("summary").textContent = `${stations.length} kantor, ${days} hari-kantor dihitung, ${hadir} hadir penuh.`;
  $("downloads").replaceChildren(...groups.flatMap((group) => [
    ...links(`Bulanan per ${{ station: "kantor", kecamatan: "kecamatan", kind: "jenis", opd: "OPD" }[group]}`,
      `/api/v1/attendance/monthly?month=${month}&group=${group}`), el("br")]));
  showTable("table-station", rollupColumns("station", true), stations, (r) => r.station);
  showTable("table-kecamatan", rollupColumns("kecamatan", true), kecamatan, (r) => r.kecamatan);
  showTable("table-kind", rollupColumns("kind", true), kinds, (r) => r.kind);
  showTable("table-opd", rollupColumns("opd", true), opd, (r) => r.opd);
  showChart(kecamatan, `Cakupan siaran per kecamatan, ${monthText(month)}`);
  await showHeatmap(month, stations, stationId);
}

async function mapLimited(items, limit, work) {
  const results = new Array(items.length);
  let next = 0;
  const worker = async () => { while (next < items.length) { const i = next++; results[i] = await work(items[i]); } };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function showHeatmap(month, stations, stationId) {
  if (!stations.length) return;
  const chosen = stations.find((s) => s.station === stationId) || stations[0];
  $("heatmap-section").hidden = false;
  $("heatmap-month").value = month;
  $("heatmap-station").replaceChildren(...stations.map((s) => el("option", { value: s.station, selected: s === chosen }, s.name)));
  $("heatmap-legend").replaceChildren(...Object.entries(HEAT_COLORS).map(([status, color]) => el("span", {},
    el("span", { class: "swatch", "data-color": color }), ` ${status}`)));
  for (const swatch of $("heatmap-legend").querySelectorAll(".swatch")) swatch.style.background = swatch.dataset.color;
  // One small request per elapsed day for one station: today first, to know where to stop.
  const id = encodeURIComponent(chosen.station);
  const today = (await getJSON(`/api/v1/attendance/daily?station=${id}`)).date;
  const [y, m] = month.split("-").map(Number);
  const count = new Date(Date.UTC(y, m, 0)).getUTCDate();
  const dates = Array.from({ length: count }, (_, i) => `${month}-${String(i + 1).padStart(2, "0")}`);
  const rows = await mapLimited(dates, 4, (date) => (date > today ? null
    : getJSON(`/api/v1/attendance/daily?station=${id}&date=${date}`).then((b) => b.rows[0])));
  const cells = rows.map((row) => (row && !(row.status === "tidak hadir" && !row.window_s) ? row : null));
  $("heatmap").replaceChildren(calendarHeatmap(month, cells, `Kalender kehadiran ${chosen.name}, ${monthText(month)}`));
}

// --- start --------------------------------------------------------------------------------

async function main() {
  try {
    const month = params.get("month") || (params.get("station") ? "" : null);
    if (month !== null) await showMonth(month || undefined, params.get("station"));
    else await showDay(params.get("date") || undefined);
  } catch (error) {
    $("title").textContent = "Laporan tidak dapat dimuat";
    $("error").hidden = false;
    $("error").textContent = error.status === 400 ? "Tanggal atau bulan tidak valid." : "Gagal memuat data. Coba muat ulang halaman.";
  }
}

main();
