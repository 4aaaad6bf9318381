// The announcement dialog: text to one station, every station of a kecamatan, or all.

import { postJSON } from "./api.js";

export class AnnounceDialog {
  constructor({ store }) {
    this.store = store;
    this.dialog = document.getElementById("announce");
    this.form = document.getElementById("announce-form");
    this.text = document.getElementById("announce-text");
    this.kecamatan = document.getElementById("announce-kecamatan");
    this.stationRow = document.getElementById("announce-station-row");
    this.stationName = document.getElementById("announce-station-name");
    this.result = document.getElementById("announce-result");
    this.send = document.getElementById("announce-send");
    this.stationId = null;
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this._send();
    });
    document.getElementById("announce-cancel").addEventListener("click", () => this.dialog.close());
    this.kecamatan.addEventListener("change", () => this._pick("kecamatan"));
  }

  /** Open for one station (its kecamatan preselected below it), or for a kecamatan / all. */
  open(stationId = null) {
    const station = stationId ? this.store.get(stationId) : null;
    this.stationId = station ? station.id : null;
    this.stationRow.hidden = !station;
    this.stationName.textContent = station ? station.name : "";
    const options = this.store.kecamatans().map((name) => {
      const option = document.createElement("option");
      option.value = name;
      option.textContent = name;
      return option;
    });
    this.kecamatan.replaceChildren(...options);
    if (station && station.kecamatan) this.kecamatan.value = station.kecamatan;
    this._pick(station ? "station" : "kecamatan");
    this.result.textContent = "";
    this.send.disabled = false;
    if (!this.dialog.open) this.dialog.showModal();
    this.text.focus();
  }

  _pick(value) {
    for (const radio of this.form.elements.target) radio.checked = radio.value === value;
  }

  async _send() {
    const text = this.text.value.trim();
    if (!text) return;
    const target = this.form.elements.target.value;
    const body = { text };
    if (target === "station" && this.stationId) body.station = this.stationId;
    else if (target === "kecamatan" && this.kecamatan.value) body.kecamatan = this.kecamatan.value;
    else if (target === "all") body.all = true;
    else {
      this.result.textContent = "Pilih tujuan pengumuman.";
      return;
    }
    this.send.disabled = true;
    this.result.textContent = "Mengirim…";
    try {
      const answer = await postJSON("/api/v1/announce", body);
      this.result.textContent = `Terkirim ke ${answer.targets} stasiun.`;
      this.text.value = "";
    } catch (error) {
      this.result.textContent = `Gagal mengirim: ${error.message}`;
    } finally {
      this.send.disabled = false;
    }
  }
}
