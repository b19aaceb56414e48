// Agent side of the visual-assist toolkit (docs/protocol.md, "Toolkit"): pointer and
// drawing tools on the caller's camera, freeze (the still is taken here, from the video
// this page receives, so both sides show the same pixels), annotated snapshots, camera
// requests, low-data and photo-burst modes, pushes (links, images, tutorials), chat and
// the link quality. agent.js calls init() once, attach(signal) per session socket and
// detach() when the session closes.

import "./toolkit-strings.js";
import "./toolkit-agent-strings.js";
import { t, lang, onLangChange } from "./i18n.js";
import { Overlay, drawMark, frameSize } from "./overlay.js";
import { Chat } from "./chat.js";
import { Quality, showQuality } from "./netq.js";

const el = (id) => document.getElementById(id);
const tid = (id) => document.querySelector(`[data-testid="${id}"]`);
const SEND_EVERY_MS = 90; // stroke updates while drawing (the server allows 20/s)
const POINTER_EVERY_MS = 40; // pointer moves (the server keeps at most 30/s)
const MAX_POINTS = 300;

const tk = {
  st: null,
  signal: null,
  tool: "pointer",
  color: "red",
  settings: { fade_s: 4, max_frame_bytes: 300000, max_image_bytes: 900000 },
  caps: null,
  mode: "normal",
  frozen: null,
  freezing: false,
  reqId: 0,
  markN: 0,
  drawing: null,
  pushes: new Map(),
  tutorials: [],
  still: false, // a photo-burst still is on screen
};
window.callassistToolkit = tk; // for tests

let overlay;
let freezeOverlay;
let chat;
const quality = new Quality("in");

const send = (m) => !!(tk.signal && tk.signal.send(m));
const sessionId = () => tk.st && tk.st.session && tk.st.session.id;

// Server messages as text, with the stable code in small print (as agent.js does).
function showError(box, err) {
  if (!err) {
    box.hidden = true;
    box.replaceChildren();
    return;
  }
  const msg = document.createElement("span");
  msg.textContent = err.message || String(err);
  const code = document.createElement("span");
  code.className = "code";
  code.dataset.testid = "error-code";
  code.textContent = t("common.error_code", { code: err.code || "?" });
  box.replaceChildren(msg, code);
  box.dataset.code = err.code || "";
  box.hidden = false;
}

function status(node, text, state = "") {
  node.textContent = text;
  node.dataset.state = state;
}

async function upload(path, blob) {
  const res = await fetch(path, {
    method: "POST",
    body: blob,
    credentials: "same-origin",
    headers: { "X-CSRF-Token": tk.st.csrf || "", "Content-Type": blob.type || "application/octet-stream", Accept: "application/json" },
  });
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const e = (data && data.error) || {};
    throw Object.assign(new Error(e.message || "HTTP " + res.status), { code: e.code || "http_" + res.status, status: res.status });
  }
  return data;
}

// ------------------------------------------------------------------ surfaces

// The live picture is the video, or in photo-burst mode the latest still.
const liveMedia = () => (tk.still ? el("tk-still") : el("camera-video"));
const surface = () => (tk.frozen ? freezeOverlay : overlay);

function newMark(shape, p) {
  const media = tk.frozen ? el("tk-freeze-img") : liveMedia();
  const [w, h] = frameSize(media);
  return {
    type: "mark",
    id: "m" + ++tk.markN + Math.random().toString(36).slice(2, 5),
    shape,
    pts: [p],
    color: tk.color,
    pin: el("tk-pin").checked,
    on: tk.frozen ? "freeze" : "camera",
    ar: w && h ? Math.round((w / h) * 10000) / 10000 : undefined,
  };
}

function sendMark(m, final) {
  const now = performance.now();
  if (!final && now - (m.sentAt || 0) < SEND_EVERY_MS) return;
  m.sentAt = now;
  send({ ...m, sentAt: undefined });
}

let lastPointer = 0;
let pointerTimer = 0;
function sendPointer(p) {
  const on = tk.frozen ? "freeze" : "camera";
  surface().point(p[0], p[1]);
  clearTimeout(pointerTimer);
  const wait = POINTER_EVERY_MS - (performance.now() - lastPointer);
  const go = () => {
    lastPointer = performance.now();
    send({ type: "pointer", x: p[0], y: p[1], on });
  };
  if (wait <= 0) go();
  else pointerTimer = setTimeout(go, wait); // the last position always goes out
}

function onDown(ev) {
  if (!tk.signal || ev.button > 0 || ev.target.closest("button, a, input, select")) return;
  if (!tk.frozen && !el("camera-placeholder").hidden) return;
  const s = surface();
  const p = s.toFrame(ev.clientX, ev.clientY);
  if (!p) return;
  ev.preventDefault();
  el("camera-wrap").setPointerCapture(ev.pointerId);
  if (tk.tool === "pointer") {
    tk.drawing = { pointer: true };
    sendPointer(p);
    return;
  }
  if (tk.tool === "text") {
    const text = el("tk-text").value.trim();
    if (!text) {
      status(el("tk-tool-status"), t("ta.text_needed"), "error");
      el("tk-text").focus();
      return;
    }
    const m = newMark("text", p);
    m.text = text.slice(0, 140);
    s.add(m);
    sendMark(m, true);
    return;
  }
  const m = newMark(tk.tool, p);
  if (tk.tool !== "path") m.pts.push(p);
  tk.drawing = m;
  s.add(m);
  sendMark(m, false);
}

function onMove(ev) {
  const d = tk.drawing;
  if (!d) return;
  const s = surface();
  const p = s.toFrame(ev.clientX, ev.clientY, true);
  if (!p) return;
  if (d.pointer) return sendPointer(p);
  if (d.shape === "path") {
    const last = d.pts[d.pts.length - 1];
    if (d.pts.length >= MAX_POINTS || Math.hypot(p[0] - last[0], p[1] - last[1]) < 0.004) return;
    d.pts.push(p);
  } else {
    d.pts[1] = p;
  }
  s.add(d);
  sendMark(d, false);
}

function onUp() {
  const d = tk.drawing;
  tk.drawing = null;
  if (d && !d.pointer) {
    surface().add(d);
    sendMark(d, true);
  }
}

function clearMarks() {
  const on = tk.frozen ? "freeze" : "camera";
  surface().remove();
  send({ type: "clear", on });
}

// ------------------------------------------------------------------ freeze and snapshot

async function jpeg(canvas, limit) {
  for (const q of [0.92, 0.8, 0.65, 0.5]) {
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", q));
    if (blob && blob.size <= limit) return blob;
  }
  return null;
}

// Take the still from the picture this page shows, upload it, name it in `freeze`.
async function freeze() {
  if (tk.freezing || tk.frozen || !sessionId()) return;
  const media = liveMedia();
  let [w, h] = frameSize(media);
  if (!w) return status(el("tk-tool-status"), t("ta.no_picture"), "error");
  tk.freezing = true;
  render();
  try {
    let blob = null;
    for (let k = Math.min(1, 1920 / Math.max(w, h)); !blob && k > 0.2; k *= 0.7) {
      const c = document.createElement("canvas");
      c.width = Math.round(w * k);
      c.height = Math.round(h * k);
      c.getContext("2d").drawImage(media, 0, 0, c.width, c.height);
      blob = await jpeg(c, tk.settings.max_frame_bytes);
    }
    if (!blob) throw new Error("the picture is too large");
    const data = await upload(`/api/sessions/${encodeURIComponent(sessionId())}/blobs?kind=frame`, blob);
    if (!send({ type: "freeze", frame: data.blob.id })) throw new Error(t("common.network_error"));
    status(el("tk-tool-status"), "");
  } catch (err) {
    tk.freezing = false;
    status(el("tk-tool-status"), t("ta.freeze_failed", { message: err.message }), "error");
  }
  render();
}

function toggleFreeze() {
  if (tk.frozen) send({ type: "unfreeze" });
  else freeze();
}

function onFrozen(m) {
  tk.frozen = m;
  tk.freezing = false;
  tk.drawing = null;
  freezeOverlay.remove();
  el("tk-freeze-img").src = m.src;
  status(el("tk-tool-status"), "");
  render();
}

function onUnfrozen() {
  tk.frozen = null;
  tk.freezing = false;
  tk.drawing = null;
  freezeOverlay.remove();
  el("tk-freeze-img").removeAttribute("src");
  render();
}

// The still with its marks, at the still's own size, stored like every other snapshot.
async function saveSnapshot() {
  const img = el("tk-freeze-img");
  const [w, h] = frameSize(img);
  if (!tk.frozen || !w) return;
  const node = el("tk-tool-status");
  status(node, t("ta.snapshot.saving"), "sending");
  try {
    const c = document.createElement("canvas");
    c.width = w;
    c.height = h;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    for (const m of freezeOverlay.marks.values()) drawMark(g, m, { x: 0, y: 0, w, h });
    const blob = await jpeg(c, tk.settings.max_image_bytes);
    await upload(`/api/sessions/${encodeURIComponent(sessionId())}/freeze/snapshot`, blob);
    status(node, t("ta.snapshot.saved"), "ok");
  } catch (err) {
    status(node, t("ta.snapshot.failed", { message: err.message + (err.code ? " (" + err.code + ")" : "") }), "error");
  }
}

// ------------------------------------------------------------------ camera controls

function request(action, value) {
  const id = ++tk.reqId;
  if (send({ type: "camera_request", id, action, value })) onResult({ action, result: "pending" });
}

function onResult(m) {
  tk.result = m;
  renderResult();
}

function renderResult() {
  const m = tk.result;
  const node = el("tk-cam-status");
  node.dataset.result = m ? m.result : "";
  node.dataset.action = m ? m.action : "";
  if (!m) node.textContent = "";
  else if (m.result === "pending") node.textContent = t("ta.cam.asking");
  else if (m.message) node.textContent = m.message + " (" + m.result + ")";
  else node.textContent = t("ta.cam." + m.result, { what: t("ta.what." + m.action) });
}

function renderCamera() {
  const c = tk.caps;
  el("tk-torch").hidden = !c || !c.torch;
  el("tk-zoom-box").hidden = !c || !c.zoom;
  el("tk-switch").hidden = !c || !c.can_switch;
  if (c && c.torch) {
    el("tk-torch").dataset.i18n = c.torch_on ? "ta.cam.torch_off" : "ta.cam.torch_on";
    el("tk-torch").textContent = t(el("tk-torch").dataset.i18n);
  }
  if (c && c.zoom) {
    const z = el("tk-zoom");
    Object.assign(z, { min: c.zoom.min, max: c.zoom.max, step: c.zoom.step });
    if (document.activeElement !== z) z.value = c.zoom.value;
    el("tk-zoom-val").textContent = Math.round(z.value * 10) / 10 + "×";
  }
  el("tk-mode").value = tk.mode;
  // Controls the caller's camera lacks are hidden; say why.
  const missing = c ? ["torch", "zoom", "switch"].filter((k) => !(k === "switch" ? c.can_switch : c[k])) : [];
  const note = el("tk-caps-note");
  note.dataset.missing = c ? missing.join(" ") : "waiting";
  note.textContent = c ? t("ta.cam.missing", { list: missing.map((k) => t("ta.what." + k)).join(", ") }) : t("ta.cam.waiting");
  note.hidden = c ? !missing.length : false;
}

// ------------------------------------------------------------------ pushes

function safeLink(url) {
  try {
    const u = new URL(url);
    return (u.protocol === "https:" || u.protocol === "http:") && u.hostname && !u.username && !u.password ? u : null;
  } catch {
    return null;
  }
}

function pushLink(ev) {
  ev.preventDefault();
  const input = el("tk-link");
  const url = input.value.trim();
  // Checked here and again by the server; javascript:, data: and the like never leave.
  if (!safeLink(url)) {
    showError(el("tk-push-error"), { message: t("ta.push.bad_url"), code: "bad_url" });
    return;
  }
  showError(el("tk-push-error"), null);
  if (send({ type: "push", kind: "link", url })) input.value = "";
}

async function pushImage() {
  const file = el("tk-image").files[0];
  if (!file || !sessionId()) return;
  showError(el("tk-push-error"), null);
  try {
    if (file.size > tk.settings.max_image_bytes) throw Object.assign(new Error(file.name), { code: "too_large" });
    const data = await upload(`/api/sessions/${encodeURIComponent(sessionId())}/blobs?kind=image`, file);
    send({ type: "push", kind: "image", image: data.blob.id, title: file.name.slice(0, 80) || undefined });
  } catch (err) {
    showError(el("tk-push-error"), err);
  } finally {
    el("tk-image").value = "";
  }
}

function pushTutorial() {
  const id = el("tk-tutorial").value;
  if (id) send({ type: "push", kind: "tutorial", tutorial: id });
}

async function loadTutorials() {
  try {
    const res = await fetch("/api/tutorials", { credentials: "same-origin", headers: { Accept: "application/json" } });
    tk.tutorials = res.ok ? (await res.json()).tutorials : [];
  } catch {
    tk.tutorials = [];
  }
  renderTutorials();
}

function renderTutorials() {
  const sel = el("tk-tutorial");
  const keep = sel.value;
  const opts = tk.tutorials.map((tut) => {
    const o = document.createElement("option");
    o.value = tut.id;
    o.textContent = tut.title[lang()] || tut.id;
    return o;
  });
  if (!opts.length) {
    const o = document.createElement("option");
    o.value = "";
    o.textContent = t("ta.push.none");
    opts.push(o);
  }
  sel.replaceChildren(...opts);
  if (keep) sel.value = keep;
  el("tk-push-tutorial").disabled = !tk.tutorials.length;
}

function onPush(m) {
  tk.pushes.set(m.id, { ...m, state: "sent" });
  renderPushes();
}

function onPushState(m) {
  const p = tk.pushes.get(m.id);
  if (!p) return;
  p.state = m.state;
  p.step = m.step;
  renderPushes();
}

function renderPushes() {
  const items = [...tk.pushes.values()].reverse().slice(0, 8).map((p) => {
    const li = document.createElement("li");
    li.dataset.testid = "push-item";
    li.dataset.id = p.id;
    li.dataset.kind = p.kind;
    li.dataset.state = p.state;
    const what = document.createElement("strong");
    const tut = p.kind === "tutorial" && tk.tutorials.find((x) => x.id === p.tutorial);
    what.textContent = p.kind === "link" ? p.host : tut ? tut.title[lang()] : p.title || t("ta.push." + p.kind);
    const state = document.createElement("span");
    state.textContent = t("ta.push.state." + p.state) + (p.step ? " · " + t("ta.push.step", { n: p.step }) : "");
    li.append(what, state);
    return li;
  });
  el("tk-pushes").replaceChildren(...items);
}

// ------------------------------------------------------------------ rendering

function render() {
  const on = !!tk.signal;
  el("tk-tools").hidden = el("tk-camera").hidden = el("tk-side").hidden = el("tk-wrap-actions").hidden = !on;
  for (const b of document.querySelectorAll(".tk-tool")) b.setAttribute("aria-pressed", String(b.dataset.tool === tk.tool));
  for (const b of document.querySelectorAll(".tk-color")) b.setAttribute("aria-pressed", String(b.dataset.color === tk.color));
  el("tk-text").hidden = tk.tool !== "text";
  el("camera-wrap").dataset.tool = on ? tk.tool : "";
  const fb = el("tk-freeze-btn");
  fb.dataset.i18n = tk.frozen ? "ta.unfreeze" : "ta.freeze";
  fb.textContent = t(fb.dataset.i18n);
  fb.dataset.state = tk.frozen ? "frozen" : tk.freezing ? "freezing" : "live";
  fb.disabled = tk.freezing;
  el("tk-snapshot").hidden = !tk.frozen;
  el("tk-freeze").hidden = !tk.frozen;
  if (tk.frozen) el("tk-freeze-label").textContent = t(tk.frozen.by === "caller" ? "ta.frozen.caller" : "ta.frozen.agent");
  const photo = on && tk.mode === "photo";
  el("tk-still").hidden = !photo || !tk.still;
  el("tk-still-label").hidden = !photo || !!tk.frozen;
  el("tk-still-label").textContent = tk.still
    ? t("ta.still.shown", { s: tk.settings.photo_interval_s || 2 })
    : t("ta.still.waiting");
  renderCamera();
}

function setMode(mode) {
  tk.mode = mode;
  if (mode !== "photo") {
    tk.still = false;
    el("tk-still").removeAttribute("src");
  }
  overlay.media = liveMedia();
  overlay.kick();
  render();
}

function reset() {
  tk.caps = null;
  tk.frozen = null;
  tk.freezing = false;
  tk.drawing = null;
  tk.pushes.clear();
  overlay.remove();
  overlay.point(null);
  freezeOverlay.remove();
  chat.reset();
  el("tk-freeze-img").removeAttribute("src");
  status(el("tk-tool-status"), "");
  onResult(null);
  showError(el("tk-push-error"), null);
  renderPushes();
  setMode("normal");
}

// ------------------------------------------------------------------ wiring

export function init(st) {
  tk.st = st;
  overlay = tk.overlay = new Overlay(el("tk-overlay"), el("camera-video"));
  freezeOverlay = tk.freezeOverlay = new Overlay(el("tk-freeze-overlay"), el("tk-freeze-img"), Infinity);
  chat = tk.chat = new Chat(el("tk-chat"), {
    role: "agent",
    send,
    isOpen: () => !el("tk-side").hidden,
    onChange: () => {},
  });
  // Errors about the toolkit's own messages are shown next to the control that sent them.
  st.toolkitError = (msg) => {
    const ref = msg.ref;
    if (ref === "push") showError(el("tk-push-error"), { message: msg.message, code: msg.code });
    else if (ref === "camera_request") onResult({ action: "", result: msg.code, message: msg.message });
    else if (ref === "freeze" || ref === "unfreeze") {
      tk.freezing = false;
      status(el("tk-tool-status"), t("ta.freeze_failed", { message: msg.message }), "error");
      render();
    } else if (!["pointer", "mark", "clear", "chat", "chat_receipt", "netq"].includes(ref)) return false;
    return true;
  };

  const wrap = el("camera-wrap");
  wrap.addEventListener("pointerdown", onDown);
  wrap.addEventListener("pointermove", onMove);
  wrap.addEventListener("pointerup", onUp);
  wrap.addEventListener("pointercancel", onUp);
  for (const b of document.querySelectorAll(".tk-tool")) {
    b.addEventListener("click", () => {
      tk.tool = b.dataset.tool;
      status(el("tk-tool-status"), "");
      render();
      if (tk.tool === "text") el("tk-text").focus();
    });
  }
  for (const b of document.querySelectorAll(".tk-color")) {
    b.addEventListener("click", () => {
      tk.color = b.dataset.color;
      render();
    });
  }
  el("tk-clear").addEventListener("click", clearMarks);
  el("tk-freeze-btn").addEventListener("click", toggleFreeze);
  el("tk-snapshot").addEventListener("click", saveSnapshot);
  el("tk-torch").addEventListener("click", () => tk.caps && request("torch", !tk.caps.torch_on));
  el("tk-zoom").addEventListener("change", (ev) => request("zoom", Number(ev.target.value)));
  el("tk-zoom").addEventListener("input", (ev) => (el("tk-zoom-val").textContent = Math.round(ev.target.value * 10) / 10 + "×"));
  el("tk-switch").addEventListener("click", () => tk.caps && request("facing", tk.caps.facing === "user" ? "environment" : "user"));
  el("tk-mode").addEventListener("change", (ev) => request("mode", ev.target.value));
  el("tk-link-form").addEventListener("submit", pushLink);
  el("tk-image").addEventListener("change", pushImage);
  el("tk-push-tutorial").addEventListener("click", pushTutorial);
  onLangChange(() => {
    render();
    renderResult();
    renderTutorials();
    renderPushes();
  });

  // Once a second: this side's link quality, shown and told to the caller.
  setInterval(async () => {
    if (!tk.signal) return;
    const room = tk.st.room || {};
    const live = room.caller && room.caller.status === "live" && tk.mode !== "photo";
    try {
      const q = await quality.sample(tk.st.pc, live);
      showQuality(tid("netq-agent"), q, t("ta.netq.you"));
      if (q.score) send({ type: "netq", ...q });
    } catch {
      /* stats are best effort */
    }
  }, 1000);
  render();
}

export function attach(signal) {
  tk.signal = signal;
  reset();
  loadTutorials();
  const on = (type, fn) => signal.on(type, (m) => signal === tk.signal && fn(m));
  // A new socket: the server replays what is still current (still, marks, chat, caps).
  on("welcome", (m) => {
    if (m.toolkit) {
      tk.settings = m.toolkit;
      overlay.fadeMs = m.toolkit.fade_s * 1000;
    }
    overlay.remove();
    onUnfrozen();
  });
  on("mark", (m) => (m.on === "freeze" ? freezeOverlay : overlay).add(m));
  on("freeze_request", () => freeze());
  on("frozen", onFrozen);
  on("unfrozen", onUnfrozen);
  on("camera_result", onResult);
  on("caps", (m) => {
    tk.caps = m;
    if (m.mode !== tk.mode) setMode(m.mode);
    render();
  });
  on("still", (m) => {
    if (tk.mode !== "photo") return;
    const img = el("tk-still");
    img.onload = () => {
      tk.still = true;
      overlay.media = img;
      overlay.kick();
      render();
    };
    img.src = m.src;
  });
  on("push", onPush);
  on("push_state", onPushState);
  on("chat", (m) => chat.onMessage(m));
  on("chat_receipt", (m) => chat.onReceipt(m));
  on("netq", (m) => showQuality(tid("netq-caller"), m, t("ta.netq.caller")));
  render();
}

export function detach() {
  if (!tk.signal) return;
  tk.signal = null;
  reset();
  render();
}
