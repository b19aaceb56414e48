// Ops console (/ops): live rooms from server-sent events (GET /api/ops/stream), ending a
// room, a supervisor's silent watch (/ws/watch/{room}, docs/protocol.md). Plain ES module,
// no build step, strict CSP (no inline script or style). docs/ops.md lists the test ids.
// Language choice and lookup are the shared web/i18n.js; this page adds its own strings.

import * as i18n from "./i18n.js";
import STRINGS from "./strings/ops.js";
import { staffShell } from "./lib/staff-shell.js";
import { state } from "./ops-state.js";
import { num, rate, pct, duration, mb } from "./ops-format.js";
import { fillWarnings, renderRooms } from "./ops-rooms.js";
import { setWatchState, stopWatch } from "./ops-watch.js";

i18n.extend(STRINGS);
const t = i18n.t;

const $ = (id) => document.getElementById(id);

// What i18n.apply() cannot redo by itself after a language switch.
function relabel() {
  document.title = t("title");
  setStream(document.querySelector('[data-testid="ops-stream-state"]').dataset.state);
  if (state.snapshot) render(state.snapshot);
  if (state.watch) setWatchState(state.watch.state);
}

// --- the stream ---------------------------------------------------------------------------

function setStream(s) {
  const el = document.querySelector('[data-testid="ops-stream-state"]');
  el.dataset.state = s;
  $("stream-text").textContent = t(`stream.${s}`);
}

function stopStream() {
  clearTimeout(state.retryTimer);
  if (state.source) state.source.close();
  state.source = null;
}

function startStream() {
  stopStream();
  setStream(state.snapshot ? "reconnecting" : "idle");
  const es = new EventSource("/api/ops/stream");
  state.source = es;
  es.addEventListener("open", () => setStream("live"));
  es.addEventListener("snapshot", (ev) => {
    setStream("live");
    try {
      render(JSON.parse(ev.data));
    } catch (err) {
      console.error("ops: bad snapshot", err);
    }
  });
  es.addEventListener("error", () => {
    setStream("reconnecting");
    if (es.readyState === EventSource.CLOSED) {
      // Refused (logged out, no longer allowed) or the server went away: ask again.
      state.retryTimer = setTimeout(boot, 3000);
    }
  });
}

// --- rendering ----------------------------------------------------------------------------

function setStat(testid, value, sub = "", level = "") {
  const el = document.querySelector(`[data-testid="${testid}"]`);
  el.querySelector(".stat-value").textContent = value;
  el.querySelector(".stat-sub").textContent = sub;
  el.dataset.level = level;
}

function render(snap) {
  state.snapshot = snap;
  const tot = snap.totals;
  setStat(
    "total-rooms",
    num(tot.rooms_active),
    tot.rooms_waiting ? t("totals.waiting", { n: tot.rooms_waiting }) : "",
  );
  setStat("total-participants", num(tot.participants));
  setStat("total-in", rate(tot.in_kbps));
  setStat("total-out", rate(tot.out_kbps));
  setStat(
    "total-cpu",
    `${num(tot.cpu_percent, 0)} %`,
    tot.event_loop_lag_ms !== undefined ? t("totals.lag", { ms: num(tot.event_loop_lag_ms, 0) }) : "",
    tot.cpu_percent > 80 ? "warn" : "",
  );
  setStat("total-memory", mb(tot.memory_bytes));

  const today = snap.today;
  setStat("today-sessions", num(today.sessions), t("today.connected", { n: today.connected }));
  setStat(
    "today-median-connect",
    today.median_connect_s === null ? t("room.none") : duration(today.median_connect_s),
  );
  const dropped = Object.entries(today.dropped_at)
    .filter(([, n]) => n > 0)
    .map(([step, n]) => `${t(`drop.${step}`)}: ${n}`)
    .join(" · ");
  setStat(
    "today-never-connected",
    today.never_connected_share === null ? t("room.none") : pct(today.never_connected_share),
    [t("today.ofFinished", { n: today.never_connected, total: today.finished }), dropped]
      .filter(Boolean)
      .join(" — "),
    today.never_connected_share > 0.3 ? "warn" : "",
  );
  const wh = snap.webhooks;
  if (!wh.enabled) setStat("webhooks-status", t("webhooks.off"));
  else {
    const failing = wh.queued > 0 && wh.last_error;
    setStat(
      "webhooks-status",
      failing ? t("webhooks.failing") : t("webhooks.ok"),
      t("webhooks.detail", {
        delivered: wh.delivered,
        queued: wh.queued,
        failed: wh.failed_attempts,
      }),
      failing || wh.given_up || wh.dropped ? "warn" : "",
    );
  }
  setStat("recording-status", t(`recording.${snap.recording.state}`));
  fillWarnings($("ops-warnings"), snap.warnings);

  renderRooms(snap.rooms);
  $("room-count").textContent = String(snap.rooms.length);
  $("room-empty").hidden = snap.rooms.length > 0;
}

// --- wiring -------------------------------------------------------------------------------

const shell = staffShell({
  page: "ops",
  role: "supervisor",
  onConsole(user) {
    state.me = user;
    startStream();
  },
  onLeave() {
    stopWatch();
    stopStream();
  },
  onLogout() {
    state.me = null;
    state.snapshot = null;
  },
});
const boot = shell.boot;

$("watch-stop").addEventListener("click", stopWatch);
i18n.onLangChange(relabel);
i18n.init();
relabel();
boot();
