// The hub's HTTP API, with the operator's CSRF token on every state-changing request.

let csrf = null;
let serverOffset = 0; // hub clock minus ours, in seconds (from the Date header)

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** Who is logged in; remembers the CSRF token and the hub's clock offset. */
export async function whoami() {
  const response = await fetch("/api/v1/auth/me", { credentials: "same-origin", cache: "no-store" });
  noteServerTime(response);
  const body = await response.json();
  csrf = body.csrf || null;
  return body;
}

export function csrfToken() {
  return csrf;
}

/** The hub's current time in epoch seconds, corrected by the offset seen in Date headers. */
export function serverNow() {
  return Date.now() / 1000 + serverOffset;
}

function noteServerTime(response) {
  const header = response.headers.get("Date");
  const at = header ? Date.parse(header) : NaN;
  // The Date header has whole seconds; ignore offsets below that resolution.
  if (Number.isFinite(at)) {
    const offset = at / 1000 - Date.now() / 1000;
    serverOffset = Math.abs(offset) > 2 ? offset : 0;
  }
}

async function failure(response) {
  let code = "http", message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch { /* not JSON */ }
  return new ApiError(response.status, code, message);
}

export async function getJSON(url) {
  const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export async function postJSON(url, body, { keepalive = false } = {}) {
  const response = await fetch(url, {
    method: "POST",
    credentials: "same-origin",
    keepalive,
    headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf || "" },
    body: JSON.stringify(body),
  });
  if (!response.ok) throw await failure(response);
  return response.json();
}

export function stationUrl(id, suffix = "") {
  return `/api/v1/stations/${encodeURIComponent(id)}${suffix}`;
}

export function thumbnailUrl(id, at) {
  return stationUrl(id, "/thumbnail.jpg") + (at ? `?v=${encodeURIComponent(at)}` : "");
}

export async function logout() {
  await postJSON("/api/v1/auth/logout", {});
}
