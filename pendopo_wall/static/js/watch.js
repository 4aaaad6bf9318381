// The /ws/watch socket (JSON subprotocol), resumed with ?since=SEQ after a drop.
//
// The hub sends a snapshot on connect (or only the deltas after SEQ when it still holds
// them); every message goes to `onMessage`. A closed socket is reopened with a growing
// delay (0.5 s doubling to 10 s); a close the hub means (4401/4403) sends the operator to
// log in again instead.

const SUBPROTOCOL = "jaga.v1.json";
const MAX_DELAY_MS = 10000;

export class WatchClient {
  constructor({ seq, onMessage, onState }) {
    this.seq = seq; // () => last sequence applied, for resuming
    this.onMessage = onMessage;
    this.onState = onState;
    this.delay = 500;
    this.socket = null;
    this.stopped = false;
    this.timer = null;
  }

  start() {
    this.stopped = false;
    this._open();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.socket) this.socket.close(1000, "wall closed");
  }

  _open() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const since = this.seq();
    const query = since ? `?since=${since}` : "";
    const socket = new WebSocket(`${scheme}//${location.host}/ws/watch${query}`, SUBPROTOCOL);
    this.socket = socket;
    this.onState("connecting");
    socket.addEventListener("open", () => {
      this.delay = 500;
      this.onState("open");
    });
    socket.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        console.warn("wall: a watch frame that is not JSON");
        return;
      }
      if (message.t === "error") {
        console.warn("wall: hub says", message.code, message.message);
        return;
      }
      this.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.stopped) return;
      if (event.code === 4401 || event.code === 4403) {
        this.onState("unauthorised");
        return;
      }
      this.onState("closed");
      this.timer = setTimeout(() => this._open(), this.delay);
      this.delay = Math.min(this.delay * 2, MAX_DELAY_MS);
    });
  }
}
