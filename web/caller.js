// Caller page: notice → ready → camera → live, with automatic recovery.
// Everything shown is derived from the state object `st` in render(), so every
// event handler only updates `st` and calls render().

import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { Signal, probeUpgradeUrl } from "./ws.js";
import { sendOffer, watchConnection, closePc, showTrack, nextPcNumber, forgetPcNumber } from "./rtc.js";
import { setupZoom } from "./zoom.js";
import { setupRecording } from "./recording-caller.js"; // recording badge, snapshots, photos

const CAMERA_CONSTRAINTS = {
  video: { facingMode: { ideal: "environment" }, width: { ideal: 1280 }, height: { ideal: 720 } },
  audio: false,
};
const CONNECT_TIMEOUT_MS = 15000; // a new pc not connected by then is replaced
const IN_APP_UA = /FBAN|FBAV|FB_IAB|FBIOS|Instagram|\bLine\/|; wv\)|MicroMessenger|Snapchat|musical_ly|BytedanceWebview/i;

const el = (id) => document.getElementById(id);
const tid = (id) => document.querySelector(`[data-testid="${id}"]`);

// Why did the upgrade fail? Ask the socket URL, then the page URL itself: the server
// answers /c with the "link no longer valid" page (410) once the cookie or room is gone.
async function probeCaller() {
  const refusal = await probeUpgradeUrl("/ws/caller");
  if (refusal) return refusal;
  const res = await fetch("/c", { method: "HEAD", cache: "no-store", credentials: "same-origin" });
  return res.status === 410 ? { status: 410, code: "room_ended", message: "" } : null;
}

const st = {
  signal: new Signal("/ws/caller", { probe: probeCaller }),
  wsReady: false, // a welcome arrived on the current socket
  welcome: null,
  room: null,
  iceServers: [],
  notice: null, // text fetched from /api/caller/notice
  noticeFailed: false,
  accepted: false,
  acceptedLocally: false, // resend accept after a reconnect if the server missed it
  cameraTrack: null,
  cameraStopped: false, // the browser/OS ended our camera track
  starting: false,
  cameraError: null, // "denied" | "missing" | "in_app_browser" | "insecure" | "other"
  canForce: false,
  paused: false,
  pc: null,
  pcNum: 0,
  pcState: "new",
  cameraSender: null,
  recovering: false,
  everLive: false, // media flowed at least once on this page
  recoverTimer: null,
  recoverDelay: 0,
  watchdog: null,
  internalRetried: false,
  ended: false,
  endReason: null,
  invalid: false,
  fatal: null, // "replaced" | "outdated"
  gumCalls: 0, // for tests: getUserMedia must not run before the notice is accepted
  state: "connecting",
};
let zoom = null;

// Visual-assist toolkit (web/toolkit-caller.js): loaded once the camera runs, so the page
// before media stays small; its messages that arrive earlier wait for it.
const TOOLKIT_TYPES = new Set(["chat", "chat_receipt", "push", "camera_request", "pointer", "mark", "clear", "frozen", "unfrozen"]);
const toolkitEarly = [];
let toolkit = null;
function loadToolkit() {
  toolkit = toolkit || import("./toolkit-caller.js")
    .then((m) => m.setup({ st, useCameraTrack, early: toolkitEarly.splice(0) }))
    .catch((err) => console.error("toolkit failed to load", err));
}

window.callassist = st; // debug handle for tests (st.pc is the current RTCPeerConnection)

// ---------------------------------------------------------------- rendering

function callState() {
  if (st.ended) return "ended";
  if (st.fatal || st.cameraError) return "error";
  if (!st.welcome) return "connecting";
  if (!st.wsReady) return "reconnecting";
  if (!st.accepted) return "notice";
  if (!st.cameraTrack) return st.starting ? "starting" : "ready";
  if (st.pcState === "connected") return st.paused ? "paused" : "live";
  // Once media has flowed, any loss is shown as reconnecting (the page recovers by itself).
  return st.recovering || st.everLive ? "reconnecting" : "connecting";
}

function currentView(state) {
  if (st.ended || st.fatal) return "end";
  if (!st.welcome) return "none";
  if (!st.accepted) return "notice";
  if (!st.cameraTrack) return "ready";
  return "call";
}

function render() {
  const state = callState();
  st.state = state;
  const view = currentView(state);
  document.body.dataset.view = view;
  document.body.dataset.pc = String(st.pcNum);

  const banner = tid("call-state");
  banner.dataset.state = state;
  let key = "c.state." + state;
  if (state === "connecting" && st.cameraTrack) key = "c.state.connecting_media";
  if (state === "error" && st.cameraError && !st.fatal) key = "c.state.camera_error";
  el("state-text").textContent = t(key);

  for (const v of ["notice", "ready", "call", "end"]) el("view-" + v).hidden = view !== v;

  // The reminder stays visible from "ready" until the end of the call.
  const reminder = el("reminder");
  reminder.hidden = !(view === "ready" || view === "call");
  reminder.textContent = (st.notice && st.notice.reminder) || t("c.reminder");

  renderNotice();
  renderReady();
  renderCall();
  renderEnd();
}

function renderNotice() {
  el("notice-error").hidden = !st.noticeFailed;
  tid("notice-accept").disabled = !st.notice || !st.wsReady;
}

function renderReady() {
  const err = tid("camera-error");
  err.hidden = !st.cameraError;
  err.dataset.reason = st.cameraError || "";
  if (st.cameraError) {
    el("camera-error-title").textContent = t(`c.err.${st.cameraError}.title`);
    el("camera-error-help").textContent = t(helpKey(st.cameraError));
  }
  el("camera-stopped").hidden = !st.cameraStopped || !!st.cameraError;
  const start = el("start-camera");
  start.disabled = st.starting;
  start.hidden = !!(st.cameraError && st.canForce); // then "Try anyway" is the only action
  start.textContent = t(st.cameraError && !st.canForce ? "common.retry" : "c.start_camera");
  el("camera-try-anyway").hidden = !(st.cameraError && st.canForce);
}

function helpKey(reason) {
  if (reason !== "denied") return `c.err.${reason}.help`;
  const ua = navigator.userAgent;
  if (/iPhone|iPad|iPod/.test(ua) || (/Macintosh/.test(ua) && navigator.maxTouchPoints > 1)) return "c.err.denied.ios";
  if (/Android/.test(ua)) return "c.err.denied.android";
  return "c.err.denied.other";
}

function renderCall() {
  const screenOn = !!(st.room && st.room.tracks && st.room.tracks.screen);
  el("stage").classList.toggle("has-screen", screenOn);
  el("stage").dataset.screen = screenOn ? "on" : "off";
  el("screen-placeholder").hidden = screenOn;
  if (!screenOn) {
    exitFullscreen();
    if (zoom) zoom.reset();
  }
  el("pause-camera").hidden = st.paused;
  el("resume-camera").hidden = !st.paused;
  el("paused-tag").hidden = !st.paused;
  el("preview-wrap").classList.toggle("paused", st.paused);
  el("fullscreen-screen").textContent = t(isFullscreen() ? "common.exit_fullscreen" : "common.fullscreen");
}

function renderEnd() {
  el("use-here").hidden = st.fatal !== "replaced";
  el("reload").hidden = st.fatal !== "outdated";
  if (st.fatal) {
    el("end-title").textContent = t("c.state.error");
    el("end-message").textContent =
      st.fatal === "replaced" ? t("common.replaced") : st.fatal === "outdated" ? t("c.err.outdated") : t("c.err.generic", { message: st.fatalMessage || "" });
    el("end-footer").textContent = "";
  } else if (st.ended) {
    el("end-title").textContent = t("c.state.ended");
    const reason = st.invalid ? "invalid" : st.endReason;
    const known = ["agent_ended", "caller_left", "inactive", "max_duration", "invalid"];
    el("end-message").textContent = t("c.end." + (known.includes(reason) ? reason : "default"));
    el("end-footer").textContent = t("c.end.footer");
  }
  tid("end-message").dataset.reason = st.invalid ? "invalid" : st.endReason || "";
}

let toastTimer = null;
function toast(text) {
  const box = el("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 8000);
}

// ---------------------------------------------------------------- notice

async function loadNotice() {
  st.noticeFailed = false;
  render();
  const lang = i18n.lang();
  try {
    const res = await fetch("/api/caller/notice?lang=" + encodeURIComponent(lang), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!res.ok) throw new Error("HTTP " + res.status);
    const data = await res.json();
    if (lang !== i18n.lang()) return; // switched meanwhile; a newer load is running
    st.notice = data;
  } catch (err) {
    console.warn("notice failed", err);
    if (!st.notice) st.noticeFailed = true;
  }
  drawNotice();
  render();
}

// Built with textContent only: the notice comes from the server, never as HTML.
function drawNotice() {
  const body = el("notice-body");
  const n = st.notice;
  if (!n) return;
  const nodes = [];
  const h1 = document.createElement("h1");
  h1.textContent = n.title || "";
  nodes.push(h1);
  for (const sec of n.sections || []) {
    const h2 = document.createElement("h2");
    h2.textContent = sec.heading || "";
    nodes.push(h2);
    for (const para of sec.paragraphs || []) {
      const p = document.createElement("p");
      p.textContent = para;
      nodes.push(p);
    }
  }
  body.replaceChildren(...nodes);
  if (n.operator) el("brand-sub").textContent = n.operator;
}

function accept() {
  if (!st.welcome || !st.notice) return;
  const version = st.welcome.notice && st.welcome.notice.version;
  if (!st.signal.send({ type: "accept", notice: version })) return;
  st.accepted = st.acceptedLocally = true;
  render();
  el("start-camera").focus();
}

// ---------------------------------------------------------------- camera

function isInApp() {
  return IN_APP_UA.test(navigator.userAgent);
}

function cameraFail(reason, canForce = false) {
  st.starting = false;
  st.cameraError = reason;
  st.canForce = canForce;
  render();
}

function reasonOf(err) {
  const name = err && err.name;
  if (isInApp()) return "in_app_browser";
  if (name === "NotAllowedError" || name === "SecurityError" || name === "PermissionDeniedError") return "denied";
  if (name === "NotFoundError" || name === "DevicesNotFoundError" || name === "OverconstrainedError") return "missing";
  return "other";
}

async function getCamera(constraints) {
  st.gumCalls += 1;
  return navigator.mediaDevices.getUserMedia(constraints);
}

async function startCamera(force = false) {
  if (!st.accepted || st.starting || st.ended) return; // never before the notice is accepted
  st.cameraError = null;
  st.canForce = false;
  if (!window.isSecureContext) return cameraFail("insecure");
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return cameraFail(isInApp() ? "in_app_browser" : "other");
  // In-app browsers often cannot use the camera: explain first, let the caller try anyway.
  if (isInApp() && !force) return cameraFail("in_app_browser", true);
  st.starting = true;
  render();
  let stream;
  try {
    stream = await getCamera(CAMERA_CONSTRAINTS);
  } catch (err) {
    if (err && (err.name === "OverconstrainedError" || err.name === "ConstraintNotSatisfiedError")) {
      try {
        stream = await getCamera({ video: true, audio: false });
      } catch (err2) {
        return cameraFail(reasonOf(err2));
      }
    } else {
      return cameraFail(reasonOf(err));
    }
  }
  st.starting = false;
  if (st.ended || st.fatal) {
    stream.getTracks().forEach((tr) => tr.stop());
    return;
  }
  useCameraTrack(stream.getVideoTracks()[0]);
}

function useCameraTrack(track) {
  loadToolkit();
  const old = st.cameraTrack;
  st.cameraTrack = track;
  st.cameraStopped = false;
  track.enabled = !st.paused;
  track.addEventListener("ended", () => onCameraEnded(track));
  showTrack(el("camera-preview"), track);
  if (old && old !== track) old.stop();
  // A restarted camera goes onto the live connection; otherwise make a new one.
  if (st.pc && st.cameraSender && st.pc.connectionState === "connected") {
    st.cameraSender.replaceTrack(track).catch(() => recover("replace_failed"));
  } else if (st.wsReady) {
    startPc();
  }
  render();
}

// The OS or browser took the camera away (e.g. another app, or iOS background).
function onCameraEnded(track) {
  if (track !== st.cameraTrack || st.ended) return;
  st.cameraTrack = null;
  st.cameraStopped = true;
  render();
}

function setPaused(paused) {
  if (!st.cameraTrack) return;
  st.paused = paused;
  st.cameraTrack.enabled = !paused;
  st.signal.send({ type: "media", track: "camera", state: paused ? "paused" : "live" });
  render();
}

function stopCamera() {
  if (st.cameraTrack) st.cameraTrack.stop();
  st.cameraTrack = null;
  el("camera-preview").srcObject = null;
}

// ---------------------------------------------------------------- peer connection

function startPc() {
  if (!st.cameraTrack || st.ended || st.fatal || !st.wsReady) return;
  clearTimeout(st.recoverTimer);
  clearTimeout(st.watchdog);
  closePc(st.pc);
  const num = nextPcNumber(st.room ? st.room.id : "room", "caller");
  const pc = new RTCPeerConnection({ iceServers: st.iceServers });
  st.pc = pc;
  st.pcNum = num;
  st.pcState = pc.connectionState;
  // Order matters (protocol): first our camera (sendonly), then the agent's screen (recvonly).
  const cam = pc.addTransceiver(st.cameraTrack, { direction: "sendonly" });
  st.cameraSender = cam.sender;
  const screen = pc.addTransceiver("video", { direction: "recvonly" });
  showTrack(el("screen-video"), screen.receiver.track);
  pc.addEventListener("track", (ev) => {
    if (ev.transceiver === screen) showTrack(el("screen-video"), ev.track);
  });
  watchConnection(
    pc,
    (state) => {
      if (pc !== st.pc) return;
      st.pcState = state;
      if (state === "connected") {
        st.everLive = true;
        st.recovering = false;
        st.recoverDelay = 0;
        st.internalRetried = false;
        clearTimeout(st.watchdog);
      }
      render();
    },
    (why) => {
      if (pc === st.pc) recover(why);
    },
  );
  st.watchdog = setTimeout(() => {
    if (pc === st.pc && pc.connectionState !== "connected") recover("timeout");
  }, CONNECT_TIMEOUT_MS);
  sendOffer(pc, num, st.signal).catch((err) => {
    console.error("offer failed", err);
    if (pc === st.pc) recover("offer_failed");
  });
  render();
}

async function onAnswer(msg) {
  const pc = st.pc;
  if (!pc || msg.pc !== st.pcNum || typeof msg.sdp !== "string") return;
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    // The server may reset per-connection state: repeat a pause.
    if (st.paused) st.signal.send({ type: "media", track: "camera", state: "paused" });
  } catch (err) {
    console.error("answer failed", err);
    if (pc === st.pc) recover("answer_failed");
  }
}

// Replace a broken connection: new RTCPeerConnection with a larger pc number, same
// camera track. The first retry is immediate, later ones back off up to 5 s.
function recover(why) {
  if (st.ended || st.fatal || !st.cameraTrack) return;
  console.info("recovering:", why);
  st.recovering = true;
  clearTimeout(st.recoverTimer);
  const delay = st.recoverDelay;
  st.recoverDelay = Math.min(Math.max(delay * 2, 500), 5000);
  st.recoverTimer = setTimeout(() => {
    if (!st.signal.isOpen || !st.wsReady) {
      st.signal.kick(); // the next welcome starts the new pc
      return;
    }
    startPc();
  }, delay);
  render();
}

// ---------------------------------------------------------------- signalling

function finish(reason, { invalid = false } = {}) {
  if (st.ended) return;
  st.ended = true;
  st.endReason = reason || null;
  st.invalid = invalid;
  cleanup();
  if (st.room) forgetPcNumber(st.room.id, "caller");
  render();
  // The privacy receipt (web/receipt.js): what was kept, until when, whom to ask.
  if (!invalid) import("./receipt.js").then((m) => m.show()).catch((err) => console.warn(err));
}

function cleanup() {
  clearTimeout(st.recoverTimer);
  clearTimeout(st.watchdog);
  closePc(st.pc);
  st.pc = null;
  stopCamera();
  el("screen-video").srcObject = null;
  exitFullscreen();
  st.signal.close();
}

function fail(kind, message) {
  st.fatal = kind;
  st.fatalMessage = message || "";
  cleanup();
  render();
}

function onWelcome(msg) {
  st.failures = 0;
  st.welcome = msg;
  st.wsReady = true;
  st.room = msg.room || st.room;
  st.iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
  if (st.room && st.room.state === "ended") return finish(st.room.end_reason);
  const notice = msg.notice || {};
  if (notice.accepted) {
    st.accepted = true;
  } else if (st.acceptedLocally) {
    // Accepted on a socket that dropped before the server stored it: say it again.
    st.signal.send({ type: "accept", notice: notice.version });
    st.accepted = true;
  } else {
    st.accepted = false;
  }
  // Every new socket gets a new peer connection (the old one may be gone server-side).
  if (st.cameraTrack) startPc();
  render();
}

function onRoom(msg) {
  if (!msg.room) return;
  st.room = msg.room;
  if (st.room.state === "ended") return finish(st.room.end_reason);
  render();
}

function onError(msg) {
  const code = msg.code;
  console.warn("server error", code, msg.message);
  if (st.toolkitError && st.toolkitError(msg)) return; // shown by the toolkit
  switch (code) {
    case "notice_not_accepted":
      st.accepted = st.acceptedLocally = false;
      render();
      return;
    case "notice_outdated":
      return fail("outdated");
    case "sdp_failed":
      return recover("sdp_failed");
    case "room_ended":
      return finish(null);
    case "rate_limited":
      return;
    case "internal":
      if (msg.ref === "offer" && !st.internalRetried) {
        st.internalRetried = true;
        return recover("internal");
      }
      break;
  }
  toast(t("c.err.generic", { message: msg.message || code || "?" }));
}

function wireSignal() {
  const s = st.signal;
  s.on("welcome", onWelcome);
  s.on("room", onRoom);
  s.on("answer", onAnswer);
  s.on("ended", (msg) => finish(msg.reason));
  s.on("error", onError);
  s.on("message", (m) => {
    if (!st.toolkitError && TOOLKIT_TYPES.has(m.type) && toolkitEarly.length < 300) toolkitEarly.push(m);
  });
  s.on("refused", (r) => {
    // The browser cannot see why an upgrade failed; the probe can.
    if (r.code === "room_ended" || r.code === "not_authenticated") {
      s.close();
      finish(null, { invalid: !st.welcome || r.code === "not_authenticated" });
    }
  });
  s.on("close", (ev) => {
    st.wsReady = false;
    if (st.ended || st.fatal) return;
    if (ev.code === 4000) return finish(st.endReason);
    if (ev.code === 4001) return fail("replaced");
    if (st.cameraTrack) st.recovering = true;
    // Several failed attempts in a row: most likely no internet on the phone.
    st.failures = ev.opened ? 0 : (st.failures || 0) + 1;
    if (st.failures === 3) toast(t("common.network_error"));
    render();
  });
}

// ---------------------------------------------------------------- full screen

function isFullscreen() {
  return !!document.fullscreenElement || el("screen-wrap").classList.contains("pseudo-fs");
}

function exitFullscreen() {
  el("screen-wrap").classList.remove("pseudo-fs");
  document.body.classList.remove("no-scroll");
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
}

// iPhone Safari has no element fullscreen: fall back to covering the viewport.
function toggleFullscreen() {
  const wrap = el("screen-wrap");
  if (isFullscreen()) {
    exitFullscreen();
  } else if (wrap.requestFullscreen) {
    wrap.requestFullscreen().catch(() => {
      wrap.classList.add("pseudo-fs");
      document.body.classList.add("no-scroll");
      render();
    });
  } else {
    wrap.classList.add("pseudo-fs");
    document.body.classList.add("no-scroll");
  }
  render();
}

// ---------------------------------------------------------------- wiring

function wireUi() {
  tid("notice-accept").addEventListener("click", accept);
  tid("notice-retry").addEventListener("click", loadNotice);
  el("start-camera").addEventListener("click", () => startCamera(false));
  el("camera-try-anyway").addEventListener("click", () => startCamera(true));
  el("pause-camera").addEventListener("click", () => setPaused(true));
  el("resume-camera").addEventListener("click", () => setPaused(false));
  el("leave").addEventListener("click", () => {
    st.signal.send({ type: "leave" });
    finish("caller_left");
  });
  el("use-here").addEventListener("click", () => location.reload());
  el("reload").addEventListener("click", () => location.reload());
  el("fullscreen-screen").addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", render);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && el("screen-wrap").classList.contains("pseudo-fs")) {
      exitFullscreen();
      render();
    }
  });
  zoom = setupZoom(el("screen-wrap"), el("screen-video"));

  // Coming back to the page (phone unlocked, app switched back): check everything.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || st.ended || st.fatal) return;
    st.signal.kick();
    if (st.cameraTrack && st.cameraTrack.readyState === "ended") return onCameraEnded(st.cameraTrack);
    if (st.cameraTrack && st.wsReady && (!st.pc || !["connected", "connecting", "new"].includes(st.pc.connectionState))) {
      recover("visible");
    }
  });
  window.addEventListener("online", () => st.signal.kick());

  i18n.onLangChange(() => {
    loadNotice(); // the notice text comes from the server in the chosen language
    render();
  });
}

i18n.init();
wireUi();
wireSignal();
setupRecording(st);
render();
loadNotice();
st.signal.connect();
