// Small signalling client shared by the caller page, the agent console and the ops watch.
// Speaks docs/protocol.md: JSON frames over one WebSocket with subprotocol
// "callassist.v1". It reconnects by itself with backoff (0.25, 0.5, 1, 2, 4 s, then every
// 5 s; each ±20 % jittered so that the pages of a dead node do not come back in step),
// pings every 10 s and treats 25 s without any frame from the server as a dead
// connection (mobile networks often drop a TCP connection silently).

import { api } from "./lib/api.js";

export const PROTOCOL = "callassist.v1";

// Close codes after which reconnecting makes no sense.
const FINAL_CODES = new Set([
  4000, // room ended (protocol)
  4001, // replaced by a newer connection of the same participant
]);

const PING_EVERY_MS = 10000;
const DEAD_AFTER_MS = 25000;
// The first retries are quick: after a node fails (docs/cluster.md, "When a part fails")
// the load balancer and the cluster need about a second to route around it, and the
// pages should be back as soon as they do. The cap keeps a page from hammering a service
// that is down: at most one attempt (plus its HTTP probe) every 5 s.
const BACKOFF_MIN_MS = 250;
const BACKOFF_MAX_MS = 5000;

export function wsUrl(path) {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return scheme + "//" + location.host + path;
}

// GET the WebSocket URL without upgrading and read the JSON error, if any. Only
// "room_ended" and "not_authenticated" are trusted: a plain GET cannot carry the
// subprotocol header (Sec-* headers are forbidden to scripts), so a server may answer
// it with "version_unsupported" whatever the real reason is.
export async function probeUpgradeUrl(path) {
  try {
    await api("GET", path, undefined, { quiet: true });
    return null;
  } catch (err) {
    if (err.status === 0) throw err; // network down: keep retrying
    if (err.code !== "room_ended" && err.code !== "not_authenticated") return null;
    return { status: err.status, code: err.code, message: err.message };
  }
}

export class Signal {
  // path: e.g. "/ws/caller". Events (on(name, fn)): "open", "close" ({code, reason,
  // final}), "refused" ({status, code, message}: the server refused the upgrade with a
  // JSON error), "message" (every frame), and each message "type" ("welcome", ...).
  // probe: optional async () => refusal|null, called when an upgrade failed before
  // opening, to learn whether retrying makes sense (default: probeUpgradeUrl(path)).
  constructor(path, { probe } = {}) {
    this.path = path;
    this.probeFn = probe || (() => probeUpgradeUrl(path));
    this.ws = null;
    this.handlers = new Map();
    this.backoff = BACKOFF_MIN_MS;
    this.retryTimer = null;
    this.pingTimer = null;
    this.lastSeen = 0;
    this.stopped = false;
    this.everOpened = false; // this socket attempt reached "open"
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }

  emit(type, arg) {
    for (const fn of this.handlers.get(type) || []) {
      try {
        fn(arg);
      } catch (err) {
        console.error("handler for", type, "failed", err);
      }
    }
  }

  get isOpen() {
    return !!this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    this.stopped = false;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.detach();
    let ws;
    try {
      ws = new WebSocket(wsUrl(this.path), [PROTOCOL]);
    } catch (err) {
      console.error("WebSocket failed", err);
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.everOpened = false;
    ws.onopen = () => {
      this.everOpened = true;
      this.backoff = BACKOFF_MIN_MS;
      this.lastSeen = Date.now();
      this.startPing();
      this.emit("open");
    };
    ws.onmessage = (ev) => {
      this.lastSeen = Date.now();
      if (typeof ev.data !== "string") return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn("ignoring non-JSON frame");
        return;
      }
      if (!msg || typeof msg.type !== "string") return;
      // The room moves to another node (docs/protocol.md, "moved"): the close that
      // follows is reconnected at once, not after the backoff.
      if (msg.type === "moved") this.backoff = BACKOFF_MIN_MS / 5;
      this.emit("message", msg);
      this.emit(msg.type, msg);
    };
    ws.onclose = (ev) => this.handleClose(ws, ev.code, ev.reason);
    // onerror is always followed by onclose; nothing to do here.
    ws.onerror = () => {};
  }

  // Close handling: final codes stop; an upgrade that never opened is probed over
  // HTTP to learn why (the browser hides the HTTP status of a refused upgrade).
  async handleClose(ws, code, reason) {
    if (ws !== this.ws) return;
    const opened = this.everOpened;
    this.detach();
    const final = FINAL_CODES.has(code);
    if (!opened && !this.stopped) {
      const refusal = await this.probe();
      if (refusal) {
        this.emit("refused", refusal);
        if (this.stopped) return; // a handler decided this is final
      }
    }
    this.emit("close", { code, reason, final, opened });
    if (!final && !this.stopped) this.scheduleRetry();
  }

  async probe() {
    try {
      return await this.probeFn();
    } catch {
      return null; // network down: keep retrying
    }
  }

  scheduleRetry() {
    if (this.stopped || this.retryTimer) return;
    const delay = this.backoff * (0.8 + Math.random() * 0.4);
    this.backoff = Math.min(this.backoff * 2, BACKOFF_MAX_MS);
    this.retryTimer = setTimeout(() => {
      this.retryTimer = null;
      this.connect();
    }, delay);
  }

  startPing() {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastSeen > DEAD_AFTER_MS) {
        // Dead connection: a close handshake would hang, so drop it and start over.
        const ws = this.ws;
        this.detach();
        try {
          ws.close(4100, "client_timeout");
        } catch {
          /* already closing */
        }
        this.emit("close", { code: 4100, reason: "client_timeout", final: false, opened: true });
        this.scheduleRetry();
        return;
      }
      this.send({ type: "ping" });
    }, PING_EVERY_MS);
  }

  // Forget the current socket: later events from it are ignored.
  detach() {
    clearInterval(this.pingTimer);
    this.pingTimer = null;
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onerror = null;
      ws.onclose = null;
      if (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN) {
        try {
          ws.close(1000);
        } catch {
          /* ignore */
        }
      }
    }
  }

  send(msg) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify(msg));
    return true;
  }

  // Reconnect now (e.g. the page became visible again), skipping the backoff wait.
  kick() {
    if (this.stopped || this.isOpen) return;
    if (this.ws && this.ws.readyState === WebSocket.CONNECTING) return;
    this.backoff = BACKOFF_MIN_MS;
    this.connect();
  }

  close() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    this.detach();
  }
}
