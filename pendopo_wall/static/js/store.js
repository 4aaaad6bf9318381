// Every station the operator may see, kept current from /ws/watch messages.
//
// The store is plain data: `apply(message)` folds one watch message in and tells listeners
// what changed — `{reset: true}` after a snapshot, else `{id, kind, previous}` for one
// station — so views can touch only the tiles that changed.

import { STATUSES } from "./format.js";

export class StationStore {
  constructor() {
    this.stations = new Map();
    this.seq = 0;
    this.ready = false;
    this.listeners = new Set();
  }

  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  get(id) {
    return this.stations.get(id);
  }

  all() {
    return [...this.stations.values()];
  }

  apply(message) {
    if (message.t === "snapshot") {
      this.stations = new Map();
      for (const station of message.stations || []) this.stations.set(station.id, { ...station });
      this.seq = message.seq || 0;
      this.ready = true;
      this._emit({ reset: true });
      return;
    }
    if (message.t === "thumbs") { // new thumbnails, gathered by the hub (no seq): one change per station
      for (const [id, at] of Object.entries(message.at || {})) {
        const station = this.stations.get(id);
        if (!station) continue;
        const previous = { status: station.status, state: station.state, since: station.since };
        station.thumb_at = at;
        this._emit({ id, kind: "thumb", previous });
      }
      return;
    }
    if (typeof message.seq === "number") {
      if (message.seq <= this.seq) return; // a replay we already hold
      this.seq = message.seq;
    }
    const station = this.stations.get(message.id);
    if (!station) return;
    const previous = { status: station.status, state: station.state, since: station.since };
    if (message.t === "presence") {
      station.state = message.state;
      station.status = message.status;
      station.since = message.since;
      station.reason = message.reason ?? null;
      station.media = message.media ?? "";
    } else if (message.t === "activity") {
      station.activity = message.title ? { title: message.title, since: message.since } : null;
    } else {
      return;
    }
    this._emit({ id: station.id, kind: message.t, previous });
  }

  counts() {
    const counts = Object.fromEntries(STATUSES.map((s) => [s, 0]));
    for (const station of this.stations.values()) {
      counts[station.status] = (counts[station.status] || 0) + 1;
    }
    return counts;
  }

  kecamatans() {
    const names = new Set();
    for (const station of this.stations.values()) if (station.kecamatan) names.add(station.kecamatan);
    return [...names].sort((a, b) => a.localeCompare(b, "id"));
  }

  _emit(change) {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        console.error("wall: a view failed to apply a change", error);
      }
    }
  }
}
