// Agent console: login, create a session and its one-time link, follow the caller,
// watch the caller's camera, share a screen back, end the session.

import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { Signal } from "./ws.js";
import { sendOffer, watchConnection, closePc, showTrack, nextPcNumber, forgetPcNumber } from "./rtc.js";
import * as toolkit from "./toolkit-agent.js"; // pointer, drawing, freeze, chat, pushes, …
import * as recording from "./recording-agent.js"; // record, snapshots, photos
import * as smsPreview from "./sms-preview.js"; // SMS language and segment count

const CONNECT_TIMEOUT_MS = 15000;
const STEPS = ["link_sent", "opened", "accepted", "live", "ended"];
// How far along the steps each caller status is (index into STEPS of the last done step).
const STATUS_RANK = {
  link_sent: 0, opened: 1, accepted: 2, connecting: 2,
  live: 3, paused: 3, reconnecting: 3, left: 2, ended: 4,
};

const el = (id) => document.getElementById(id);

const st = {
  me: null,
  csrf: null,
  defaultCountryCode: "+371",
  session: null, // REST session object of the open session
  link: null, // {link, qr_svg, expires_at} when known (only right after creating it)
  room: null, // last room object from the WebSocket
  maxRank: 0,
  signal: null,
  wsReady: false,
  iceServers: [],
  pc: null,
  pcNum: 0,
  pcState: "new",
  screenSender: null,
  screenTrack: null,
  recoverTimer: null,
  recoverDelay: 0,
  watchdog: null,
  internalRetried: false,
  ended: false,
  endReason: null,
  qrUrl: null,
};
window.callassist = st; // debug handle for tests (st.pc is the current RTCPeerConnection)

// ---------------------------------------------------------------- REST

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  const opts = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    if (st.csrf) headers["X-CSRF-Token"] = st.csrf;
    opts.body = JSON.stringify(body || {});
  }
  let res;
  try {
    res = await fetch(path, opts);
  } catch {
    throw new ApiError(0, "network", t("common.network_error"));
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = (data && data.error) || {};
    const e = new ApiError(res.status, err.code || "http_" + res.status, err.message || t("common.network_error"));
    if (res.status === 401 && path !== "/api/login") showLogin();
    throw e;
  }
  return data;
}

// Server messages are shown as text, with the stable code in small print.
function showError(box, err) {
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

// Set a translated text and remember its key, so a language switch keeps it.
function setText(node, key) {
  node.dataset.i18n = key;
  node.textContent = t(key);
}

function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const sameDay = d.toDateString() === new Date().toDateString();
  const opts = sameDay ? { hour: "2-digit", minute: "2-digit" } : { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
  return new Intl.DateTimeFormat(i18n.lang(), opts).format(d);
}

// ---------------------------------------------------------------- login

function showView(name) {
  document.body.dataset.view = name;
  el("view-login").hidden = name !== "login";
  el("view-console").hidden = name !== "console";
  const loggedIn = name === "console";
  el("user-name").hidden = !loggedIn;
  el("logout").hidden = !loggedIn;
}

function showLogin(err) {
  closeSession();
  st.me = null;
  st.csrf = null;
  showView("login");
  showError(el("login-error"), err || null);
  el("login-username").focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const username = el("login-username").value.trim();
  const password = el("login-password").value;
  el("login-submit").disabled = true;
  try {
    const data = await api("POST", "/api/login", { username, password });
    el("login-password").value = "";
    loggedIn(data);
  } catch (err) {
    showError(el("login-error"), err);
  } finally {
    el("login-submit").disabled = false;
  }
}

function loggedIn(data) {
  st.me = data.user || {};
  st.csrf = data.csrf || null;
  // The server may tell which country code it adds to local numbers.
  st.defaultCountryCode = data.default_country_code || (data.defaults && data.defaults.country_code) || st.defaultCountryCode;
  el("user-name").textContent = st.me.name || "";
  showError(el("login-error"), null);
  showView("console");
  renderHint();
  loadRecent();
  const restore = new URLSearchParams(location.hash.slice(1)).get("session");
  if (restore) openSessionById(restore);
  else showNewForm();
}

async function logout() {
  try {
    await api("POST", "/api/logout");
  } catch {
    /* the session is gone either way */
  }
  history.replaceState(null, "", location.pathname);
  showLogin();
}

// ---------------------------------------------------------------- sessions

function renderHint() {
  el("phone-hint").textContent = t("a.new.phone_hint", { code: st.defaultCountryCode });
}

function showNewForm() {
  closeSession();
  history.replaceState(null, "", location.pathname);
  el("new-session-form").hidden = false;
  el("session-card").hidden = true;
  el("video-col").hidden = true;
  document.querySelector(".console-grid").classList.remove("has-session");
  showError(el("new-session-error"), null);
  el("new-session-phone").focus();
}

async function onCreate(ev) {
  ev.preventDefault();
  const phone = el("new-session-phone").value.trim();
  const reference = el("new-session-reference").value.trim();
  el("new-session-submit").disabled = true;
  showError(el("new-session-error"), null);
  try {
    const data = await api("POST", "/api/sessions", { phone, reference });
    el("new-session-phone").value = "";
    el("new-session-reference").value = "";
    openSession(data.session, { link: data.link, qr_svg: data.qr_svg, expires_at: data.expires_at, sms: data.sms });
    loadRecent();
  } catch (err) {
    showError(el("new-session-error"), err);
  } finally {
    el("new-session-submit").disabled = false;
  }
}

async function openSessionById(id) {
  try {
    const data = await api("GET", "/api/sessions/" + encodeURIComponent(id));
    openSession(data.session, null);
  } catch (err) {
    showNewForm();
    if (err.status !== 401) showError(el("new-session-error"), err);
  }
}

function openSession(session, link) {
  closeSession();
  st.session = session;
  st.link = link;
  st.room = null;
  st.ended = session.state === "ended";
  st.endReason = session.end_reason || null;
  st.maxRank = STATUS_RANK[session.caller_status] ?? 0;
  history.replaceState(null, "", "#session=" + encodeURIComponent(session.id));
  el("new-session-form").hidden = true;
  el("session-card").hidden = false;
  el("video-col").hidden = false;
  document.querySelector(".console-grid").classList.add("has-session");
  el("session-phone").textContent = session.phone_masked || session.phone || "";
  el("session-reference").textContent = session.reference || "—";
  el("sms-status").textContent = "";
  el("sms-status").dataset.state = "";
  setText(el("send-sms"), "a.sms.send");
  el("send-sms").disabled = false;
  el("end-session-confirm").disabled = false;
  el("copy-status").textContent = "";
  el("new-link-status").textContent = "";
  el("end-confirm-box").hidden = true;
  showError(el("session-error"), null);
  showError(el("share-error"), null);
  renderLink();
  smsPreview.show(link && link.sms, { newSession: true });
  renderSession();
  recording.open(session.id);
  if (!st.ended) connect(session.id);
  loadRecent();
}

// Leave the open session (without ending it): sockets, media, sharing.
function closeSession() {
  toolkit.detach();
  recording.detach();
  if (st.signal) st.signal.close();
  st.signal = null;
  st.wsReady = false;
  clearTimeout(st.recoverTimer);
  clearTimeout(st.watchdog);
  closePc(st.pc);
  st.pc = null;
  st.pcState = "new";
  stopShare({ silent: true });
  el("camera-video").srcObject = null;
  st.session = null;
}

function renderLink() {
  const info = st.link;
  renderLinkVisibility();
  if (!info) return;
  el("session-link").textContent = info.link || "";
  el("link-expires").textContent = info.expires_at ? t("a.link.expires", { time: fmtTime(info.expires_at) }) : "";
  if (st.qrUrl) URL.revokeObjectURL(st.qrUrl);
  st.qrUrl = info.qr_svg ? URL.createObjectURL(new Blob([info.qr_svg], { type: "image/svg+xml" })) : null;
  el("session-qr").src = st.qrUrl || "";
  el("session-qr").alt = t("a.link.qr_alt");
}

function callerStatus() {
  if (st.room && st.room.caller && st.room.caller.status) return st.room.caller.status;
  return (st.session && st.session.caller_status) || "link_sent";
}

function renderSession() {
  if (!st.session) return;
  const roomState = st.ended ? "ended" : (st.room && st.room.state) || st.session.state || "waiting";
  const pill = el("session-state");
  pill.dataset.state = roomState;
  pill.textContent = t("a.state." + roomState);

  const status = st.ended ? "ended" : callerStatus();
  st.maxRank = Math.max(st.maxRank, STATUS_RANK[status] ?? 0);
  const rank = st.ended ? 4 : st.maxRank;
  const prog = el("caller-progress");
  prog.dataset.status = status;
  for (const li of prog.querySelectorAll("li")) {
    const i = STEPS.indexOf(li.dataset.step);
    li.dataset.state = i <= rank ? "done" : i === rank + 1 ? "current" : "todo";
  }
  el("caller-status").textContent = status in STATUS_RANK ? t("a.status." + status) : status;
  const device = st.room && st.room.caller && st.room.caller.device;
  el("caller-device").hidden = !device;
  el("caller-device").textContent = device ? t("a.device", { device }) : "";

  // A new link only makes sense before the caller opened the current one.
  el("new-link").hidden = st.ended || rank > 0 || status !== "link_sent";

  el("end-block").hidden = st.ended;
  el("ended-block").hidden = !st.ended;
  if (st.ended) {
    const known = ["agent_ended", "caller_left", "inactive", "max_duration", "ops", "shutdown"];
    el("session-ended-reason").textContent = t("a.end.reason." + (known.includes(st.endReason) ? st.endReason : "default"));
    el("session-ended-reason").dataset.reason = st.endReason || "";
  }
  renderLinkVisibility();
  renderVideo();
  renderSignal();
}

// The link is single-use: once the caller opened it, it is only clutter.
function renderLinkVisibility() {
  el("link-block").hidden = !st.link || st.ended || st.maxRank >= 1;
}

function renderVideo() {
  const tracks = (st.room && st.room.tracks) || {};
  const status = callerStatus();
  let placeholder = null;
  if (st.ended) placeholder = "a.camera.ended";
  else if (status === "paused") placeholder = "a.camera.paused";
  else if (status === "left") placeholder = "a.status.left";
  else if (!tracks.camera && status !== "live") {
    placeholder = status === "reconnecting" ? "a.camera.reconnecting" : "a.camera.waiting";
  }
  const ph = el("camera-placeholder");
  ph.hidden = !placeholder;
  ph.textContent = placeholder ? t(placeholder) : "";
  ph.dataset.reason = placeholder ? placeholder.split(".").pop() : "";
  el("fullscreen-camera").textContent = t(document.fullscreenElement ? "common.exit_fullscreen" : "common.fullscreen");

  el("fullscreen-camera").hidden = st.ended;
  el("video-bar").hidden = st.ended;
  const sharing = !!st.screenTrack;
  el("share-screen").hidden = sharing || st.ended;
  el("stop-share").hidden = !sharing || st.ended;
  el("share-status").hidden = !sharing || st.ended;
}

// The connection banner only appears when something is wrong or still starting.
function renderSignal() {
  const banner = el("signal-state");
  let state = "connected";
  if (!st.session || st.ended) state = "idle";
  else if (!st.wsReady) state = st.everConnected ? "reconnecting" : "connecting";
  banner.dataset.state = state;
  banner.hidden = state === "idle" || state === "connected";
  el("signal-text").textContent = state === "reconnecting" ? t("a.state.reconnecting") : t("a.state.connecting");
  document.body.dataset.pc = String(st.pcNum);
}

async function newLink() {
  const s = st.session;
  if (!s) return;
  el("new-link").disabled = true;
  try {
    const data = await api("POST", `/api/sessions/${encodeURIComponent(s.id)}/link`);
    st.link = { link: data.link, qr_svg: data.qr_svg, expires_at: data.expires_at, sms: data.sms };
    renderLink();
    smsPreview.show(data.sms);
    el("sms-status").textContent = "";
    el("sms-status").dataset.state = "";
    setText(el("send-sms"), "a.sms.send");
    el("new-link-status").textContent = t("a.link.renewed");
  } catch (err) {
    showError(el("session-error"), err);
  } finally {
    el("new-link").disabled = false;
  }
}

async function sendSms() {
  const s = st.session;
  if (!s || !st.link) return;
  const btn = el("send-sms");
  const status = el("sms-status");
  btn.disabled = true;
  status.dataset.state = "sending";
  status.textContent = t("a.sms.sending");
  try {
    const data = await api("POST", `/api/sessions/${encodeURIComponent(s.id)}/sms`, { link: st.link.link, lang: smsPreview.lang() });
    const sms = (data && data.sms) || {};
    status.dataset.state = sms.status || "sent";
    status.textContent = t("a.sms.sent", { to: sms.to || "" });
    setText(btn, "a.sms.resend");
  } catch (err) {
    // Keep the button usable: the agent may retry.
    status.dataset.state = "error";
    status.textContent = err.message + (err.code ? " (" + err.code + ")" : "");
  } finally {
    btn.disabled = false;
  }
}

async function copyLink() {
  const text = el("session-link").textContent;
  const status = el("copy-status");
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    // Older or insecure contexts: select the text and use the legacy command.
    const range = document.createRange();
    range.selectNodeContents(el("session-link"));
    const sel = getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
  }
  status.dataset.state = ok ? "ok" : "error";
  status.textContent = t(ok ? "a.link.copied" : "a.link.copy_failed");
}

async function endSession() {
  const s = st.session;
  if (!s) return;
  el("end-session-confirm").disabled = true;
  try {
    const data = await api("POST", `/api/sessions/${encodeURIComponent(s.id)}/end`);
    el("end-confirm-box").hidden = true;
    const ended = (data && data.session) || {};
    onEnded(ended.end_reason || "agent_ended");
  } catch (err) {
    showError(el("session-error"), err);
  } finally {
    el("end-session-confirm").disabled = false;
  }
}

function onEnded(reason) {
  if (st.ended && st.endReason) return;
  st.ended = true;
  st.endReason = st.endReason || reason || null;
  const id = st.session && st.session.id;
  toolkit.detach();
  if (st.signal) st.signal.close();
  st.wsReady = false;
  clearTimeout(st.recoverTimer);
  clearTimeout(st.watchdog);
  closePc(st.pc);
  st.pc = null;
  stopShare({ silent: true });
  el("camera-video").srcObject = null;
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  if (id) forgetPcNumber(id, "agent");
  renderSession();
  loadRecent();
}

async function loadRecent() {
  let list = [];
  try {
    const data = await api("GET", "/api/sessions");
    list = (data && data.sessions) || [];
  } catch {
    return;
  }
  const ul = el("recent-sessions");
  const items = list.slice(0, 10).map((s) => {
    const li = document.createElement("li");
    li.dataset.testid = "recent-session";
    li.dataset.sessionId = s.id;
    li.dataset.state = s.state;
    const info = document.createElement("div");
    info.className = "info";
    const title = document.createElement("strong");
    title.textContent = [s.phone_masked || s.phone, s.reference].filter(Boolean).join(" · ");
    const sub = document.createElement("span");
    sub.textContent = fmtTime(s.created_at) + " · " + t("a.state." + s.state);
    info.append(title, sub);
    li.append(info);
    if (s.state !== "ended" && (!st.session || st.session.id !== s.id)) {
      const open = document.createElement("button");
      open.type = "button";
      open.className = "btn btn-small";
      open.dataset.testid = "recent-open";
      open.textContent = t("a.recent.open");
      open.addEventListener("click", () => openSessionById(s.id));
      li.append(open);
    }
    return li;
  });
  ul.replaceChildren(...items);
  el("recent-empty").hidden = items.length > 0;
}

// ---------------------------------------------------------------- signalling and media

// Why did the upgrade fail? The session itself says whether it ended or we are logged out.
async function probeSession(roomId) {
  const res = await fetch("/api/sessions/" + encodeURIComponent(roomId), {
    cache: "no-store",
    credentials: "same-origin",
    headers: { Accept: "application/json" },
  });
  if (res.status === 401) return { status: 401, code: "not_authenticated", message: "" };
  const data = await res.json().catch(() => null);
  if (res.status === 403 || res.status === 404) {
    const err = (data && data.error) || {};
    return { status: res.status, code: err.code || "forbidden", message: err.message || "" };
  }
  const session = data && data.session;
  if (res.ok && session && session.state === "ended") {
    return { status: 410, code: "room_ended", message: "", reason: session.end_reason };
  }
  return null;
}

function connect(roomId) {
  const signal = new Signal("/ws/agent/" + encodeURIComponent(roomId), { probe: () => probeSession(roomId) });
  st.signal = signal;
  st.everConnected = false;
  toolkit.attach(signal);
  recording.attach(signal);
  signal.on("welcome", (msg) => {
    st.wsReady = true;
    st.everConnected = true;
    st.iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
    onRoom(msg);
    // Every new socket gets a new peer connection (the old one may be gone server-side).
    if (!st.ended) startPc();
  });
  signal.on("room", onRoom);
  signal.on("answer", onAnswer);
  signal.on("ended", (msg) => onEnded(msg.reason));
  signal.on("error", onServerError);
  signal.on("refused", (r) => {
    if (r.code === "not_authenticated") {
      signal.close();
      showLogin();
    } else if (r.code === "room_ended") {
      signal.close();
      onEnded(r.reason || null);
    } else {
      signal.close(); // forbidden / not found: retrying cannot help
      showError(el("session-error"), { message: r.message || r.code, code: r.code });
    }
  });
  signal.on("close", (ev) => {
    st.wsReady = false;
    if (st.ended || signal !== st.signal) return;
    if (ev.code === 4000) return onEnded(null);
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

function onRoom(msg) {
  if (!msg.room) return;
  const before = st.room && st.room.state;
  st.room = msg.room;
  if (before && before !== st.room.state) loadRecent();
  if (st.room.state === "ended") return onEnded(st.room.end_reason);
  renderSession();
}

function startPc() {
  if (st.ended || !st.wsReady || !st.session) return;
  clearTimeout(st.recoverTimer);
  clearTimeout(st.watchdog);
  closePc(st.pc);
  const num = nextPcNumber(st.session.id, "agent");
  const pc = new RTCPeerConnection({ iceServers: st.iceServers });
  st.pc = pc;
  st.pcNum = num;
  st.pcState = pc.connectionState;
  // Order matters (protocol): first the caller's camera (recvonly), then our screen (sendonly).
  const cam = pc.addTransceiver("video", { direction: "recvonly" });
  const screen = pc.addTransceiver(st.screenTrack || "video", { direction: "sendonly" });
  st.screenSender = screen.sender;
  showTrack(el("camera-video"), cam.receiver.track);
  pc.addEventListener("track", (ev) => {
    if (ev.transceiver === cam) showTrack(el("camera-video"), ev.track);
  });
  watchConnection(
    pc,
    (state) => {
      if (pc !== st.pc) return;
      st.pcState = state;
      document.body.dataset.pcState = state;
      if (state === "connected") {
        st.recoverDelay = 0;
        st.internalRetried = false;
        clearTimeout(st.watchdog);
      }
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
  renderSignal();
}

async function onAnswer(msg) {
  const pc = st.pc;
  if (!pc || msg.pc !== st.pcNum || typeof msg.sdp !== "string") return;
  try {
    await pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    if (st.screenTrack) st.signal.send({ type: "media", track: "screen", state: "live" });
  } catch (err) {
    console.error("answer failed", err);
    if (pc === st.pc) recover("answer_failed");
  }
}

// New RTCPeerConnection with a larger pc number; first retry at once, then backoff.
function recover(why) {
  if (st.ended || !st.session) return;
  console.info("recovering:", why);
  clearTimeout(st.recoverTimer);
  const delay = st.recoverDelay;
  st.recoverDelay = Math.min(Math.max(delay * 2, 500), 5000);
  st.recoverTimer = setTimeout(() => {
    if (!st.signal || !st.signal.isOpen || !st.wsReady) {
      if (st.signal) st.signal.kick(); // the next welcome starts the new pc
      return;
    }
    startPc();
  }, delay);
}

function onServerError(msg) {
  console.warn("server error", msg.code, msg.message);
  if (st.toolkitError && st.toolkitError(msg)) return; // shown by the toolkit
  switch (msg.code) {
    case "sdp_failed":
      return recover("sdp_failed");
    case "room_ended":
      return onEnded(null);
    case "rate_limited":
      return;
    case "internal":
      if (msg.ref === "offer" && !st.internalRetried) {
        st.internalRetried = true;
        return recover("internal");
      }
      break;
  }
  showError(el("session-error"), { message: msg.message || msg.code, code: msg.code });
}

async function shareScreen() {
  showError(el("share-error"), null);
  const opts = window.callassistShareOptions || { video: true };
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
  stopShare({ silent: true });
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
      recover("replace_failed");
    }
  }
  if (st.signal) st.signal.send({ type: "media", track: "screen", state: "live" });
  renderVideo();
}

function stopShare({ silent = false } = {}) {
  const track = st.screenTrack;
  st.screenTrack = null;
  if (track) track.stop();
  if (st.screenSender && st.pc && st.pc.signalingState !== "closed") {
    st.screenSender.replaceTrack(null).catch(() => {});
  }
  if (track && !silent && st.signal) st.signal.send({ type: "media", track: "screen", state: "stopped" });
  renderVideo();
}

function toggleFullscreen() {
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else el("camera-wrap").requestFullscreen().catch(() => {});
}

// ---------------------------------------------------------------- wiring

function wire() {
  el("login-form").addEventListener("submit", onLogin);
  el("logout").addEventListener("click", logout);
  el("new-session-form").addEventListener("submit", onCreate);
  el("copy-link").addEventListener("click", copyLink);
  el("send-sms").addEventListener("click", sendSms);
  el("new-link").addEventListener("click", newLink);
  el("end-session").addEventListener("click", () => {
    el("end-confirm-box").hidden = false;
    el("end-session-confirm").focus();
  });
  el("end-session-cancel").addEventListener("click", () => (el("end-confirm-box").hidden = true));
  el("end-session-confirm").addEventListener("click", endSession);
  el("new-session").addEventListener("click", showNewForm);
  el("share-screen").addEventListener("click", shareScreen);
  el("stop-share").addEventListener("click", () => stopShare());
  el("fullscreen-camera").addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", renderVideo);
  i18n.onLangChange(() => {
    renderHint();
    renderSession();
    if (st.link) renderLink();
    if (st.me) loadRecent();
  });
  window.addEventListener("online", () => st.signal && st.signal.kick());
}

async function boot() {
  i18n.init();
  wire();
  toolkit.init(st);
  recording.init(st, api, showError);
  smsPreview.init();
  try {
    loggedIn(await api("GET", "/api/me"));
  } catch (err) {
    showLogin(err.status === 401 ? null : err);
  }
}

boot();
