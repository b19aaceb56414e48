// Agent side of the visual-assist toolkit (docs/protocol.md, "Toolkit"): pointer and
// drawing tools on the caller's camera, freeze (the still is taken here, from the video
// this page receives, so both sides show the same pixels), annotated snapshots, camera
// requests, low-data and photo-burst modes, pushes (links, images, tutorials), chat and
// the link quality. agent.js calls init() once, attach(signal) per session socket and
// detach() when the session closes.

import { t, onLangChange, extend } from "./i18n.js";
import TOOLKIT from "./strings/toolkit.js";
import TOOLKIT_AGENT from "./strings/toolkit-agent.js";
import { showError } from "./lib/api.js";
import { Overlay } from "./overlay.js";
import { Chat } from "./chat.js";
import { Quality, showQuality } from "./netq.js";
import { drawTools } from "./toolkit-agent-draw.js";
import { pushTools } from "./toolkit-agent-push.js";

extend(TOOLKIT);
extend(TOOLKIT_AGENT);

const el = (id) => document.getElementById(id);
const tid = (id) => document.querySelector(`[data-testid="${id}"]`);

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
// The caller's last `netq` and when it came; the low-bandwidth suggestion's state.
let callerQ = null;
let recentQ = []; // the caller's last reports (scores are noisy from one second to the next)
let suggestDismissed = false;
const CALLER_Q_STALE_MS = 3500; // netq comes once a second: 3 missed = no news = no bars
const POOR_WINDOW = 5; // reports
const POOR_MEAN_SCORE = 2.5;
const POOR_MEAN_LOSS = 8; // %

// The caller's bars tell the truth: without a fresh report, or while the caller is not
// live/paused (reconnecting, left), they show 0, never the last good value. A poor link
// for a few seconds suggests the low-bandwidth mode (the agent decides).
function renderCallerQuality() {
  const room = (tk.st && tk.st.room) || {};
  const status = room.caller && room.caller.status;
  const fresh = callerQ && performance.now() - callerQ.at < CALLER_Q_STALE_MS;
  const present = status === "live" || status === "paused";
  const q = fresh && present ? callerQ.m : { score: 0 };
  if (callerQ || status === "reconnecting" || status === "left") showQuality(tid("netq-caller"), q, t("ta.netq.caller"));
  // The caller's page itself says its connection is down (score 0, fresh): the agent's
  // placeholder says "reconnecting" even while the server still counts the camera live.
  const down = !!(fresh && status === "live" && callerQ.m.score === 0);
  if (tk.st && tk.st.callerLinkDown !== down) {
    tk.st.callerLinkDown = down;
    document.dispatchEvent(new Event("callassist:callerlink")); // agent-media.js re-renders
  }
  // Poor: over the last few reports (all of them of a connected caller), a low mean score
  // or a high mean loss.
  const poor = present && fresh && recentQ.length >= 3 && recentQ.every((r) => r.score > 0) &&
    (mean(recentQ.map((r) => r.score)) <= POOR_MEAN_SCORE || mean(recentQ.map((r) => r.loss || 0)) > POOR_MEAN_LOSS);
  el("tk-suggest-low").hidden = !(tk.mode === "normal" && !suggestDismissed && poor);
}

const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

const send = (m) => !!(tk.signal && tk.signal.send(m));
const sessionId = () => tk.st && tk.st.session && tk.st.session.id;
const draw = drawTools({ tk, send, status, render: () => render(), sessionId });
const push = pushTools({ tk, send, sessionId });

function status(node, text, state = "") {
  node.textContent = text;
  node.dataset.state = state;
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
  overlay.media = draw.liveMedia();
  overlay.kick();
  render();
}

function reset() {
  callerQ = null;
  recentQ = [];
  suggestDismissed = false;
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
  push.renderPushes();
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
  wrap.addEventListener("pointerdown", draw.onDown);
  wrap.addEventListener("pointermove", draw.onMove);
  wrap.addEventListener("pointerup", draw.onUp);
  wrap.addEventListener("pointercancel", draw.onUp);
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
  el("tk-clear").addEventListener("click", draw.clearMarks);
  el("tk-freeze-btn").addEventListener("click", draw.toggleFreeze);
  el("tk-snapshot").addEventListener("click", draw.saveSnapshot);
  el("tk-torch").addEventListener("click", () => tk.caps && request("torch", !tk.caps.torch_on));
  el("tk-zoom").addEventListener("change", (ev) => request("zoom", Number(ev.target.value)));
  el("tk-zoom").addEventListener("input", (ev) => (el("tk-zoom-val").textContent = Math.round(ev.target.value * 10) / 10 + "×"));
  el("tk-switch").addEventListener("click", () => tk.caps && request("facing", tk.caps.facing === "user" ? "environment" : "user"));
  el("tk-mode").addEventListener("change", (ev) => request("mode", ev.target.value));
  el("tk-suggest-low-btn").addEventListener("click", () => {
    suggestDismissed = true; // asked once: the agent's choice stands
    el("tk-suggest-low").hidden = true;
    request("mode", "low");
  });
  el("tk-link-form").addEventListener("submit", push.pushLink);
  el("tk-image").addEventListener("change", push.pushImage);
  el("tk-push-tutorial").addEventListener("click", push.pushTutorial);
  onLangChange(() => {
    render();
    renderResult();
    push.renderTutorials();
    push.renderPushes();
  });

  // Once a second: this side's link quality, shown and told to the caller.
  setInterval(async () => {
    if (!tk.signal) return;
    const room = tk.st.room || {};
    const live = room.caller && room.caller.status === "live" && tk.mode !== "photo";
    try {
      const q = await quality.sample(tk.st.pc, live);
      showQuality(tid("netq-agent"), q, t("ta.netq.you"));
      send({ type: "netq", ...q }); // 0 too: the caller must see an outage
      renderCallerQuality();
    } catch {
      /* stats are best effort */
    }
  }, 1000);
  render();
}

export function attach(signal) {
  tk.signal = signal;
  reset();
  push.loadTutorials();
  const on = (type, fn) => signal.on(type, (m) => signal === tk.signal && fn(m));
  // A new socket: the server replays what is still current (still, marks, chat, caps).
  on("welcome", (m) => {
    if (m.toolkit) {
      tk.settings = m.toolkit;
      overlay.fadeMs = m.toolkit.fade_s * 1000;
    }
    overlay.remove();
    draw.onUnfrozen();
  });
  on("mark", (m) => (m.on === "freeze" ? freezeOverlay : overlay).add(m));
  on("freeze_request", () => draw.freeze());
  on("frozen", draw.onFrozen);
  on("unfrozen", draw.onUnfrozen);
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
  on("push", push.onPush);
  on("push_state", push.onPushState);
  on("chat", (m) => chat.onMessage(m));
  on("chat_receipt", (m) => chat.onReceipt(m));
  on("netq", (m) => {
    callerQ = { m, at: performance.now() };
    recentQ = recentQ.concat([m]).slice(-POOR_WINDOW);
    renderCallerQuality();
  });
  render();
}

export function detach() {
  if (!tk.signal) return;
  tk.signal = null;
  reset();
  render();
}
