// /rekaman/{id}: one recording in a plain <video controls>. The file is served with HTTP
// Range (docs/recordings.md), so the browser fetches only what it plays and seeks anywhere.
// The title and the station's name reach the page as text only.
import { KIND_LABEL, clockOfEpoch, getJSON, stationHref } from "/static/common.js";
import { dayText, lengthText, sizeText } from "/static/recorded.js";

const $ = (id) => document.getElementById(id);
const recordingId = decodeURIComponent(location.pathname.replace(/^\/rekaman\//, "").replace(/\/$/, ""));

function facts(rows) {
  const nodes = [];
  for (const [term, value] of rows) {
    if (!value) continue;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    nodes.push(dt, dd);
  }
  $("facts").replaceChildren(...nodes);
}

function notFound() {
  $("title").textContent = "Rekaman tidak ditemukan";
  $("not-found").hidden = false;
}

async function main() {
  let recording;
  try {
    recording = await getJSON(`/api/v1/recordings/${encodeURIComponent(recordingId)}`);
  } catch (error) {
    if (error.status === 404) notFound();
    else $("title").textContent = "Rekaman gagal dimuat. Coba lagi sebentar lagi.";
    return;
  }
  const title = recording.title || "Kegiatan tanpa judul";
  document.title = `${title} — Rekaman — Jaga Pemkab Jember`;
  $("title").textContent = title;
  facts([
    ["Kantor", recording.name],
    ["Wilayah", [KIND_LABEL[recording.kind], recording.kecamatan ? `Kec. ${recording.kecamatan}` : ""].filter(Boolean).join(" · ")],
    ["Tanggal", dayText(recording.date)],
    ["Waktu", `${clockOfEpoch(recording.start)}–${clockOfEpoch(recording.end)} WIB`],
    ["Durasi", lengthText(recording.duration_s)],
    ["Ukuran", recording.bytes ? sizeText(recording.bytes) : ""],
  ]);
  $("station-link").href = stationHref(recording.station);
  $("more-link").href = `/rekaman?station=${encodeURIComponent(recording.station)}`;
  $("recording").hidden = false;
  if (!recording.url) {
    $("video-error").hidden = false;
    $("video-error").textContent = "Rekaman ini belum selesai diproses. Coba lagi nanti.";
    $("download").hidden = true;
    return;
  }
  const video = $("video");
  video.addEventListener("error", () => { $("video-error").hidden = false; });
  video.src = recording.url;
  const extension = recording.url.split(".").pop();
  const download = $("download");
  download.href = recording.url;
  download.setAttribute("download", `jaga-${recording.station}-${recording.date}-${recording.id}.${extension}`);
  download.textContent = `Unduh rekaman (${extension.toUpperCase()}${recording.bytes ? `, ${sizeText(recording.bytes)}` : ""})`;
}

main();
