// Agent console: start/stop recording the caller's camera, ask for a snapshot, and see the
// session's photos (snapshots and caller uploads) as soon as they are stored
// (docs/protocol.md, "Recording, snapshots and photos").

import { extend, onLangChange, t, lang } from "./i18n.js";
import STRINGS from "./strings/recording-agent.js";
import * as inspect from "./inspect-agent.js"; // "read" codes and text on a photo

extend(STRINGS);

const el = (id) => document.getElementById(id);

let ctx = null; // {st, api, showError}
let sessionId = null;
let mode = "on_demand";
let busy = false;
let photos = [];
let snapshotKey = null;
let snapshotVars = null;

function fmt(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d) ? "" : new Intl.DateTimeFormat(lang(), { hour: "2-digit", minute: "2-digit", second: "2-digit" }).format(d);
}

function recording() {
  const room = ctx && ctx.st.room;
  return (room && room.recording) || { active: false, started_at: null, warning: null };
}

function render() {
  if (!ctx) return;
  const st = ctx.st;
  const rec = recording();
  const live = !!sessionId && !st.ended;
  const state = el("recording-state");
  state.dataset.state = rec.active ? "on" : "off";
  state.textContent = rec.active ? t("ar.record.on", { time: fmt(rec.started_at) }) : t("ar.record.off");
  el("record-start").hidden = !live || rec.active || mode !== "on_demand";
  el("record-stop").hidden = !live || !rec.active || mode === "always";
  el("record-start").disabled = el("record-stop").disabled = busy;
  const note = el("recording-mode");
  note.hidden = !(live && (mode === "always" || mode === "off"));
  note.dataset.mode = mode;
  note.textContent = mode === "always" ? t("ar.record.always") : mode === "off" ? t("ar.record.disabled") : "";
  const warn = el("recording-warning");
  warn.hidden = !(rec.active && rec.warning);
  warn.dataset.code = rec.warning || "";
  if (rec.warning) warn.textContent = t("ar.record.warning." + rec.warning);
  const camera = !!(st.room && st.room.tracks && st.room.tracks.camera);
  el("take-snapshot").disabled = !live || !camera;
  el("take-snapshot").hidden = !live;
  const snap = el("snapshot-status");
  snap.hidden = !snapshotKey;
  if (snapshotKey) snap.textContent = t(snapshotKey, snapshotVars || undefined);
  renderPhotos();
}

function renderPhotos() {
  const list = el("photos");
  el("photos-card").hidden = !sessionId;
  el("photos-empty").hidden = photos.length > 0;
  const items = photos.map((p) => {
    const li = document.createElement("li");
    li.dataset.testid = "photo";
    li.dataset.photoId = p.id;
    li.dataset.kind = p.kind;
    const a = document.createElement("a");
    a.href = p.url;
    a.target = "_blank";
    a.rel = "noopener";
    const img = document.createElement("img");
    img.src = p.url; // same origin, the login cookie authorises; decrypted on the fly
    img.alt = t("ar.photo." + p.kind);
    img.loading = "lazy";
    a.append(img);
    const meta = document.createElement("span");
    meta.className = "photo-meta";
    meta.textContent = `${t("ar.photo." + p.kind)} · ${fmt(p.taken_at)}`;
    li.append(a, meta, inspect.readButton(sessionId, p, ctx, el("recording-error")));
    return li;
  });
  list.replaceChildren(...items);
}

function addPhoto(photo) {
  if (!photo || !photo.id || photos.some((p) => p.id === photo.id)) return;
  photos.push(photo);
  render();
}

async function action(which) {
  if (!sessionId) return;
  busy = true;
  ctx.showError(el("recording-error"), null);
  render();
  try {
    const data = await ctx.api("POST", `/api/sessions/${encodeURIComponent(sessionId)}/recording`, { action: which });
    if (data && data.recording && data.recording.mode) mode = data.recording.mode;
    // The room message follows; meanwhile show the answer.
    if (ctx.st.room && data && data.recording) {
      ctx.st.room.recording = { ...recording(), active: data.recording.active, started_at: data.recording.started_at };
    }
  } catch (err) {
    ctx.showError(el("recording-error"), err);
  } finally {
    busy = false;
    render();
  }
}

async function snapshot() {
  if (!sessionId) return;
  snapshotKey = "ar.snapshot.asking";
  snapshotVars = null;
  ctx.showError(el("recording-error"), null);
  render();
  try {
    await ctx.api("POST", `/api/sessions/${encodeURIComponent(sessionId)}/snapshot`);
  } catch (err) {
    snapshotKey = null;
    ctx.showError(el("recording-error"), err);
    render();
  }
}

async function load() {
  const id = sessionId;
  try {
    const base = `/api/sessions/${encodeURIComponent(id)}`;
    const [recs, list] = await Promise.all([ctx.api("GET", base + "/recordings"), ctx.api("GET", base + "/photos")]);
    if (id !== sessionId) return;
    mode = (recs && recs.mode) || mode;
    for (const p of (list && list.photos) || []) addPhoto(p);
  } catch (err) {
    console.warn("recordings and photos not loaded", err);
  }
  render();
}

export function init(st, api, showError) {
  ctx = { st, api, showError };
  el("record-start").addEventListener("click", () => action("start"));
  el("record-stop").addEventListener("click", () => action("stop"));
  el("take-snapshot").addEventListener("click", snapshot);
  onLangChange(render);
}

// A session is shown (live or ended): its photos and the service's recording mode.
export function open(id) {
  sessionId = id;
  photos = [];
  inspect.reset();
  snapshotKey = null;
  load();
}

// Its live room's socket.
export function attach(signal) {
  signal.on("photo", (msg) => {
    if (msg.photo && msg.photo.kind === "snapshot") snapshotKey = null;
    addPhoto(msg.photo);
  });
  signal.on("snapshot_failed", (msg) => {
    snapshotKey = "ar.snapshot.failed";
    snapshotVars = { reason: msg.reason || "?" };
    render();
  });
  for (const type of ["welcome", "room", "ended", "close"]) signal.on(type, () => setTimeout(render));
}

export function detach() {
  sessionId = null;
  photos = [];
  inspect.reset();
  snapshotKey = null;
  if (ctx) {
    ctx.showError(el("recording-error"), null);
    render();
  }
}
