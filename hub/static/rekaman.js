// /rekaman: the published recordings, newest first, grouped by day; filters by date,
// kecamatan, kind and station (?date=&kecamatan=&kind=&station=, the API's own parameters),
// "load earlier" pages with the API's `next`, and the open-data links for what is shown.
// Names and titles reach the page as text only (el()).
import { KIND_LABEL, clockOfEpoch, el, getJSON } from "/static/common.js";
import { dayText, lengthText, recordingHref } from "/static/recorded.js";

const $ = (id) => document.getElementById(id);
const FILTERS = ["date", "kecamatan", "kind", "station"];
const PAGE = 50;
const params = new URLSearchParams(location.search);
const chosen = Object.fromEntries(FILTERS.map((key) => [key, params.get(key) || ""]));
const query = (extra) => new URLSearchParams(Object.entries({ ...chosen, ...extra }).filter(([, v]) => v)).toString();

let next = null;
let shown = 0;

function option(value, label, selected) {
  return el("option", { value, selected: value === selected }, label);
}

async function fillFilters() {
  $("f-date").value = chosen.date;
  for (const [kind, label] of Object.entries(KIND_LABEL)) $("f-kind").append(option(kind, label, chosen.kind));
  let stations = [];
  try {
    stations = (await getJSON("/api/v1/stations")).stations;
  } catch { /* the filters still work by URL */ }
  const kecamatan = [...new Set(stations.map((s) => s.kecamatan).filter(Boolean))].sort((a, b) => a.localeCompare(b, "id"));
  for (const name of kecamatan) $("f-kecamatan").append(option(name, name, chosen.kecamatan));
  const sorted = stations.slice().sort((a, b) => a.name.localeCompare(b.name, "id"));
  for (const station of sorted) $("f-station").append(option(station.id, station.name, chosen.station));
  if (chosen.station && !sorted.some((s) => s.id === chosen.station)) $("f-station").append(option(chosen.station, chosen.station, chosen.station));
}

function dayList(date) {
  const id = `day-${date}`;
  let list = document.getElementById(id);
  if (!list) {
    const section = el("section", { class: "recording-day" }, el("h2", {}, dayText(date)), list = el("ul", { class: "list recordings", id }));
    $("days").append(section);
  }
  return list;
}

function item(recording) {
  const place = recording.kecamatan ? `Kec. ${recording.kecamatan}` : KIND_LABEL[recording.kind] || "";
  return el("li", { class: "recording", "data-id": recording.id },
    el("a", { class: "recording-link", href: recordingHref(recording.id) },
      el("span", { class: "play", "aria-hidden": "true" }, "▶"),
      el("span", { class: "recording-main" },
        el("b", { class: "recording-title" }, recording.title || "Kegiatan tanpa judul"),
        el("span", { class: "recording-station" }, recording.name),
        el("small", { class: "muted" }, `${clockOfEpoch(recording.start)}–${clockOfEpoch(recording.end)} WIB · ${lengthText(recording.duration_s)}${place ? ` · ${place}` : ""}`))));
}

async function load() {
  $("more").hidden = true;
  try {
    const answer = await getJSON(`/api/v1/recordings?${query({ limit: String(PAGE), before: next === null ? "" : String(next) })}`);
    for (const recording of answer.recordings) dayList(recording.date).append(item(recording));
    shown += answer.recordings.length;
    next = answer.next;
    $("more").hidden = next === null;
    $("empty").hidden = shown > 0;
    $("summary").textContent = shown ? `${shown} rekaman${next === null ? "" : " (ada yang lebih lama)"}` : "";
    $("error").hidden = true;
  } catch (error) {
    $("error").hidden = false;
    $("error").textContent = error.status === 404 ? "Kantor tidak ditemukan." : "Daftar rekaman gagal dimuat. Coba lagi sebentar lagi.";
    $("summary").textContent = "";
    $("more").hidden = next === null && shown === 0;
  }
}

$("open-json").href = `/api/v1/recordings?${query({})}`;
$("open-csv").href = `/api/v1/recordings.csv?${query({})}`;
$("more").addEventListener("click", load);
// Filters submit as a plain GET form; drop empty fields so the URL stays short and shareable.
$("filters").addEventListener("submit", (event) => {
  event.preventDefault();
  const values = Object.fromEntries(FILTERS.map((key) => [key, $(`f-${key}`).value]));
  const search = new URLSearchParams(Object.entries(values).filter(([, v]) => v)).toString();
  location.assign(`/rekaman${search ? `?${search}` : ""}`);
});
fillFilters();
load();
