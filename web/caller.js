// Caller page: notice → ready → camera → live, with automatic recovery. The state object
// `st` is here; everything shown is derived from it in caller-view.js, so every event
// handler only updates `st` and calls render(). The camera: caller-camera.js; the notice:
// caller-notice.js; the peer connection and its recovery: lib/pc-session.js.

import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import STRINGS from "./strings/caller.js";
import { Signal, probeUpgradeUrl } from "./ws.js";
import { showTrack, forgetPcNumber, canSend, onlyCodec } from "./rtc.js";
import { PcSession } from "./lib/pc-session.js";
import { api } from "./lib/api.js";
import { startCamera, hasWebrtc } from "./caller-camera.js";
import { render as renderView, toast, exitFullscreen, toggleFullscreen, setupScreenMode } from "./caller-view.js";
import { loadNotice } from "./caller-notice.js";
import { setupRecording } from "./recording-caller.js"; // recording badge, snapshots, photos

i18n.extend(STRINGS);

const el = (id) => document.getElementById(id);
const tid = (id) => document.querySelector(`[data-testid="${id}"]`);

// Why did the upgrade fail? Ask the socket URL, then the page URL itself: the server
// answers /c with the "link no longer valid" page (410) once the cookie or room is gone.
async function probeCaller() {
  const refusal = await probeUpgradeUrl("/ws/caller");
  if (refusal) return refusal;
  try {
    await api("HEAD", "/c");
    return null;
  } catch (err) {
    if (err.status === 0) throw err; // network down: keep retrying
    return err.status === 410 ? { status: 410, code: "room_ended", message: "" } : null;
  }
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
  cameraError: null, // "denied" | "missing" | "no_webrtc" | "in_app_browser" | "insecure" | "other"
  reportedCamera: null, // the cameraError the server was told on this socket
  canForce: false,
  paused: false,
  cameraSender: null,
  recovering: false,
  everLive: false, // media flowed at least once on this page
  ended: false,
  endReason: null,
  invalid: false,
  fatal: null, // "replaced" | "outdated"
  gumCalls: 0, // for tests: getUserMedia must not run before the notice is accepted
  cameraRestarts: 0, // for tests: the camera restarted by itself after the background
  codec: null, // "H264" when the page offered H264 alone (no VP8 in this browser)
  state: "connecting",
};
let zoom = null; // pinch zoom of the agent's screen (web/zoom.js), loaded with the call view

// Pre-warm (docs/media-performance.md, "First frame"): after the notice, connect with an empty
// camera sender; the tap only replaceTracks. window.callassistPrewarm = false: the tap connects.
const prewarm = () => window.callassistPrewarm !== false && hasWebrtc() && st.accepted && !st.cameraError;

// Visual-assist toolkit (web/toolkit-caller.js): loaded once the camera runs, so the page
// before media stays small; its messages that arrive earlier wait for it.
const TOOLKIT_TYPES = new Set(["chat", "chat_receipt", "push", "camera_request", "pointer", "mark", "clear", "frozen", "unfrozen"]);
const toolkitEarly = [];
let toolkit = null;
let zoomLoad = null;
function loadZoom() {
  zoomLoad = zoomLoad || import("./zoom.js").then((m) => (zoom = m.setupZoom(el("screen-wrap"), el("screen-video")))).catch((err) => console.error("zoom failed to load", err));
}
function loadToolkit() {
  toolkit = toolkit || import("./toolkit-caller.js")
    .then((m) => m.setup({ st, useCameraTrack, early: toolkitEarly.splice(0) }))
    .catch((err) => console.error("toolkit failed to load", err));
}

const media = new PcSession({
  role: "caller",
  roomId: () => (st.room ? st.room.id : "room"),
  signal: () => st.signal,
  iceServers: () => st.iceServers,
  ready: () => (!!st.cameraTrack || prewarm()) && !st.ended && !st.fatal && st.wsReady,
  alive: () => !st.ended && !st.fatal && (!!st.cameraTrack || prewarm()),
  // A warm offer (no camera yet) keeps the agent's "accepted" until the camera starts.
  warm: () => !st.cameraTrack,
  setup(pc) {
    // Order matters (protocol): first our camera (sendonly), then the agent's screen (recvonly).
    const cam = pc.addTransceiver(st.cameraTrack || "video", { direction: "sendonly" });
    st.cameraSender = cam.sender;
    const screen = pc.addTransceiver("video", { direction: "recvonly" });
    // Safari without VP8: offer H264 alone (the server then uses H264 on this leg and the
    // agent's page sends its screen in H264 too, docs/compatibility.md).
    if (!canSend("video/vp8") && canSend("video/h264")) {
      st.codec = onlyCodec(cam, "video/h264") && onlyCodec(screen, "video/h264") ? "H264" : null;
    }
    showTrack(el("screen-video"), screen.receiver.track);
    pc.addEventListener("track", (ev) => {
      if (ev.transceiver === screen) showTrack(el("screen-video"), ev.track);
    });
  },
  onStart: () => render(),
  onChange(state) {
    if (state === "connected" && st.cameraTrack) {
      st.everLive = true;
      st.recovering = false;
    }
    render();
  },
  // The server may reset per-connection state: repeat a pause.
  onAnswer: () => st.paused && st.signal.send({ type: "media", track: "camera", state: "paused" }),
  onRecover() {
    st.recovering = true;
    render();
  },
});
media.expose(st);
window.callassist = st; // debug handle for tests (st.pc is the current RTCPeerConnection)

function render() {
  noCameraPath();
  renderView(st, zoom);
}

// Without a camera the call goes on with photos and chat (the toolkit), and the agent's
// console is told why (docs/protocol.md, media "unavailable"). A page without
// RTCPeerConnection (e.g. a WebKit view without WebRTC) never offers the camera at all.
function noCameraPath() {
  if (!st.accepted || st.ended || st.fatal) return;
  if (!st.cameraError && !st.cameraTrack && !hasWebrtc()) st.cameraError = "no_webrtc";
  if (!st.cameraError) return;
  if (st.pc && !st.cameraTrack) media.close(); // a pre-warm with no camera to carry
  loadToolkit();
  loadZoom();
  if (st.wsReady && st.reportedCamera !== st.cameraError) {
    const sent = st.signal.send({ type: "media", track: "camera", state: "unavailable", reason: st.cameraError });
    if (sent) st.reportedCamera = st.cameraError;
  }
}

// ---------------------------------------------------------------- notice

function accept() {
  if (!st.welcome || !st.notice) return;
  const version = st.welcome.notice && st.welcome.notice.version;
  if (!st.signal.send({ type: "accept", notice: version })) return;
  st.accepted = st.acceptedLocally = true;
  media.start(); // pre-warm (sent after the accept on the same socket)
  // Pre-warm the media stack too (lists devices, opens none): the first getUserMedia of
  // a page is the slow one (bench/first_frame.py, "gum_done").
  if (prewarm()) navigator.mediaDevices?.enumerateDevices?.().catch(() => {});
  render();
  el("start-camera").focus();
}

// ---------------------------------------------------------------- camera

function useCameraTrack(track) {
  const old = st.cameraTrack;
  st.cameraTrack = track;
  st.cameraStopped = false;
  track.enabled = !st.paused;
  track.addEventListener("ended", () => onCameraEnded(track));
  showTrack(el("camera-preview"), track);
  if (old && old !== track) old.stop();
  // A restarted camera, or the first one on a pre-warmed connection, goes onto the live
  // (or still connecting) connection; otherwise make a new one.
  if (st.pc && st.cameraSender && ["new", "connecting", "connected"].includes(st.pc.connectionState)) {
    st.cameraSender.replaceTrack(track).catch(() => media.recover("replace_failed"));
  } else if (st.wsReady) {
    media.start();
  }
  // After the camera is on its way: loading these must not delay its first frame.
  loadToolkit();
  loadZoom();
  render();
}

// The OS or browser took the camera away (e.g. another app, or iOS background).
function onCameraEnded(track) {
  if (track !== st.cameraTrack || st.ended) return;
  st.cameraTrack = null;
  st.cameraStopped = true;
  render();
}

// Back from the background with the camera ended: get it again without a tap. The caller
// allowed it on this page already (Safari keeps that for the page's life, Chrome for the
// site); if the browser now wants a gesture, the "camera-stopped" note and its button stay.
function restartCamera() {
  if (!st.cameraStopped || st.cameraTrack || st.starting || st.cameraError) return;
  st.cameraRestarts += 1; // for tests (docs/testing.md)
  startCamera(st, false, { render, useTrack: useCameraTrack, quiet: true });
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
  media.close();
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
  st.reportedCamera = null; // a new socket: tell the server again
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
  if (st.cameraTrack || prewarm()) media.start();
  if (!st.cameraTrack && st.accepted) resumeCamera();
  render();
}

// After a reload (or the SMS link tapped again) the notice is already accepted: when the
// browser says the camera permission is granted, start it without a second tap. Once per
// page, never after the caller's own stop or an error (then the button is theirs).
let resumeTried = false;
async function resumeCamera() {
  if (resumeTried || st.cameraTrack || st.starting || st.cameraStopped || st.cameraError) return;
  resumeTried = true;
  let granted = false;
  try {
    granted = !!navigator.permissions && (await navigator.permissions.query({ name: "camera" })).state === "granted";
  } catch {
    /* Safari before 16 / Firefox: no "camera" permission name; the button stays */
  }
  if (!granted || st.cameraTrack || st.ended || st.fatal) return;
  st.cameraAutoStarted = true; // for tests (docs/testing.md)
  startCamera(st, false, { render, useTrack: useCameraTrack });
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
  if (media.serverError(msg)) return; // sdp_failed, internal (offer): a new pc
  switch (code) {
    case "notice_not_accepted":
      st.accepted = st.acceptedLocally = false;
      render();
      return;
    case "notice_outdated":
      return fail("outdated");
    case "room_ended":
      return finish(null);
    case "rate_limited":
      return;
  }
  toast(t("c.err.generic", { message: msg.message || code || "?" }));
}

function wireSignal() {
  const s = st.signal;
  s.on("message", (m) => (/^pa/.test(m.type) || m.room?.staff?.[0]) && import("./caller-team.js").then((x) => x.on(st, m)));
  s.on("welcome", onWelcome);
  s.on("room", onRoom);
  s.on("answer", (msg) => media.answer(msg));
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

// ---------------------------------------------------------------- wiring

function wireUi() {
  tid("notice-accept").addEventListener("click", accept);
  tid("notice-retry").addEventListener("click", () => loadNotice(st, render));
  const camera = (force) => startCamera(st, force, { render, useTrack: useCameraTrack });
  el("start-camera").addEventListener("click", () => camera(false));
  el("camera-retry").addEventListener("click", () => camera(false));
  el("camera-try-anyway").addEventListener("click", () => camera(true));
  el("pause-camera").addEventListener("click", () => setPaused(true));
  el("resume-camera").addEventListener("click", () => setPaused(false));
  el("leave").addEventListener("click", () => {
    st.signal.send({ type: "leave" });
    finish("caller_left");
  });
  el("use-here").addEventListener("click", () => location.reload());
  el("reload").addEventListener("click", () => location.reload());
  el("fullscreen-screen").addEventListener("click", () => toggleFullscreen(render));
  document.addEventListener("fullscreenchange", render);
  document.addEventListener("keydown", (ev) => {
    if (ev.key === "Escape" && el("screen-wrap").classList.contains("pseudo-fs")) {
      exitFullscreen();
      render();
    }
  });
  setupScreenMode();

  // Coming back to the page (phone unlocked, app switched back): check everything.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || st.ended || st.fatal) return;
    st.signal.kick();
    // iOS ends the camera in the background, often without an "ended" event.
    if (st.cameraTrack && st.cameraTrack.readyState === "ended") onCameraEnded(st.cameraTrack);
    if (st.cameraStopped) return restartCamera();
    if (st.cameraTrack && st.wsReady && (!st.pc || !["connected", "connecting", "new"].includes(st.pc.connectionState))) {
      media.recover("visible");
    }
  });
  window.addEventListener("online", () => st.signal.kick());

  i18n.onLangChange(() => {
    loadNotice(st, render); // the notice text comes from the server in the chosen language
    render();
  });
}

i18n.init();
wireUi();
wireSignal();
setupRecording(st);
render();
loadNotice(st, render);
st.signal.connect();
