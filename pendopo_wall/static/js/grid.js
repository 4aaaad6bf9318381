// The live grid: one page of N×N live stations played over WHEP, with a tour.
//
// Only the tiles of the current page have players; a station leaving the page, the grid
// being hidden (another view, the focus dialog, a hidden browser tab) closes them — DELETE
// on the relay, no decoder left running off screen. Changes to the set of live stations are
// folded in at most every RECONCILE_MS, so a flapping station does not reshuffle the page.

import { Player } from "./player.js";

const RECONCILE_MS = 2000;
const LAYOUT_KEY = "jaga.wall.layout";

export class LiveGrid {
  constructor({ store, root, onOpen, onChange }) {
    this.store = store;
    this.root = root;
    this.onOpen = onOpen;
    this.onChange = onChange; // ({page, pages, live, size}) for the toolbar
    this.template = document.getElementById("live-tile-template");
    this.size = Number(localStorage.getItem(LAYOUT_KEY)) || 2;
    this.page = 0;
    this.active = false;
    this.tiles = new Map(); // id → {el, player}
    this.tour = { on: false, seconds: 20, timer: null };
    this.pending = null;
    store.subscribe((change) => this._changed(change));
    root.addEventListener("click", (event) => {
      const tile = event.target.closest(".live-tile");
      if (tile) this.onOpen(tile.dataset.id);
    });
  }

  /** Live stations in a stable order: by kecamatan, then id. */
  liveIds() {
    return this.store.all()
      .filter((s) => s.state === "live")
      .sort((a, b) => (a.kecamatan || "~").localeCompare(b.kecamatan || "~", "id") || a.id.localeCompare(b.id, "en"))
      .map((s) => s.id);
  }

  pages() {
    return Math.max(1, Math.ceil(this.liveIds().length / (this.size * this.size)));
  }

  setActive(active) {
    if (active === this.active) return;
    this.active = active;
    this.render();
  }

  setLayout(size) {
    if (![2, 3, 4].includes(size)) return;
    const first = this.page * this.size * this.size;
    this.size = size;
    localStorage.setItem(LAYOUT_KEY, String(size));
    this.page = Math.floor(first / (size * size)); // keep the first station on screen
    this.render();
  }

  cycleLayout() {
    this.setLayout(this.size === 4 ? 2 : this.size + 1);
  }

  nextPage(step = 1) {
    const pages = this.pages();
    this.page = (this.page + step + pages) % pages;
    this.render();
    if (this.tour.on) this._scheduleTour(); // a manual turn restarts the tour's clock
  }

  setTour(on, seconds = this.tour.seconds) {
    this.tour.on = on;
    this.tour.seconds = seconds;
    this._scheduleTour();
    this._report();
  }

  _scheduleTour() {
    clearInterval(this.tour.timer);
    this.tour.timer = null;
    if (this.tour.on) this.tour.timer = setInterval(() => this.active && this.nextPage(), this.tour.seconds * 1000);
  }

  _changed(change) {
    if (change.reset) return this.render();
    if (change.kind !== "presence") return;
    const station = this.store.get(change.id);
    const tile = this.tiles.get(change.id);
    if (tile && station && station.state === "live") tile.player.kick();
    if ((change.previous.state === "live") !== (station && station.state === "live")) {
      if (!this.pending) this.pending = setTimeout(() => { this.pending = null; this.render(); }, RECONCILE_MS);
    }
  }

  /** Make the DOM and the players match the current page. */
  render() {
    const live = this.liveIds();
    const perPage = this.size * this.size;
    const pages = Math.max(1, Math.ceil(live.length / perPage));
    if (this.page >= pages) this.page = pages - 1;
    const wanted = this.active ? live.slice(this.page * perPage, (this.page + 1) * perPage) : [];
    for (const [id, tile] of this.tiles) {
      if (!wanted.includes(id)) {
        tile.player.stop();
        tile.el.remove();
        this.tiles.delete(id);
      }
    }
    for (const id of wanted) if (!this.tiles.has(id)) this.tiles.set(id, this._create(id));
    this.root.replaceChildren(...wanted.map((id) => this.tiles.get(id).el));
    this.root.dataset.size = String(this.size);
    this._report(live.length, pages);
  }

  _create(id) {
    const el = this.template.content.firstElementChild.cloneNode(true);
    el.dataset.id = id;
    const station = this.store.get(id);
    el.querySelector(".name").textContent = station ? station.name : id;
    const player = new Player({
      stationId: id,
      video: el.querySelector("video"),
      stateEl: el.querySelector(".media-state"),
      isLive: () => this.store.get(id)?.state === "live",
    });
    player.start();
    return { el, player };
  }

  _report(live = this.liveIds().length, pages = this.pages()) {
    this.onChange({ page: this.page, pages, live, size: this.size, tour: this.tour.on });
  }

  /** For tests and the status line: frames decoded per open tile. */
  async stats() {
    const out = {};
    for (const [id, tile] of this.tiles) out[id] = await tile.player.framesDecoded();
    return out;
  }
}
