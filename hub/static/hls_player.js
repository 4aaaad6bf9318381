// An HLS viewer: the watch page's second way to play a station, when WebRTC is refused (the
// viewer caps), fails (ICE, or no media in time), or the viewer picks it (docs/portal.md).
// The hub remuxes a station's H.264 into low-latency HLS (fMP4 parts) without transcoding;
// `GET /hls/{station}/index.m3u8` is the LL-HLS playlist (docs/http-api.md).
//
// Order of work in start(): the playlist is fetched once by the page itself first, so that the
// hub's refusals arrive as JSON with a code (409 hls_needs_h264: a VP8 station, WebRTC only;
// 404 not_live; 503 hls_starting with Retry-After: wait, then ask again) before a single byte
// of hls.js is loaded. Only then does the page load hls.js (~117 KB gzipped, a module in
// vendor/, fetched once per page and only by viewers who need HLS), or hand the URL to the
// browser where it plays HLS itself and has no MSE (Safari on iPhone).

const HLS_JS = "/static/vendor/hls.light.min.js"; // hls.js, light ESM build: vendor/README.md
const STARTING_WAIT_MS = 30000; // how long start() waits out 503 hls_starting before giving up

export class HlsError extends Error {
  constructor(status, code, message, retryAfterS) {
    super(message || `HLS HTTP ${status}${code ? ` ${code}` : ""}`);
    this.status = status;
    this.code = code || "";
    this.retryAfterS = retryAfterS || 0;
  }
}

let hlsModule = null;
function loadHlsJs() {
  if (!hlsModule) {
    hlsModule = import(HLS_JS).then((module) => module.default);
    hlsModule.catch(() => { hlsModule = null; }); // a failed download may be tried again
  }
  return hlsModule;
}

// The browser's own HLS, only where there is no MSE at all: Safari on iPhone. Chromium answers
// "maybe" for HLS too (desktop and Android), so canPlayType alone would send it down a path
// that plays nothing there; wherever MSE exists, hls.js plays the low-latency parts itself.
export function usesNativeHls(video) {
  return !("MediaSource" in window) && video.canPlayType("application/vnd.apple.mpegurl") !== "";
}

function retryAfterS(response) {
  const value = Number(response.headers.get("Retry-After"));
  return Number.isFinite(value) && value > 0 ? value : 0;
}

const pause = (ms) => new Promise((resolve) => { setTimeout(resolve, ms); });

export class HlsPlayer {
  constructor(url, video, onState) {
    this.url = url;
    this.video = video;
    this.onState = onState || (() => {});
    this.hls = null;
    this.native = false;
    this.recovered = false;
    this.runs = 0; // as WhepPlayer: a start() that was stopped meanwhile gives up
    this.nativeError = () => this.onState("failed");
  }

  async start() {
    const run = ++this.runs;
    await this.available(run);
    if (run !== this.runs) return;
    if (usesNativeHls(this.video)) {
      this.native = true;
      this.video.addEventListener("error", this.nativeError);
      this.video.src = this.url;
      this.video.play().catch(() => {});
      return;
    }
    const Hls = await loadHlsJs();
    if (run !== this.runs) return;
    if (!Hls.isSupported()) throw new HlsError(0, "unsupported", "this browser cannot play HLS");
    const hls = new Hls({
      lowLatencyMode: true, // parts and blocking reloads: the playhead sits PART-HOLD-BACK from live
      maxLiveSyncPlaybackRate: 1.5, // after a stall, catch up by playing faster rather than stay late
      backBufferLength: 10, // a phone keeps 10 s behind the playhead, not the default's minutes
      enableWorker: false, // the CSP allows no blob: worker; fMP4 needs only light parsing anyway
    });
    this.hls = hls;
    hls.on(Hls.Events.ERROR, (event, data) => {
      if (!data.fatal || this.hls !== hls) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR && !this.recovered) {
        this.recovered = true; // one decoder/buffer hiccup is recovered in place, a second is a failure
        hls.recoverMediaError();
        return;
      }
      this.onState("failed");
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => { this.video.play().catch(() => {}); });
    hls.loadSource(this.url);
    hls.attachMedia(this.video);
  }

  // Resolves once the playlist answers 200; throws HlsError for a refusal. 503 hls_starting
  // (the hub just began packaging: no part yet) is waited out here, up to STARTING_WAIT_MS.
  async available(run) {
    const deadline = Date.now() + STARTING_WAIT_MS;
    for (;;) {
      const response = await fetch(this.url, { cache: "no-store" });
      if (response.ok) return;
      let code = "";
      try { code = ((await response.json()).error || {}).code || ""; } catch { /* not JSON: a proxy's page */ }
      const wait = retryAfterS(response);
      if (response.status !== 503 || code !== "hls_starting" || Date.now() > deadline || run !== this.runs) {
        throw new HlsError(response.status, code, "", wait);
      }
      await pause(Math.min(Math.max(wait, 0.5), 2) * 1000);
      if (run !== this.runs) return;
    }
  }

  stop() {
    this.runs++;
    if (this.hls) { this.hls.destroy(); this.hls = null; } // detaches: the video's src goes
    if (this.native) {
      this.native = false;
      this.video.removeEventListener("error", this.nativeError);
      this.video.removeAttribute("src");
      this.video.load();
    }
  }

  // How far behind the station the picture is, in ms: now minus the program date-time (the
  // hub's clock when the station's media arrived) at the playhead. It trusts the phone's
  // clock; where the playlist has no date-time, hls.js's distance to the live edge stands in.
  delayMs() {
    let shown = null;
    if (this.hls) {
      const date = this.hls.playingDate;
      if (date) shown = date.getTime();
      else if (Number.isFinite(this.hls.latency) && this.hls.latency > 0) return Math.round(this.hls.latency * 1000);
    } else if (this.native && typeof this.video.getStartDate === "function") {
      const start = this.video.getStartDate().getTime(); // Safari: the playlist's first date-time
      if (Number.isFinite(start)) shown = start + this.video.currentTime * 1000;
    }
    if (shown === null || !Number.isFinite(shown) || this.video.currentTime === 0) return null;
    return Math.max(0, Math.round(Date.now() - shown));
  }
}
