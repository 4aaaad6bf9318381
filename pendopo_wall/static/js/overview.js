// The overview: every station as a tile, grouped and filtered, updated one tile at a time.
//
// Tiles are built once per snapshot and kept in a map by station id. A delta marks its
// station dirty; one animation frame later only the dirty tiles are re-rendered (and moved
// to another group if their group key changed). Thumbnails load only for tiles on screen
// (IntersectionObserver), at most once per THUMB_MIN_S each, so 350 tiles cost little.

import { thumbnailUrl, serverNow } from "./api.js";
import {
  KINDS, STATUSES, duration, kecamatanLabel, kindLabel, stationLabel, statusLabel, NO_KECAMATAN,
} from "./format.js";

const THUMB_MIN_S = 10; // at most one thumbnail reload per tile per this many seconds
const REFRESH_MS = 5000; // ages ("sejak 5 mnt") of visible tiles
const STATUS_RANK = Object.fromEntries(STATUSES.map((s, i) => [s, i]));
const KIND_RANK = Object.fromEntries(KINDS.map((k, i) => [k, i]));

export class Overview {
  constructor({ store, root, onOpen }) {
    this.store = store;
    this.root = root;
    this.onOpen = onOpen;
    this.template = document.getElementById("tile-template");
    this.tiles = new Map(); // id → {el, parts, group, thumbLoadedAt, thumbShown}
    this.groups = new Map(); // key → {el, body, count, title}
    this.visible = new Set(); // ids of tiles on screen
    this.dirty = new Set();
    this.frame = 0;
    this.filter = { text: "", kecamatan: "", kind: "", status: "" };
    this.groupBy = "kecamatan";
    this.dense = false; // chips without thumbnails (no thumbnail requests either)
    this.observer = new IntersectionObserver((entries) => this._seen(entries), { rootMargin: "200px" });
    this.onFilterChange = () => {};
    store.subscribe((change) => this._changed(change));
    root.addEventListener("click", (event) => {
      const tile = event.target.closest(".tile");
      if (tile) this.onOpen(tile.dataset.id);
    });
    root.addEventListener("keydown", (event) => {
      const tile = event.target.closest(".tile");
      if (tile && (event.key === "Enter" || event.key === " ")) {
        event.preventDefault();
        this.onOpen(tile.dataset.id);
      }
    });
    setInterval(() => this._refreshAges(), REFRESH_MS);
  }

  setFilter(patch) {
    Object.assign(this.filter, patch);
    this._applyFilter();
  }

  setDense(dense) {
    this.dense = dense;
    this.root.classList.toggle("dense", dense);
    if (!dense) this._refreshAges();
  }

  setGroupBy(mode) {
    this.groupBy = mode;
    this._rebuild();
  }

  /** How many tiles pass the filter, out of all. */
  shown() {
    let shown = 0;
    for (const tile of this.tiles.values()) if (!tile.el.hidden) shown += 1;
    return [shown, this.tiles.size];
  }

  _changed(change) {
    if (change.reset) {
      this._rebuild();
      return;
    }
    this.dirty.add(change.id);
    if (!this.frame) this.frame = requestAnimationFrame(() => this._flush());
  }

  _flush() {
    this.frame = 0;
    const touchedGroups = new Set();
    for (const id of this.dirty) {
      const tile = this.tiles.get(id);
      const station = this.store.get(id);
      if (!tile || !station) continue;
      this._render(tile, station);
      const key = this._groupKey(station);
      if (key !== tile.group) {
        touchedGroups.add(tile.group);
        this._place(tile, station, key);
      }
      touchedGroups.add(key);
      this._matchOne(tile, station);
      if (this.visible.has(id)) this._maybeLoadThumb(tile, station);
    }
    this.dirty.clear();
    for (const key of touchedGroups) this._countGroup(key);
    this.onFilterChange();
  }

  // Building

  _rebuild() {
    for (const tile of this.tiles.values()) this.observer.unobserve(tile.el);
    const previous = this.tiles;
    this.tiles = new Map();
    this.groups = new Map();
    this.visible.clear();
    this.root.replaceChildren();
    const stations = this.store.all().sort((a, b) => this._compare(a, b));
    for (const station of stations) {
      const tile = previous.get(station.id) || this._create(station);
      tile.group = null;
      this.tiles.set(station.id, tile);
      this._render(tile, station);
      this._place(tile, station, this._groupKey(station), true);
      this.observer.observe(tile.el);
    }
    this._applyFilter();
  }

  _create(station) {
    const el = this.template.content.firstElementChild.cloneNode(true);
    el.dataset.id = station.id;
    const parts = {
      img: el.querySelector("img"),
      none: el.querySelector(".thumb-none"),
      age: el.querySelector(".thumb-age"),
      badge: el.querySelector(".status-badge"),
      since: el.querySelector(".since"),
      name: el.querySelector(".name"),
      sub: el.querySelector(".sub"),
      activity: el.querySelector(".activity"),
    };
    parts.img.addEventListener("load", () => {
      parts.img.hidden = false;
      parts.none.hidden = true;
    });
    parts.img.addEventListener("error", () => {
      parts.img.hidden = true;
      parts.none.hidden = false;
    });
    return { el, parts, group: null, thumbLoadedAt: 0, thumbShown: null };
  }

  _render(tile, station) {
    const { el, parts } = tile;
    el.dataset.status = station.status;
    el.setAttribute("aria-label", `${station.name}, ${stationLabel(station)}`);
    parts.badge.textContent = stationLabel(station);
    el.dataset.media = station.state === "live" ? station.media || "video" : "";
    parts.name.textContent = station.name;
    parts.sub.textContent = [kindLabel(station.kind), station.kecamatan].filter(Boolean).join(" · ");
    const title = station.activity && station.activity.title;
    parts.activity.hidden = !title;
    parts.activity.textContent = title ? `Kegiatan: ${title}` : "";
    this._renderAges(tile, station);
  }

  _renderAges(tile, station) {
    const now = serverNow();
    tile.parts.since.textContent = station.since ? `sejak ${duration(now - station.since)}` : "";
    tile.parts.age.textContent = station.thumb_at ? `${duration(now - station.thumb_at)} lalu` : "";
    tile.parts.age.classList.toggle("stale", !!station.thumb_at && now - station.thumb_at > 120);
  }

  _refreshAges() {
    for (const id of this.visible) {
      const tile = this.tiles.get(id);
      const station = this.store.get(id);
      if (tile && station) {
        this._renderAges(tile, station);
        this._maybeLoadThumb(tile, station);
      }
    }
  }

  // Groups

  _groupKey(station) {
    if (this.groupBy === "kind") return station.kind;
    if (this.groupBy === "status") return station.status;
    return station.kecamatan || NO_KECAMATAN;
  }

  _groupTitle(key) {
    if (this.groupBy === "kind") return kindLabel(key);
    if (this.groupBy === "status") return statusLabel(key);
    return kecamatanLabel(key);
  }

  _groupOrder(a, b) {
    if (this.groupBy === "kind") return (KIND_RANK[a] ?? 9) - (KIND_RANK[b] ?? 9);
    if (this.groupBy === "status") return (STATUS_RANK[a] ?? 9) - (STATUS_RANK[b] ?? 9);
    if (a === NO_KECAMATAN) return 1;
    if (b === NO_KECAMATAN) return -1;
    return a.localeCompare(b, "id");
  }

  _compare(a, b) {
    return a.id.localeCompare(b.id, "en");
  }

  _group(key) {
    let group = this.groups.get(key);
    if (group) return group;
    const el = document.createElement("section");
    el.className = "group";
    el.dataset.key = key;
    const heading = document.createElement("h2");
    const title = document.createElement("span");
    title.textContent = this._groupTitle(key);
    const count = document.createElement("span");
    count.className = "group-count";
    heading.append(title, count);
    const body = document.createElement("div");
    body.className = "tiles";
    el.append(heading, body);
    group = { el, body, count };
    this.groups.set(key, group);
    const after = [...this.groups.keys()].filter((k) => k !== key && this._groupOrder(k, key) > 0)
      .sort((a, b) => this._groupOrder(a, b))[0];
    this.root.insertBefore(el, after !== undefined ? this.groups.get(after).el : null);
    return group;
  }

  /** Put a tile in its group, keeping the group sorted by id. */
  _place(tile, station, key, append = false) {
    const group = this._group(key);
    tile.group = key;
    if (append) {
      group.body.append(tile.el);
      return;
    }
    const next = [...group.body.children].find((el) => el !== tile.el && this._compare(station, { id: el.dataset.id }) < 0);
    group.body.insertBefore(tile.el, next || null);
  }

  _countGroup(key) {
    const group = this.groups.get(key);
    if (!group) return;
    let total = 0, shown = 0, live = 0;
    for (const el of group.body.children) {
      total += 1;
      if (!el.hidden) shown += 1;
      if (el.dataset.status === "live") live += 1;
    }
    if (total === 0) {
      group.el.remove();
      this.groups.delete(key);
      return;
    }
    group.count.textContent = shown === total ? `${live} live / ${total}` : `${shown} dari ${total}`;
    group.el.hidden = shown === 0;
    group.el.style.setProperty("--count", String(shown)); // CSSOM, allowed by the CSP
  }

  // Filtering

  _matches(station) {
    const f = this.filter;
    if (f.kecamatan && (station.kecamatan || NO_KECAMATAN) !== f.kecamatan) return false;
    if (f.kind && station.kind !== f.kind) return false;
    if (f.status && station.status !== f.status) return false;
    if (f.text) {
      const haystack = `${station.name} ${station.id} ${station.kecamatan || ""}`.toLowerCase();
      if (!f.text.toLowerCase().split(/\s+/).every((word) => haystack.includes(word))) return false;
    }
    return true;
  }

  _matchOne(tile, station) {
    tile.el.hidden = !this._matches(station);
  }

  _applyFilter() {
    for (const [id, tile] of this.tiles) this._matchOne(tile, this.store.get(id));
    for (const key of [...this.groups.keys()]) this._countGroup(key);
    this.onFilterChange();
  }

  // Thumbnails, only for tiles on screen

  _seen(entries) {
    for (const entry of entries) {
      const id = entry.target.dataset.id;
      if (entry.isIntersecting) {
        this.visible.add(id);
        const tile = this.tiles.get(id);
        const station = this.store.get(id);
        if (tile && station) {
          this._renderAges(tile, station);
          this._maybeLoadThumb(tile, station);
        }
      } else {
        this.visible.delete(id);
      }
    }
  }

  _maybeLoadThumb(tile, station) {
    if (this.dense || !station.thumb_at || tile.thumbShown === station.thumb_at) return;
    const now = Date.now() / 1000;
    if (tile.thumbShown !== null && now - tile.thumbLoadedAt < THUMB_MIN_S) return;
    tile.thumbShown = station.thumb_at;
    tile.thumbLoadedAt = now;
    tile.parts.img.src = thumbnailUrl(station.id, station.thumb_at);
  }
}
