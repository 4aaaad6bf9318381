// The Pendopo wall: wires the store, the watch socket and the views together.
//
// Views: overview (#ringkasan), alarms (#alarm), the live grid (#langsung) and citizens'
// questions (#pertanyaan); the focus dialog opens over any of them. Keyboard: 1/2/3/4 views,
// / search, D dense, L layout, T tour, N/P (or →/←) page, F full screen, Esc closes dialogs.

import { logout, whoami } from "./api.js";
import { Alarms } from "./alarms.js";
import { AnnounceDialog } from "./announce.js";
import { Focus } from "./focus.js";
import { KINDS, STATUSES, clockWIB, kecamatanLabel, kindLabel, statusLabel, NO_KECAMATAN } from "./format.js";
import { LiveGrid } from "./grid.js";
import { Overview } from "./overview.js";
import { QuestionsView } from "./questions.js";
import { DiskAlarm } from "./recordings.js";
import { StationStore } from "./store.js";
import { WatchClient } from "./watch.js";

const $ = (id) => document.getElementById(id);
const VIEWS = { ringkasan: "overview", alarm: "alarms", langsung: "live", pertanyaan: "questions" };
const LINK_TEXT = {
  connecting: "Menghubungkan…",
  open: "Tersambung",
  closed: "Terputus — menyambung ulang…",
  unauthorised: "Sesi berakhir",
};

async function main() {
  const me = await whoami();
  if (!me.operator) {
    location.assign("/login?next=/wall");
    return;
  }
  $("operator").textContent = me.operator;

  const store = new StationStore();
  const announce = new AnnounceDialog({ store });
  let view = "overview";
  let focusOpen = false;

  const updateGridActivity = () => grid.setActive(view === "live" && !focusOpen && !document.hidden);
  const focus = new Focus({
    store,
    announce,
    onOpenChange: (open) => {
      focusOpen = open;
      updateGridActivity();
    },
  });
  const open = (id) => focus.open(id);
  const overview = new Overview({ store, root: $("groups"), onOpen: open });
  const grid = new LiveGrid({ store, root: $("live-grid"), onOpen: open, onChange: renderGridBar });
  const alarms = new Alarms({
    store,
    list: $("alarm-list"),
    empty: $("alarm-empty"),
    badge: $("alarm-badge"),
    operator: me.operator,
    onOpen: open,
    soundToggle: $("alarm-sound"),
  });
  const questions = new QuestionsView({ store });
  new DiskAlarm($("disk-alarm")).start();

  // Counters and filters

  const counterButtons = [...document.querySelectorAll("#counters button")];
  let countersFrame = 0;
  const renderCounters = () => {
    countersFrame = 0;
    const counts = store.counts();
    for (const button of counterButtons) {
      button.querySelector("b").textContent = String(counts[button.dataset.status] || 0);
    }
  };
  overview.onFilterChange = () => {
    const [shown, total] = overview.shown();
    $("shown-count").textContent = shown === total ? `${total} stasiun` : `${shown} dari ${total} stasiun`;
  };
  store.subscribe((change) => {
    if (change.reset) fillFilterOptions(store);
    if (!countersFrame) countersFrame = requestAnimationFrame(renderCounters);
  });
  for (const button of counterButtons) {
    button.addEventListener("click", () => {
      const status = $("filter-status").value === button.dataset.status ? "" : button.dataset.status;
      $("filter-status").value = status;
      overview.setFilter({ status });
      showView("overview");
    });
  }
  fillStaticOptions();
  $("search").addEventListener("input", (e) => overview.setFilter({ text: e.target.value.trim() }));
  $("filter-kecamatan").addEventListener("change", (e) => overview.setFilter({ kecamatan: e.target.value }));
  $("filter-kind").addEventListener("change", (e) => overview.setFilter({ kind: e.target.value }));
  $("filter-status").addEventListener("change", (e) => overview.setFilter({ status: e.target.value }));
  $("group-by").addEventListener("change", (e) => overview.setGroupBy(e.target.value));
  const DENSE_KEY = "jaga.wall.dense";
  const setDense = (dense) => {
    $("dense").checked = dense;
    overview.setDense(dense);
    localStorage.setItem(DENSE_KEY, dense ? "1" : "");
  };
  $("dense").addEventListener("change", (e) => setDense(e.target.checked));
  setDense(localStorage.getItem(DENSE_KEY) === "1");
  $("filters").addEventListener("submit", (e) => e.preventDefault());

  // Alarms

  $("ack-all").addEventListener("click", () => alarms.acknowledgeAll());

  // Live grid controls

  function renderGridBar({ page, pages, live, size, tour }) {
    $("page-label").textContent = `Halaman ${page + 1}/${pages}`;
    $("live-count").textContent = `${live} stasiun live`;
    $("live-empty").hidden = live > 0;
    $("tour").setAttribute("aria-pressed", String(tour));
    for (const b of document.querySelectorAll("[data-layout]")) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.layout) === size));
    }
  }
  for (const b of document.querySelectorAll("[data-layout]")) {
    b.addEventListener("click", () => grid.setLayout(Number(b.dataset.layout)));
  }
  $("page-prev").addEventListener("click", () => grid.nextPage(-1));
  $("page-next").addEventListener("click", () => grid.nextPage(1));
  $("tour").addEventListener("click", () => grid.setTour(!grid.tour.on, Number($("tour-seconds").value)));
  $("tour-seconds").addEventListener("change", (e) => grid.setTour(grid.tour.on, Number(e.target.value)));

  // Views

  function showView(name) {
    view = name;
    for (const [hash, v] of Object.entries(VIEWS)) {
      $(`view-${v}`).hidden = v !== name;
      document.querySelector(`.tab[data-view="${v}"]`).setAttribute("aria-current", v === name ? "page" : "false");
      if (v === name && location.hash !== `#${hash}`) history.replaceState(null, "", `#${hash}`);
    }
    updateGridActivity();
  }
  const fromHash = () => showView(VIEWS[location.hash.slice(1)] || "overview");
  window.addEventListener("hashchange", fromHash);
  document.addEventListener("visibilitychange", updateGridActivity);
  fromHash();

  // Header

  $("announce-all").addEventListener("click", () => announce.open());
  $("logout").addEventListener("click", async () => {
    try {
      await logout();
    } finally {
      location.assign("/login?next=/wall");
    }
  });
  const tick = () => { $("clock").textContent = clockWIB(Date.now() / 1000); };
  tick();
  setInterval(tick, 10000);

  // Keyboard

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || isTyping(event.target)) return;
    if (focus.isOpen || $("announce").open) return; // dialogs handle their own keys (Esc, Space)
    const key = event.key.toLowerCase();
    const actions = {
      1: () => showView("overview"),
      2: () => showView("alarms"),
      3: () => showView("live"),
      4: () => showView("questions"),
      "/": () => { showView("overview"); $("search").focus(); },
      d: () => { showView("overview"); setDense(!overview.dense); },
      l: () => { showView("live"); grid.cycleLayout(); },
      t: () => { showView("live"); grid.setTour(!grid.tour.on, Number($("tour-seconds").value)); },
      n: () => grid.nextPage(1),
      arrowright: () => grid.nextPage(1),
      p: () => grid.nextPage(-1),
      arrowleft: () => grid.nextPage(-1),
      f: () => (document.fullscreenElement ? document.exitFullscreen() : document.documentElement.requestFullscreen()),
    };
    const action = actions[key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  // The feed

  const watch = new WatchClient({
    seq: () => (store.ready ? store.seq : 0),
    onMessage: (message) => (message.t === "question" ? questions.apply(message.q) : store.apply(message)),
    onState: (state) => {
      if (state === "open") questions.load(); // again at every reconnect: events missed meanwhile
      $("link-state").textContent = LINK_TEXT[state] || state;
      $("link-state").dataset.state = state;
      if (state === "unauthorised") location.assign("/login?next=/wall");
    },
  });
  watch.start();

  // A handle for the end-to-end tests and for debugging from the console.
  window.jagaWall = { store, grid, focus, alarms, overview, questions };
}

function isTyping(target) {
  return target instanceof HTMLElement && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

function option(value, text) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = text;
  return el;
}

function fillStaticOptions() {
  $("filter-kind").append(...KINDS.map((k) => option(k, kindLabel(k))));
  $("filter-status").append(...STATUSES.map((s) => option(s, statusLabel(s))));
}

function fillFilterOptions(store) {
  const select = $("filter-kecamatan");
  const current = select.value;
  const names = store.kecamatans();
  const hasOpd = store.all().some((s) => !s.kecamatan);
  select.replaceChildren(option("", "Semua"), ...names.map((n) => option(n, n)),
    ...(hasOpd ? [option(NO_KECAMATAN, kecamatanLabel(""))] : []));
  select.value = current;
}

main().catch((error) => {
  console.error("wall: failed to start", error);
  const p = document.createElement("p");
  p.className = "fatal";
  p.textContent = `Dinding gagal dimuat: ${error.message}. Muat ulang halaman.`;
  document.body.prepend(p);
});
