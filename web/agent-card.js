// Agent console: the open session's card (state, the one-time link with its QR code, SMS,
// copy, the caller's progress, the video placeholders and the connection banner). Every
// render function derives what is shown from `st` (agent-state.js).

import * as i18n from "./i18n.js";
import { t } from "./i18n.js";
import { api, showError } from "./lib/api.js";
import { st, STEPS, STATUS_RANK } from "./agent-state.js";
import * as smsPreview from "./sms-preview.js";

const el = (id) => document.getElementById(id);

// Set a translated text and remember its key, so a language switch keeps it.
export function setText(node, key) {
  node.dataset.i18n = key;
  node.textContent = t(key);
}

export function fmtTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return "";
  const sameDay = d.toDateString() === new Date().toDateString();
  const opts = sameDay ? { hour: "2-digit", minute: "2-digit" } : { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" };
  return new Intl.DateTimeFormat(i18n.lang(), opts).format(d);
}

export function renderHint() {
  el("phone-hint").textContent = t("a.new.phone_hint", { code: st.defaultCountryCode });
}

export function renderLink() {
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

export function renderSession() {
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
  // The caller's page cannot share the camera: why, and that photos and chat still work.
  const noCamera = !st.ended && st.room && st.room.caller && st.room.caller.camera_unavailable;
  el("caller-camera").hidden = !noCamera;
  el("caller-camera").dataset.reason = noCamera || "";
  el("caller-camera").textContent = noCamera ? t("a.camera." + noCamera) + " " + t("a.camera.photos") : "";

  // Also after the caller opened the link (lost tab in another browser, cookies cleared):
  // the server revokes the old link and keeps the session.
  el("new-link").hidden = st.ended;

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

// The link is single-use: once the caller opened it, it is only clutter, unless the agent
// asked for a new one after that (it is to be sent).
export function renderLinkVisibility() {
  el("link-block").hidden = !st.link || st.ended || (st.maxRank >= 1 && !st.linkAfterOpen);
}

export function renderVideo() {
  const tracks = (st.room && st.room.tracks) || {};
  const status = callerStatus();
  let placeholder = null;
  if (st.ended) placeholder = "a.camera.ended";
  else if (status === "paused") placeholder = "a.camera.paused";
  else if (status === "left") placeholder = "a.status.left";
  // At once, not when the server's track ends (up to ~12 s later): the last frame of a
  // closed tab must not look like a live picture.
  else if (status === "reconnecting" || (status === "live" && st.callerLinkDown)) placeholder = "a.camera.reconnecting";
  else if (!tracks.camera && status !== "live") {
    placeholder = status === "reconnecting" ? "a.camera.reconnecting" : "a.camera.waiting";
  }
  const ph = el("camera-placeholder");
  ph.hidden = !placeholder;
  ph.textContent = placeholder ? t(placeholder) : "";
  ph.dataset.reason = placeholder ? placeholder.split(".").pop() : "";
  renderVideoState(placeholder, status);
  const nf = el("camera-noframes");
  nf.hidden = !st.noFrames || !!placeholder;
  nf.textContent = st.noFrames ? t("a.camera.noframes", st.noFrames) : "";
  renderCodecWarning();
  el("fullscreen-camera").textContent = t(document.fullscreenElement ? "common.exit_fullscreen" : "common.fullscreen");

  el("fullscreen-camera").hidden = st.ended;
  el("video-bar").hidden = st.ended;
  if (st.ended) el("share-area").hidden = true; // its share ended with the session
  const sharing = !!st.screenTrack;
  el("share-screen").hidden = sharing || st.ended;
  el("stop-share").hidden = !sharing || st.ended;
  el("share-status").hidden = !sharing || st.ended;
}

// The caller's state as a chip on the picture, so the agent never takes a frozen last frame
// for a live one: `data-state` = live, noframe (live, nothing decoded yet), stale (frames
// stopped), paused, reconnecting, left, waiting, ended.
function renderVideoState(placeholder, status) {
  let state = placeholder ? placeholder.split(".").pop() : "";
  if (!state && status === "live") state = st.noFrames ? "stale" : st.noFrameYet ? "noframe" : "live";
  if (!state) state = "waiting";
  const chip = el("video-caller-state");
  chip.dataset.state = state;
  chip.textContent = t("a.vstate." + state);
}

// The connection banner only appears when something is wrong or still starting.
export function renderSignal() {
  const banner = el("signal-state");
  let state = "connected";
  if (!st.session || st.ended) state = "idle";
  else if (!st.wsReady) state = st.everConnected ? "reconnecting" : "connecting";
  banner.dataset.state = state;
  banner.hidden = state === "idle" || state === "connected";
  el("signal-text").textContent = state === "reconnecting" ? t("a.state.reconnecting") : t("a.state.connecting");
  document.body.dataset.pc = String(st.pcNum);
}

export function resetSms() {
  el("sms-status").textContent = "";
  el("sms-status").dataset.state = "";
  setText(el("send-sms"), "a.sms.send");
}

export async function newLink() {
  const s = st.session;
  if (!s) return;
  el("new-link").disabled = true;
  try {
    const data = await api("POST", `/api/sessions/${encodeURIComponent(s.id)}/link`);
    st.link = { link: data.link, qr_svg: data.qr_svg, expires_at: data.expires_at, sms: data.sms };
    st.linkAfterOpen = st.maxRank >= 1;
    renderLink();
    smsPreview.show(data.sms);
    resetSms();
    el("new-link-status").textContent = t("a.link.renewed");
  } catch (err) {
    showError(el("session-error"), err);
  } finally {
    el("new-link").disabled = false;
  }
}

export async function sendSms() {
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

export async function copyLink() {
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

// room.codec_mismatch: the camera in a codec this browser did not accept (the server does
// not transcode: no picture here, ever), or our screen in a codec the caller's browser
// cannot show (agent-media.js switches it to H264 when this browser can send H264).
function renderCodecWarning() {
  const cm = (!st.ended && st.room && st.room.codec_mismatch) || {};
  let key = null;
  let track = "";
  if (cm.camera) [key, track] = ["a.codec.camera", "camera"];
  else if (cm.screen) [key, track] = [st.screenCodec ? "a.codec.screen_switching" : "a.codec.screen", "screen"];
  const w = el("codec-warning");
  w.hidden = !key;
  w.dataset.track = track;
  w.dataset.codec = (cm[track] || "");
  w.textContent = key ? t(key, { codec: cm[track] }) : "";
}
