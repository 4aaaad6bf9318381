// "/" Sekarang: counts, today's activities and the directory of public stations, kept live
// from /ws/watch. The snapshot builds the page; each delta patches the one station it names.
// Thumbnails load only for cards on screen whose station is connected, at most once per
// THUMB_REFRESH_MS each, so a phone on a slow link pays for what it shows and no more.
import { KIND_LABEL, WatchFeed, badge, clockOf, clockOfEpoch, el, getJSON, setBadge, stationHref, stationLabel, thumbnailUrl } from "/static/common.js";

const THUMB_REFRESH_MS = 30000;
const OPD_GROUP = "Organisasi Perangkat Daerah (OPD)";
const saveData = Boolean(navigator.connection && navigator.connection.saveData);

const $ = (id) => document.getElementById(id);
const stations = new Map(); // id → station object from the hub
const cards = new Map(); // id → {dir: card in the directory, live: card in "Sedang siaran" or null}
const groups = new Map(); // kecamatan → {details, count}
const earlier = []; // ended activities today: {id, name, title, start, end} ("HH.MM" in WIB)

const visible = new Set();
const observer = "IntersectionObserver" in window
  ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) { visible.add(entry.target); loadThumb(entry.target); }
      else visible.delete(entry.target);
    }
  }, { rootMargin: "150px" })
  : null;

function connected(station) {
  return station.state === "online" || station.state === "live";
}

// --- cards --------------------------------------------------------------------------------

function makeCard(station) {
  const img = el("img", { class: "thumb", alt: "", width: 320, height: 180, decoding: "async" });
  const status = badge(station.status, stationLabel(station));
  const since = el("small", { class: "since" });
  const card = el("a", { class: "card", href: stationHref(station.id), "data-id": station.id },
    img,
    el("span", { class: "body" },
      el("span", { class: "name" }, station.name),
      el("small", {}, KIND_LABEL[station.kind] || station.kind, station.kecamatan ? ` · ${station.kecamatan}` : ""),
      el("span", {}, status, " ", since)));
  card.parts = { img, status, since, loadedAt: 0, loadedThumb: null, timer: null };
  paintCard(card, station);
  if (observer) observer.observe(card);
  return card;
}

function paintCard(card, station) {
  card.dataset.status = station.status;
  setBadge(card.parts.status, station.status, stationLabel(station));
  card.parts.since.textContent = connected(station) && station.since ? `sejak ${clockOfEpoch(station.since)}` : "";
  if (!connected(station) || !station.thumb_at) {
    card.parts.img.removeAttribute("src");
    card.parts.loadedThumb = null;
  } else if (visible.has(card)) {
    loadThumb(card);
  }
}

function loadThumb(card) {
  const station = stations.get(card.dataset.id);
  const parts = card.parts;
  if (saveData || !station || !connected(station) || !station.thumb_at || parts.loadedThumb === station.thumb_at) return;
  const wait = parts.loadedAt + THUMB_REFRESH_MS - Date.now();
  if (parts.loadedThumb !== null && wait > 0) {
    if (parts.timer === null) parts.timer = setTimeout(() => { parts.timer = null; if (visible.has(card)) loadThumb(card); }, wait);
    return;
  }
  parts.loadedAt = Date.now();
  parts.loadedThumb = station.thumb_at;
  parts.img.src = thumbnailUrl(station.id, station.thumb_at);
}

// --- directory ----------------------------------------------------------------------------

function groupName(station) {
  return station.kind === "opd" || !station.kecamatan ? OPD_GROUP : station.kecamatan;
}

function buildDirectory() {
  for (const { dir, live } of cards.values()) {
    if (observer) { observer.unobserve(dir); if (live) observer.unobserve(live); }
  }
  visible.clear();
  cards.clear();
  groups.clear();
  const byGroup = new Map();
  for (const station of stations.values()) {
    const name = groupName(station);
    if (!byGroup.has(name)) byGroup.set(name, []);
    byGroup.get(name).push(station);
  }
  const names = [...byGroup.keys()].sort((a, b) => (a === OPD_GROUP) - (b === OPD_GROUP) || a.localeCompare(b, "id"));
  const directory = $("directory");
  directory.replaceChildren();
  for (const name of names) {
    const grid = el("div", { class: "cards" });
    const count = el("span", { class: "count" });
    const details = el("details", { class: "kec", "data-kecamatan": name }, el("summary", {}, el("span", {}, name), count), grid);
    for (const station of byGroup.get(name)) {
      const card = makeCard(station);
      cards.set(station.id, { dir: card, live: null });
      grid.append(card);
    }
    groups.set(name, { details, count, ids: byGroup.get(name).map((s) => s.id) });
    directory.append(details);
  }
  if (!names.length) directory.append(el("p", { class: "muted" }, "Belum ada kantor publik."));
  for (const station of stations.values()) placeLive(station);
  refreshCounts();
  applySearch();
}

function placeLive(station) {
  const entry = cards.get(station.id);
  if (!entry) return;
  if (station.state === "live" && !entry.live) {
    entry.live = makeCard(station);
    $("live-cards").append(entry.live);
  } else if (station.state !== "live" && entry.live) {
    if (observer) observer.unobserve(entry.live);
    visible.delete(entry.live);
    entry.live.remove();
    entry.live = null;
  }
  $("live-empty").hidden = $("live-cards").childElementCount > 0;
}

function refreshCounts() {
  let live = 0, on = 0;
  for (const station of stations.values()) {
    if (station.state === "live") live += 1;
    if (connected(station)) on += 1;
  }
  $("count-live").textContent = live;
  $("count-on").textContent = on;
  $("count-all").textContent = stations.size;
  for (const group of groups.values()) {
    const members = group.ids.map((id) => stations.get(id));
    const groupLive = members.filter((s) => s.state === "live").length;
    const groupOn = members.filter(connected).length;
    group.count.textContent = `${groupLive} siaran · ${groupOn} terhubung · ${members.length} kantor`;
  }
}

function applySearch() {
  const query = $("search").value.trim().toLowerCase();
  for (const [name, group] of groups) {
    let shown = 0;
    for (const id of group.ids) {
      const station = stations.get(id);
      const match = !query || `${station.name} ${name} ${station.id}`.toLowerCase().includes(query);
      cards.get(id).dir.hidden = !match;
      if (match) shown += 1;
    }
    group.details.hidden = shown === 0;
    if (query) group.details.open = shown > 0;
  }
}

// --- activities ---------------------------------------------------------------------------

function renderActivities() {
  const live = [...stations.values()].filter((s) => s.activity && s.activity.title)
    .sort((a, b) => b.activity.since - a.activity.since);
  $("activities-live").replaceChildren(...live.map((s) => el("li", {},
    el("strong", {}, s.activity.title), el("br"),
    el("a", { href: stationHref(s.id) }, s.name), " ",
    el("small", {}, `mulai ${clockOfEpoch(s.activity.since)}`), " ",
    s.state === "live" ? badge("live") : null)));
  $("activities-live-empty").hidden = live.length > 0;
  const done = earlier.slice().sort((a, b) => b.end.localeCompare(a.end));
  $("activities-earlier").replaceChildren(...done.map((a) => el("li", {},
    el("strong", {}, a.title), el("br"),
    stations.has(a.id) ? el("a", { href: stationHref(a.id) }, a.name) : a.name, " ",
    el("small", {}, `${a.start} – ${a.end}`))));
  $("activities-earlier-empty").hidden = done.length > 0;
}

async function loadEarlierActivities() {
  try {
    const body = await getJSON("/api/v1/activities");
    earlier.length = 0;
    for (const item of body.activities) {
      if (!item.live) earlier.push({ id: item.id, name: item.name, title: item.title, start: clockOf(item.start), end: clockOf(item.end) });
    }
    renderActivities();
  } catch {
    // the live list still works; the earlier list stays as it was
  }
}

// --- the feed -----------------------------------------------------------------------------

function onMessage(message) {
  if (message.t === "snapshot") {
    stations.clear();
    for (const station of message.stations) stations.set(station.id, station);
    buildDirectory();
    renderActivities();
    loadEarlierActivities(); // anything that ended while we were away
    return;
  }
  if (message.t === "thumbs") { // new thumbnails, gathered by the hub: {at: {id: time}}
    for (const [id, at] of Object.entries(message.at || {})) {
      const station = stations.get(id);
      if (!station) continue;
      station.thumb_at = at;
      const entry = cards.get(id);
      for (const card of [entry.dir, entry.live]) if (card && visible.has(card)) loadThumb(card);
    }
    return;
  }
  const station = stations.get(message.id);
  if (!station) return; // the hub only sends public stations; anything else is ignored
  if (message.t === "presence") {
    Object.assign(station, { state: message.state, status: message.status, since: message.since, reason: message.reason,
                             media: message.media ?? "" });
    const entry = cards.get(station.id);
    paintCard(entry.dir, station);
    placeLive(station);
    if (entry.live) paintCard(entry.live, station);
    refreshCounts();
    renderActivities();
  } else if (message.t === "activity") {
    const previous = station.activity;
    station.activity = message.title ? { title: message.title, since: message.since } : null;
    if (previous && previous.title && previous.title !== message.title) {
      earlier.push({ id: station.id, name: station.name, title: previous.title,
        start: clockOfEpoch(previous.since), end: clockOfEpoch(message.since) });
    }
    renderActivities();
  }
}

function onState(state) {
  const conn = $("conn");
  conn.className = `conn ${state}`;
  conn.textContent = state === "up" ? "Terhubung · diperbarui langsung" : "Koneksi terputus · menyambung ulang…";
}

$("save-data-note").hidden = !saveData;
$("search").addEventListener("input", applySearch);
new WatchFeed(onMessage, onState).open();
