// ICE servers from a WHIP/WHEP endpoint (RFC 9725 §4.6): an OPTIONS on the endpoint answers
// with one `Link: <url>; rel="ice-server"` per server, TURN ones with `username`, `credential`
// and `credential-type="password"` minted for this request (docs/operations.md "TURN"). Asked
// right before each session, so TURN credentials are always fresh. Used by the portal's watch
// page (whep.js) and the wall (/wall/static/js/rtc.js).

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+/;

// Split a Link field value at the commas between links (not inside <…> or "…").
function splitLinks(value) {
  const parts = [];
  let current = "";
  let inUrl = false;
  let inQuotes = false;
  for (let i = 0; i < value.length; i++) {
    const c = value[i];
    if (inQuotes) {
      if (c === "\\" && i + 1 < value.length) { current += c + value[++i]; continue; }
      if (c === '"') inQuotes = false;
    } else if (inUrl) {
      if (c === ">") inUrl = false;
    } else if (c === "<") {
      inUrl = true;
    } else if (c === '"') {
      inQuotes = true;
    } else if (c === ",") {
      parts.push(current);
      current = "";
      continue;
    }
    current += c;
  }
  parts.push(current);
  return parts.map((part) => part.trim()).filter(Boolean);
}

// One link's parameters (`; name=value` or `; name="quoted"`), or null when malformed.
function linkParams(rest) {
  const params = {};
  let text = rest;
  while (text.trim()) {
    const semicolon = text.match(/^\s*;\s*/);
    if (!semicolon) return null;
    text = text.slice(semicolon[0].length);
    const name = text.match(TOKEN);
    if (!name) return null;
    text = text.slice(name[0].length).replace(/^\s*/, "");
    let value = "";
    if (text.startsWith("=")) {
      text = text.slice(1).replace(/^\s*/, "");
      const quoted = text.match(/^"((?:[^"\\]|\\.)*)"/);
      const bare = text.match(/^[^;,\s]*/);
      if (quoted) {
        value = quoted[1].replace(/\\(.)/g, "$1");
        text = text.slice(quoted[0].length);
      } else {
        value = bare[0];
        text = text.slice(value.length);
      }
    }
    const key = name[0].toLowerCase();
    if (!(key in params)) params[key] = value;
  }
  return params;
}

/**
 * The `rel="ice-server"` links of a Link header value as RTCIceServer dictionaries
 * (`{urls, username?, credential?}`); anything malformed is left out.
 */
export function parseIceServerLinks(header) {
  if (!header) return [];
  const servers = [];
  for (const link of splitLinks(header)) {
    const match = link.match(/^<([^<>\s]*)>([\s\S]*)$/);
    if (!match || !/^(stuns?|turns?):/.test(match[1])) continue;
    const params = linkParams(match[2]);
    if (!params || !(params.rel || "").toLowerCase().split(/\s+/).includes("ice-server")) continue;
    if ((params["credential-type"] || "password") !== "password") continue;
    const server = { urls: match[1] };
    if ("username" in params) server.username = params.username;
    if ("credential" in params) server.credential = params.credential;
    servers.push(server);
  }
  return servers;
}

/**
 * OPTIONS the endpoint and return its ICE servers; [] when it cannot be asked (the hub's own
 * candidates still serve every viewer whose network passes UDP).
 */
export async function fetchIceServers(endpoint, init = {}) {
  try {
    const response = await fetch(endpoint, { ...init, method: "OPTIONS", cache: "no-store" });
    return response.ok ? parseIceServerLinks(response.headers.get("Link")) : [];
  } catch {
    return [];
  }
}
