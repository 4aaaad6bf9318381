// /watch/{station}: the live player and the station's day.
// The page polls /api/v1/stations/{id} (a few hundred bytes) rather than following /ws/watch,
// whose snapshot and deltas cover every station: on a slow phone one station's status every
// POLL_MS is far cheaper. The player runs only while the station is live and low-data mode is
// off; otherwise the page shows a clear message or the latest thumbnail.
// Audio only: on a weak link the hub stops this viewer's video and keeps its sound (its own
// decision, from this browser's RTCP; docs/media.md). The page notices from getStats() that
// pictures stopped while sound goes on, asks the WHEP session resource why, and shows the
// station's thumbnail over the frozen picture until pictures arrive again. A station that
// itself sends only sound (`media: "audio"`) is shown the same way with its own words.
// Two ways to play: WebRTC (WHEP, well under a second behind) first, and HLS (the hub's
// low-latency HLS, a few seconds behind, plain HTTP that scales past the WebRTC viewer caps)
// when WebRTC is refused (429/503 at the caps), fails (ICE) or brings no media within
// NO_MEDIA_MS of the hub's answer (in a crowd the hub holds an offer for its turn, up to
// TURN_WAIT_MS: a hung request gives way after both), or when the viewer picks it (the
// switch, or `?mode=hls` in a shared link).
// A fallback lasts until the player stops (a failure, the station stopping, a switch): the
// next start tries the viewer's own choice again. A VP8 station has no HLS (409
// hls_needs_h264): with WebRTC full, the page says so and tries again later (FULL_RETRY_MS;
// refused `busy`, a crowd joining at once: after Retry-After and up to BUSY_JITTER_MS more).
// For tests: document.body.dataset.playMode ("webrtc", "hls" or "" without a player) and
// dataset.delayMs (ms behind the station, every FLOW_MS; absent while unknown) with
// dataset.delayReadings (how many readings so far: a steady delay reads the same twice).
import { KIND_LABEL, STATUS_LABEL, WatchFeed, badge, clockOf, clockOfEpoch, el, formatDuration, formatPercent, getJSON, thumbnailUrl } from "/static/common.js";
import { QuestionsBox } from "/static/questions.js";
import { HlsError, HlsPlayer } from "/static/hls_player.js";
import { WhepError, WhepPlayer } from "/static/whep.js";

const POLL_MS = 10000;
const RETRY_MS = 5000;
const FLOW_MS = 2000; // how often the player's getStats() is read (local, no request)
const ASK_MS = 5000; // at most one GET on the session resource per this, and only when pictures stop
const AUDIO_ONLY_POLL_MS = 5000; // the station (and so its thumbnail) polled faster while audio only
const NO_MEDIA_MS = 8000; // WebRTC that brings neither a picture nor a sound by then: HLS instead
const TURN_WAIT_MS = 10000; // the longest the hub holds a WHEP offer for its turn (media.public_join_wait_s)
const FULL_RETRY_MS = 30000; // WebRTC refused at the caps and no HLS (a VP8 station): try again after
// Refused 503 busy (too many joining at once) and no HLS: try again after Retry-After plus up to
// this much, because everyone refused in the same moment is told the same Retry-After.
const BUSY_JITTER_MS = 5000;
const DAY_NAMES = { mon: "Senin", tue: "Selasa", wed: "Rabu", thu: "Kamis", fri: "Jumat", sat: "Sabtu", sun: "Minggu" };
const DAY_ORDER = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const $ = (id) => document.getElementById(id);
const stationId = decodeURIComponent(location.pathname.replace(/^\/watch\//, "").replace(/\/$/, ""));
const apiUrl = `/api/v1/stations/${encodeURIComponent(stationId)}`;
const video = $("video");
const still = $("still");

let station = null;
let player = null;
let playerProblem = null; // a message while the player cannot run (capacity, failure)
let retryTimer = null;
let pollTimer = null;
let videoOff = null; // the session resource's answer while the hub sends this viewer no video
let flowTimer = null;
let lastFlow = null;
let lastAsk = 0;
// "webrtc" or "hls": the viewer's choice (the switch, or ?mode=hls); fallback: why HLS plays
// instead of WebRTC this time ("full", "failed", "no_media"), null when the choice plays.
let chosenMode = new URLSearchParams(location.search).get("mode") === "hls" ? "hls" : "webrtc";
let fallback = null;
let playerStarted = 0; // when the NO_MEDIA_MS watchdog starts: the WHEP answer (TURN_WAIT_MS ahead until then)
let sawMedia = false;
let delayMs = null;
const playMode = () => (fallback ? "hls" : chosenMode);

const LOW_DATA_KEY = "jaga.lowData";
const storedLowData = localStorage.getItem(LOW_DATA_KEY);
$("low-data").checked = storedLowData === null
  ? Boolean(navigator.connection && navigator.connection.saveData)
  : storedLowData === "1";

function workdaysText(days) {
  const indexes = days.map((d) => DAY_ORDER.indexOf(d)).filter((i) => i >= 0).sort((a, b) => a - b);
  if (!indexes.length) return "";
  const contiguous = indexes.every((value, i) => i === 0 || value === indexes[i - 1] + 1);
  if (contiguous && indexes.length > 2) return `${DAY_NAMES[DAY_ORDER[indexes[0]]]}–${DAY_NAMES[DAY_ORDER[indexes.at(-1)]]}`;
  return indexes.map((i) => DAY_NAMES[DAY_ORDER[i]]).join(", ");
}

function hoursText(hours) {
  if (!hours) return "";
  const zone = hours.timezone === "Asia/Jakarta" ? "WIB" : hours.timezone;
  return `${workdaysText(hours.workdays)} ${hours.start.replace(":", ".")}–${hours.end.replace(":", ".")} ${zone}`;
}

// --- what the player area shows -----------------------------------------------------------

function showMessage(title, text) {
  $("message").hidden = false;
  $("message-title").textContent = title;
  $("message-text").textContent = text || "";
}

function offlineMessage() {
  const hours = hoursText(station.hours);
  const today = station.today || {};
  switch (station.status) {
    case "online": return ["Kantor terhubung, belum siaran", "Video akan muncul di sini begitu kantor mulai menyiarkan."];
    case "reconnecting": return ["Koneksi kantor terputus sebentar", "Menunggu kantor tersambung kembali…"];
    case "missing": return ["Kantor belum terhubung", `Seharusnya buka sekarang (jam kantor ${hours}).`];
    case "off-hours":
      if (today.status === "libur") return ["Hari ini libur", `Jam kantor: ${hours}.`];
      return ["Di luar jam kantor", `Jam kantor: ${hours}. Siaran hanya ada saat kantor buka.`];
    default: return [STATUS_LABEL[station.status] || "Tidak siaran", ""];
  }
}

function publisherAudioOnly() {
  return station.state === "live" && station.media === "audio"; // no field: video
}

function audioOnly() {
  return Boolean(player) && (Boolean(videoOff) || publisherAudioOnly());
}

function audioOnlyText() {
  if (publisherAudioOnly()) return "Hanya suara: kantor sedang mengirim suara saja (jaringan kantor lemah).";
  const parts = ["Hanya suara: jaringan Anda terlalu lambat untuk video."];
  const every = Math.round(videoOff.thumbnail_s || 0);
  if (every > 0) parts.push(`Gambar diperbarui tiap ${every} detik.`);
  if (videoOff.retryAt) {
    const seconds = Math.ceil((videoOff.retryAt - Date.now()) / 1000);
    parts.push(seconds > 0 ? `Video dicoba lagi dalam ${seconds} detik.` : "Mencoba video lagi…");
  }
  return parts.join(" ");
}

function render() {
  const live = station.state === "live";
  const lowData = $("low-data").checked;
  if (live && !lowData && !playerProblem) startPlayer();
  else stopPlayer();

  // Without video (low-data mode, not live yet, player trouble, audio only) the latest
  // picture stands in; while audio only it covers the frozen video, which plays the sound.
  const soundOnly = audioOnly();
  $("player").classList.toggle("audio-only", soundOnly);
  $("audio-only").hidden = !soundOnly;
  if (soundOnly) $("audio-only").textContent = audioOnlyText();
  const showStill = (!player || soundOnly) && station.thumb_at && (live || station.state === "online");
  still.hidden = !showStill;
  if (showStill) {
    const src = thumbnailUrl(station.id, station.thumb_at);
    if (still.getAttribute("src") !== src) still.src = src;
  }
  video.hidden = !player;

  if (player) {
    $("message").hidden = true;
  } else if (live && playerProblem) {
    showMessage(playerProblem, showStill ? "" : "Gambar diam muncul saat tersedia.");
  } else if (live && lowData) {
    if (showStill) $("message").hidden = true;
    else showMessage("Mode hemat data", "Belum ada gambar dari kantor ini.");
  } else {
    const [title, text] = offlineMessage();
    showMessage(title, text);
  }
  $("unmute").hidden = !player || !video.muted;
  $("viewers").textContent = `${station.viewers} penonton`;
}

function startPlayer() {
  if (player) return;
  if (playMode() === "hls") startHls();
  else startWhep();
  video.muted = true;
  flowTimer = setInterval(tick, FLOW_MS);
  video.play().catch(() => {}); // muted autoplay; some browsers still want a tap
  showMode();
}

function startWhep() {
  const current = new WhepPlayer(`/whep/${encodeURIComponent(station.id)}`, video, (state) => {
    if (state === "failed" && player === current) fallBack("failed");
  });
  player = current;
  playerStarted = Date.now() + TURN_WAIT_MS; // NO_MEDIA_MS counts from the answer, once it came
  sawMedia = false;
  current.start().then(() => {
    if (player === current) playerStarted = Date.now();
  }, (error) => {
    if (player !== current) return;
    if (error instanceof WhepError && (error.status === 429 || error.status === 503)) {
      fallBack("full", error.retryAfterS, error.code);
    } else if (error instanceof WhepError && error.status === 404) {
      retryLater("Siaran belum tersedia, mencoba lagi…");
    } else {
      fallBack("failed");
    }
  });
}

function startHls() {
  const current = new HlsPlayer(`/hls/${encodeURIComponent(station.id)}/index.m3u8`, video, (state) => {
    if (state === "failed" && player === current) retryLater("Sambungan video terputus, mencoba lagi…");
  });
  player = current;
  const why = fallback;
  current.start().catch((error) => {
    if (player !== current) return;
    const code = error instanceof HlsError ? error.code : "";
    const status = error instanceof HlsError ? error.status : 0;
    // No HLS for this station: it sends VP8 (WebRTC only), or this hub packages no HLS at all.
    const noHls = code === "hls_needs_h264" || (status === 404 && code !== "not_live");
    if (noHls && !why) { // the viewer's choice, but only WebRTC can play this station
      stopPlayer();
      choose("webrtc");
      $("mode-note").hidden = false;
      $("mode-note").textContent = code === "hls_needs_h264"
        ? "Kantor ini hanya bisa ditonton lewat WebRTC." : "HLS tidak tersedia, memakai WebRTC.";
      render();
    } else if (noHls && why.reason === "full" && why.code === "busy") {
      retryLater("Banyak penonton sedang bergabung; giliran Anda sebentar lagi…",
        why.retryAfterS * 1000 + Math.random() * BUSY_JITTER_MS);
    } else if (noHls && why.reason === "full") {
      retryLater(code === "hls_needs_h264"
        ? "Kantor ini hanya bisa ditonton lewat WebRTC; kapasitas penuh, coba lagi sebentar lagi."
        : "Penonton sedang penuh. Coba lagi nanti atau pakai mode hemat data.",
      Math.max(FULL_RETRY_MS, why.retryAfterS * 1000));
    } else if (status === 404) {
      retryLater("Siaran belum tersedia, mencoba lagi…");
    } else {
      retryLater(why ? "Sambungan video terputus, mencoba lagi…" : "Video tidak dapat diputar, mencoba lagi…");
    }
  });
}

// WebRTC did not work out this time: play HLS instead (the next start tries WebRTC again).
function fallBack(reason, retryAfterS = 0, code = "") {
  stopPlayer();
  fallback = { reason, retryAfterS, code };
  if (station) render();
}

function stopPlayer() {
  if (!player) return;
  const current = player;
  player = null;
  current.stop();
  clearInterval(flowTimer);
  fallback = null;
  videoOff = null;
  lastFlow = null;
  lastAsk = 0;
  delayMs = null;
  showMode();
}

// The mode line under the player ("Mode: HLS (cadangan) · tunda ±3,1 dtk") and its switch.
const seconds = new Intl.NumberFormat("id-ID", { minimumFractionDigits: 1, maximumFractionDigits: 1 });
function showMode() {
  const mode = player ? playMode() : "";
  document.body.dataset.playMode = mode;
  if (delayMs === null) delete document.body.dataset.delayMs;
  else document.body.dataset.delayMs = String(delayMs);
  $("play-mode").hidden = !mode;
  const name = mode === "hls" ? (fallback ? "HLS (cadangan)" : "HLS") : "WebRTC";
  const delay = delayMs === null ? "" : ` · tunda ±${seconds.format(delayMs / 1000)} dtk`;
  $("play-mode-text").textContent = mode ? `Mode: ${name}${delay}` : "";
  $("mode-switch").textContent = mode === "hls" ? "Pakai WebRTC" : "Pakai HLS";
}

// The viewer's choice, kept in the address (?mode=hls) so that a shared link plays the same.
function choose(mode) {
  chosenMode = mode;
  const url = new URL(location.href);
  if (mode === "hls") url.searchParams.set("mode", "hls");
  else url.searchParams.delete("mode");
  history.replaceState(history.state, "", url);
}

// Every FLOW_MS while a player runs: the delay, and for WebRTC whether media flows at all.
async function tick() {
  const current = player;
  if (!current) return;
  const delay = await current.delayMs();
  if (player !== current) return;
  delayMs = delay;
  document.body.dataset.delayReadings = String(Number(document.body.dataset.delayReadings || 0) + 1);
  showMode();
  if (current instanceof WhepPlayer) await checkFlow();
}

// Pictures stopped while sound goes on: ask the hub whether it stopped this viewer's video.
async function checkFlow() {
  const current = player;
  if (!(current instanceof WhepPlayer)) return;
  const flow = await current.flow();
  if (player !== current) return;
  if (flow.frames > 0 || flow.audio > 0) sawMedia = true;
  else if (!sawMedia && Date.now() - playerStarted > NO_MEDIA_MS) { fallBack("no_media"); return; }
  const previous = lastFlow;
  lastFlow = flow;
  if (!previous) return;
  if (flow.frames > previous.frames) { // pictures again (a probe that may hold)
    if (videoOff) { videoOff = null; render(); }
    return;
  }
  if (flow.audio <= previous.audio && !videoOff) return; // nothing at all: the connection state tells
  if (videoOff) $("audio-only").textContent = audioOnlyText(); // the countdown
  if (publisherAudioOnly() && !videoOff) return; // the station sends no video: nothing to ask
  if (Date.now() - lastAsk < ASK_MS) return;
  lastAsk = Date.now();
  const status = await current.videoStatus();
  if (player !== current || !status) return;
  if (status.reason === "no_video") { lastAsk = Infinity; return; } // this session has no video to stop
  const off = status.video === "off";
  if (!off && !videoOff) return;
  videoOff = off ? { ...status, retryAt: typeof status.retry_in_s === "number" ? Date.now() + status.retry_in_s * 1000 : 0 } : null;
  render();
}

function retryLater(message, ms = RETRY_MS) {
  stopPlayer();
  playerProblem = message;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => { playerProblem = null; if (station) render(); }, ms);
  if (station) render();
}

// --- details and today's figures ----------------------------------------------------------

function facts(target, pairs) {
  target.replaceChildren(...pairs.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)]));
}

function renderDetails() {
  document.title = `${station.name} — Jaga Pemkab Jember`;
  $("name").textContent = station.name;
  $("subtitle").textContent = [KIND_LABEL[station.kind] || station.kind, station.kecamatan && `Kecamatan ${station.kecamatan}`]
    .filter(Boolean).join(" · ");
  $("status").replaceChildren(badge(station.status),
    station.since && station.state !== "offline" ? ` sejak ${clockOfEpoch(station.since)}` : "");
  const activity = station.activity && station.activity.title;
  $("activity").hidden = !activity;
  if (activity) $("activity").textContent = `Kegiatan: ${activity} (mulai ${clockOfEpoch(station.activity.since)})`;

  const today = station.today || {};
  const notStarted = today.status === "tidak hadir" && !today.window_s;
  facts($("today"), [
    ["Status", badge(today.status, notStarted ? "belum mulai" : today.status)],
    ["Pertama terhubung", clockOf(today.first_online)],
    ["Pertama siaran", clockOf(today.first_live)],
    ["Lama siaran", formatDuration(today.live_s)],
    ["Cakupan siaran", formatPercent(today.coverage || 0)],
    ["Terlambat", today.late_s ? formatDuration(today.late_s) : "tidak"],
    ["Gangguan", String(today.interruptions ?? 0)],
  ]);
  facts($("details"), [
    ["Nama", station.name],
    ["Kode", station.id],
    ["Jenis", KIND_LABEL[station.kind] || station.kind],
    ["Kecamatan", station.kecamatan || "–"],
    ["Jam kantor", hoursText(station.hours) || "–"],
  ]);
  $("report-link").href = `/laporan?station=${encodeURIComponent(station.id)}`;
  $("recordings-link").href = `/rekaman?station=${encodeURIComponent(station.id)}`;
}

// --- questions (Tanya) ----------------------------------------------------------------------
// Live updates come as `question` events on /ws/watch. The socket is opened with ?since=<seq>
// of the station list (gzip, a few KB) so the hub sends only events, not its snapshot of every
// station; each time it (re)connects the list is loaded again, so nothing missed stays missing.

let questions = null;

async function startQuestions() {
  questions = new QuestionsBox(stationId);
  try {
    if (!(await questions.load())) return; // questions are off here
  } catch { /* the feed's first connect loads again */ }
  let seq = null;
  try { seq = (await getJSON("/api/v1/stations")).seq; } catch { /* then a snapshot, ignored */ }
  const feed = new WatchFeed((message) => {
    if (message.t === "question") questions.apply(message.q);
  }, (state) => {
    // Events between the first load and the socket's opening: loading again covers them.
    if (state === "up") questions.load().catch(() => {});
  });
  if (typeof seq === "number") feed.seq = seq;
  feed.open();
}

// --- jejak: today's kept thumbnails, a row of small pictures (oldest first) ----------------------
// Kept every few minutes, so the list is fetched again at most once a minute, not on every poll.

const JEJAK_MS = 60000;
let jejakFetched = 0;
let jejakShown = "";

async function loadJejak() {
  if (Date.now() - jejakFetched < JEJAK_MS) return;
  jejakFetched = Date.now();
  let items;
  try {
    items = (await getJSON(`${apiUrl}/jejak`)).jejak || [];
  } catch {
    return; // the next poll after a minute tries again
  }
  const key = items.map((item) => item.url).join(" ");
  if (key === jejakShown) return;
  jejakShown = key;
  $("jejak").hidden = items.length === 0;
  $("jejak-strip").replaceChildren(...items.map((item) => el("li", {},
    el("a", { href: item.url, target: "_blank", rel: "noopener" },
      el("img", { src: item.url, alt: `Gambar pukul ${item.time}`, loading: "lazy", width: 128, height: 72 })),
    el("span", { class: "time" }, item.time))));
}

async function poll() {
  clearTimeout(pollTimer);
  try {
    station = await getJSON(apiUrl);
    $("station").hidden = false;
    renderDetails();
    render();
    if (!questions) startQuestions();
    loadJejak();
  } catch (error) {
    if (error.status === 404) {
      stopPlayer();
      $("station").hidden = true;
      $("name").textContent = "Kantor tidak ditemukan";
      $("not-found").hidden = false;
      return; // nothing to follow
    }
  }
  if (document.visibilityState === "visible") pollTimer = setTimeout(poll, station && audioOnly() ? AUDIO_ONLY_POLL_MS : POLL_MS);
}

$("low-data").addEventListener("change", () => {
  localStorage.setItem(LOW_DATA_KEY, $("low-data").checked ? "1" : "0");
  playerProblem = null;
  if (station) render();
});
$("mode-switch").addEventListener("click", () => {
  choose(playMode() === "hls" ? "webrtc" : "hls");
  stopPlayer();
  playerProblem = null;
  clearTimeout(retryTimer);
  $("mode-note").hidden = true;
  if (station) render();
});
$("unmute").addEventListener("click", () => {
  video.muted = false;
  video.play().catch(() => {});
  $("unmute").hidden = true;
});
video.addEventListener("volumechange", () => { $("unmute").hidden = !player || !video.muted; });
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") poll(); });
window.addEventListener("pagehide", () => { stopPlayer(); clearTimeout(pollTimer); });
window.addEventListener("pageshow", (event) => { if (event.persisted) poll(); });

poll();
