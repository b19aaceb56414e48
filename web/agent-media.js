// Agent console: the open session's live side: its WebSocket (ws.js), the peer connection
// (lib/pc-session.js: the caller's camera in, our screen out, replaced when it breaks) and
// screen sharing. agent.js calls initMedia() once, connect() per session, disconnect() to
// leave it.

import { t } from "./i18n.js";
import { Signal } from "./ws.js";
import { showTrack, canSend, onlyCodec } from "./rtc.js";
import { PcSession } from "./lib/pc-session.js";
import { api, showError } from "./lib/api.js";
import { st } from "./agent-state.js";
import { renderSession, renderSignal, renderVideo } from "./agent-card.js";
import * as toolkit from "./toolkit-agent.js"; // pointer, drawing, freeze, chat, pushes, …
import * as recording from "./recording-agent.js"; // record, snapshots, photos
import * as team from "./agent-team.js";
import * as shareArea from "./agent-share-area.js"; // a phone-sized part of the console

const el = (id) => document.getElementById(id);

let hooks = null; // {onEnded(reason), showLogin(), loadRecent()} from agent.js

const media = new PcSession({
  role: "agent",
  roomId: () => st.session.id,
  signal: () => st.signal,
  iceServers: () => st.iceServers,
  ready: () => !st.ended && st.wsReady && !!st.session,
  alive: () => !st.ended && !!st.session,
  setup(pc) {
    // Order matters (protocol): first the caller's camera (recvonly), then our screen (sendonly).
    const cam = pc.addTransceiver("video", { direction: "recvonly" });
    const screen = pc.addTransceiver(st.screenTrack || "video", { direction: "sendonly" });
    st.screenSender = screen.sender;
    if (st.screenCodec) onlyCodec(screen, st.screenCodec);
    showTrack(el("camera-video"), cam.receiver.track);
    pc.addEventListener("track", (ev) => {
      if (ev.transceiver === cam) showTrack(el("camera-video"), ev.track);
    });
  },
  onStart: () => renderSignal(),
  onChange: (state) => (document.body.dataset.pcState = state),
  onAnswer: () => st.screenTrack && st.signal.send({ type: "media", track: "screen", state: "live" }),
});
media.expose(st);

export function initMedia(h) {
  hooks = h;
  document.addEventListener("callassist:callerlink", renderVideo); // toolkit-agent.js: netq 0 / back
  window.addEventListener("online", () => st.signal && st.signal.kick());
  setInterval(() => watchFrames().catch(() => {}), 1000);
}

// "Camera live" comes from the server (it receives the caller's RTP); whether a frame
// reaches THIS page is another question (seen: ICE failing on the agent's side for minutes
// behind a black video). Count decoded frames of the caller's camera; no new one for
// NO_FRAMES_S while the caller is live: say so (renderVideo, `camera-noframes`).
const NO_FRAMES_S = 6;
let frameWatch = { pc: null, decoded: -1, since: 0 };

async function watchFrames() {
  const status = st.room && st.room.caller && st.room.caller.status;
  const pc = st.pc;
  const now = performance.now();
  let noFrames = null;
  let noFrameYet = false; // live, but this pc has decoded nothing yet (the chip on the video)
  if (!st.ended && status === "live" && st.room.tracks && st.room.tracks.camera) {
    let decoded = 0;
    if (pc && pc.connectionState === "connected") {
      (await pc.getStats()).forEach((r) => {
        if (r.type === "inbound-rtp" && r.kind === "video") decoded += r.framesDecoded || 0;
      });
    }
    if (pc !== frameWatch.pc || decoded !== frameWatch.decoded || frameWatch.since === 0) {
      frameWatch = { pc, decoded, since: now };
    }
    noFrameYet = decoded === 0;
    const s = Math.round((now - frameWatch.since) / 1000);
    if (s >= NO_FRAMES_S) noFrames = { s, state: (pc && pc.connectionState) || "none" };
  } else {
    frameWatch = { pc: null, decoded: -1, since: 0 };
  }
  const was = st.noFrames;
  const wasYet = st.noFrameYet;
  st.noFrames = noFrames;
  st.noFrameYet = noFrameYet;
  if (wasYet !== noFrameYet || !!was !== !!noFrames || (noFrames && was && (was.s !== noFrames.s || was.state !== noFrames.state))) renderVideo();
}

// Why did the upgrade fail? The session itself says whether it ended or we are logged out.
async function probeSession(roomId) {
  let session;
  try {
    session = (await api("GET", "/api/sessions/" + encodeURIComponent(roomId), undefined, { quiet: true })).session;
  } catch (err) {
    if (err.status === 0) throw err; // network down: keep retrying
    if (err.status === 401) return { status: 401, code: "not_authenticated", message: "" };
    if (err.status === 403 || err.status === 404) return { status: err.status, code: err.code, message: err.message };
    return null;
  }
  if (session && session.state === "ended") {
    return { status: 410, code: "room_ended", message: "", reason: session.end_reason };
  }
  return null;
}

export function connect(roomId) {
  const signal = new Signal("/ws/agent/" + encodeURIComponent(roomId), { probe: () => probeSession(roomId) });
  st.signal = signal;
  st.everConnected = false;
  toolkit.attach(signal);
  recording.attach(signal);
  team.attach(signal); // who else joined (web/agent-team.js)
  signal.on("welcome", (msg) => {
    st.wsReady = true;
    st.everConnected = true;
    st.iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
    onRoom(msg);
    // Every new socket gets a new peer connection (the old one may be gone server-side).
    if (!st.ended) media.start();
  });
  signal.on("room", onRoom);
  signal.on("answer", (msg) => media.answer(msg));
  signal.on("ended", (msg) => hooks.onEnded(msg.reason));
  signal.on("error", onServerError);
  signal.on("refused", (r) => {
    if (r.code === "not_authenticated") {
      signal.close();
      hooks.showLogin();
    } else if (r.code === "room_ended") {
      signal.close();
      hooks.onEnded(r.reason || null);
    } else {
      signal.close(); // forbidden / not found: retrying cannot help
      showError(el("session-error"), { message: r.message || r.code, code: r.code });
    }
  });
  signal.on("close", (ev) => {
    st.wsReady = false;
    if (st.ended || signal !== st.signal) return;
    if (ev.code === 4000) return hooks.onEnded(null);
    if (ev.code === 4001) {
      // Another window took over this session; do not fight over it.
      signal.close();
      showError(el("session-error"), { message: t("common.replaced"), code: "replaced" });
    }
    renderSession();
  });
  signal.connect();
  renderSignal();
}

// Leave the session's live side (without ending the session): socket, media, sharing.
export function disconnect() {
  toolkit.detach();
  if (st.signal) st.signal.close();
  st.signal = null;
  st.wsReady = false;
  media.close();
  stopShare({ silent: true });
  el("camera-video").srcObject = null;
}

function onRoom(msg) {
  if (!msg.room) return;
  const before = st.room && st.room.state;
  st.room = msg.room;
  if (before && before !== st.room.state) hooks.loadRecent();
  if (st.room.state === "ended") return hooks.onEnded(st.room.end_reason);
  screenCodecFallback();
  renderSession();
}

// The caller's browser cannot take our screen's codec (a caller with H264 only; the server
// does not transcode): send the screen in H264 alone from now on, on a new connection.
function screenCodecFallback() {
  const sent = st.room.codec_mismatch && st.room.codec_mismatch.screen;
  if (!sent || sent === "H264" || st.screenCodec || !canSend("video/h264")) return;
  st.screenCodec = "video/h264";
  media.start();
}

function onServerError(msg) {
  console.warn("server error", msg.code, msg.message);
  if (st.toolkitError && st.toolkitError(msg)) return; // shown by the toolkit
  if (media.serverError(msg)) return; // sdp_failed, internal (offer): a new pc
  switch (msg.code) {
    case "room_ended":
      return hooks.onEnded(null);
    case "rate_limited":
      return;
  }
  showError(el("session-error"), { message: msg.message || msg.code, code: msg.code });
}

// `area` (web/agent-share-area.js): share one element of this page alone. The capture is
// then this tab (preferCurrentTab) and area.narrow(track) cuts it down to the element
// before the caller gets a single frame of the rest of the console.
export async function shareScreen(area = null) {
  showError(el("share-error"), null);
  const base = window.callassistShareOptions || { video: true };
  const opts = area ? { ...base, video: true, preferCurrentTab: true, selfBrowserSurface: "include" } : base;
  let stream;
  try {
    // Called straight from the click: browsers require a user gesture.
    stream = await navigator.mediaDevices.getDisplayMedia(opts);
  } catch (err) {
    if (err && err.name === "NotAllowedError") return; // the agent cancelled the picker
    showError(el("share-error"), { message: t("a.share.failed", { message: (err && err.message) || String(err) }), code: err && err.name });
    return;
  }
  const track = stream.getVideoTracks()[0];
  if (!track || st.ended) {
    stream.getTracks().forEach((tr) => tr.stop());
    return;
  }
  if ("contentHint" in track) track.contentHint = "detail"; // keep text sharp over smooth motion
  if (area) {
    try {
      await area.narrow(track);
    } catch (err) {
      track.stop(); // never the whole console instead of the area
      showError(el("share-error"), { message: t("a.area.failed", { message: (err && err.message) || String(err) }), code: err && err.name });
      return;
    }
  }
  stopShare({ silent: true, keepArea: !!area });
  st.screenTrack = track;
  // The browser's own "Stop sharing" ends the track: behave as our Stop button.
  track.addEventListener("ended", () => {
    if (st.screenTrack === track) stopShare();
  });
  if (st.screenSender) {
    try {
      await st.screenSender.replaceTrack(track);
    } catch (err) {
      console.error("replaceTrack failed", err);
      media.recover("replace_failed");
    }
  }
  if (st.signal) st.signal.send({ type: "media", track: "screen", state: "live" });
  renderVideo();
}

export function stopShare({ silent = false, keepArea = false } = {}) {
  const track = st.screenTrack;
  if (!keepArea) shareArea.unshared();
  st.screenTrack = null;
  if (track) track.stop();
  if (st.screenSender && st.pc && st.pc.signalingState !== "closed") {
    st.screenSender.replaceTrack(null).catch(() => {});
  }
  if (track && !silent && st.signal) st.signal.send({ type: "media", track: "screen", state: "stopped" });
  renderVideo();
}

export function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else el("camera-wrap").requestFullscreen().catch(() => {});
}
