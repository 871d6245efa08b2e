// The one place that talks to the server. Every call goes through `api`: the session cookie
// travels by itself (same origin), changes carry the session's CSRF token, and an expired or
// missing login goes back to /login. The notifier's and ingest's APIs are reached through
// reports' gateway (/notifier/v1/…, /ingest/v1/…), so the browser never leaves this origin.

export const session = { who: null, csrf: null };

export class ApiError extends Error {
  constructor(status, message, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

function toLogin() {
  const next = encodeURIComponent(location.pathname + location.hash);
  location.assign(`/login?next=${next}`);
}

// Who is logged in (role, branches) and the CSRF token; sends to /login when nobody is.
export async function loadSession() {
  const response = await fetch("/v1/session", { credentials: "same-origin" });
  if (response.status === 401) {
    toLogin();
    return new Promise(() => {}); // the page is leaving
  }
  if (!response.ok) throw new ApiError(response.status, `session: ${response.status}`);
  const body = await response.json();
  session.who = body;
  session.csrf = body.csrf_token || null;
  return body;
}

export async function logout() {
  await api("/v1/session", { method: "DELETE" }).catch(() => {});
  session.who = session.csrf = null;
  location.assign("/login");
}

export async function api(path, { method = "GET", json, body, headers = {} } = {}) {
  const sent = { ...headers };
  if (json !== undefined) sent["Content-Type"] = "application/json";
  if (method !== "GET" && method !== "HEAD" && session.csrf) sent["X-CSRF-Token"] = session.csrf;
  const response = await fetch(path, {
    method,
    credentials: "same-origin",
    headers: sent,
    body: json !== undefined ? JSON.stringify(json) : body,
  });
  if (response.status === 401 && path !== "/v1/session") {
    toLogin();
    return new Promise(() => {});
  }
  if (!response.ok) {
    let detail = `${response.status}`;
    let parsed = null;
    try {
      parsed = await response.json();
      const err = parsed.error || {};
      const problems = (err.problems || []).map((p) => `${p.field}: ${p.reason}`).join("; ");
      detail = problems || err.message || detail;
    } catch (_) { /* not JSON */ }
    throw new ApiError(response.status, detail, parsed);
  }
  return response;
}

export const getJSON = async (path) => (await api(path)).json();
export const sendJSON = async (path, method, json) => {
  const response = await api(path, { method, json });
  return response.status === 204 ? null : response.json();
};

export const notifier = (path) => `/notifier${path}`;
export const ingest = (path) => `/ingest${path}`;

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}
