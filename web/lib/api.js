// The one REST helper of every page. Every failure is thrown as an ApiError with
// `status` (0 when the server could not be reached), `code` (the server's stable
// error code: {"error": {"code", "message"}}, else "network" or "http_<status>") and
// `message` (the server's text, shown as text). JSON in, JSON out; a Blob or File body is
// sent as it is, with its own type; `raw` returns the Response itself (downloads).

import { t } from "../i18n.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const auth = { csrf: null, onUnauthorized: null };

// The logged-in user's CSRF token (from /api/me or /api/login), sent with every write.
export function setCsrf(token) {
  auth.csrf = token || null;
}

// Called on a 401 from any request but the login itself (the page shows its login form).
export function onUnauthorized(fn) {
  auth.onUnauthorized = fn;
}

// quiet: a 401 is only thrown, not reported to onUnauthorized (probes).
export async function api(method, path, body, { raw = false, accept = "application/json", quiet = false } = {}) {
  const headers = { Accept: accept };
  const opts = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET" && method !== "HEAD") {
    if (auth.csrf) headers["X-CSRF-Token"] = auth.csrf;
    if (body instanceof Blob) {
      headers["Content-Type"] = body.type || "application/octet-stream";
      opts.body = body;
    } else {
      headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body || {});
    }
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch {
    throw new ApiError(0, "network", t("common.network_error"));
  }
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    const err = (data && data.error) || {};
    if (res.status === 401 && path !== "/api/login" && !quiet && auth.onUnauthorized) auth.onUnauthorized();
    throw new ApiError(res.status, err.code || "http_" + res.status, err.message || "HTTP " + res.status);
  }
  if (raw) return res;
  if (res.status === 204 || method === "HEAD") return null;
  return res.json().catch(() => null);
}

// An error box: the message as text, with the stable code in small print.
export function showError(box, err) {
  if (!err) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const msg = document.createElement("span");
  msg.textContent = err.message || String(err);
  const nodes = [msg];
  if (err.code) {
    const code = document.createElement("span");
    code.className = "code";
    code.dataset.testid = "error-code";
    code.textContent = t("common.error_code", { code: err.code });
    nodes.push(code);
  }
  box.replaceChildren(...nodes);
  box.dataset.code = err.code || "";
  box.hidden = false;
}
