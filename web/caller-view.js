// Caller page: everything shown is derived from the state object `st` (caller.js) here, so
// every event handler only updates `st` and calls render(). Also the shared screen's full
// screen (element fullscreen, or a viewport-covering overlay on iPhone) and the toast.

import { t } from "./i18n.js";
import { helpKey } from "./caller-camera.js";

const el = (id) => document.getElementById(id);
const tid = (id) => document.querySelector(`[data-testid="${id}"]`);

function callState(st) {
  if (st.ended) return "ended";
  if (st.fatal) return "error";
  if (!st.welcome) return "connecting";
  if (!st.wsReady) return "reconnecting";
  if (!st.accepted) return "notice";
  if (!st.cameraTrack) return st.cameraError ? "photos" : st.starting ? "starting" : "ready";
  if (st.pcState === "connected") return st.paused ? "paused" : "live";
  // Once media has flowed, any loss is shown as reconnecting (the page recovers by itself).
  return st.recovering || st.everLive ? "reconnecting" : "connecting";
}

function currentView(st) {
  if (st.ended || st.fatal) return "end";
  if (!st.welcome) return "none";
  if (!st.accepted) return "notice";
  // No camera (st.cameraError says why): the call view without video, photos and chat.
  if (!st.cameraTrack) return st.cameraError ? "call" : "ready";
  return "call";
}

export function render(st, zoom) {
  const state = callState(st);
  st.state = state;
  const view = currentView(st);
  document.body.dataset.view = view;
  document.body.dataset.media = view === "call" && !st.cameraTrack ? "photos" : "camera";
  document.body.dataset.pc = String(st.pcNum);

  const banner = tid("call-state");
  banner.dataset.state = state;
  let key = "c.state." + state;
  if (state === "connecting" && st.cameraTrack) key = "c.state.connecting_media";
  el("state-text").textContent = t(key);
  // Who sees the camera, at all times: the operator's name, not a generic subtitle. Not a
  // data-i18n element: a language switch (or a module's strings arriving) must not reset it.
  el("brand-sub").textContent = (st.notice && st.notice.operator) || t("c.subtitle");

  for (const v of ["notice", "ready", "call", "end"]) el("view-" + v).hidden = view !== v;

  // The reminder stays visible from "ready" until the end of the call.
  const reminder = el("reminder");
  reminder.hidden = !(view === "ready" || view === "call");
  reminder.textContent = (st.notice && st.notice.reminder) || t("c.reminder");

  renderNotice(st);
  renderReady(st);
  renderCall(st, zoom);
  renderEnd(st);
}

function renderNotice(st) {
  el("notice-error").hidden = !st.noticeFailed;
  tid("notice-accept").disabled = !st.notice || !st.wsReady;
}

function renderReady(st) {
  const err = tid("camera-error");
  err.hidden = !st.cameraError || !!st.ended || !!st.fatal;
  err.dataset.reason = st.cameraError || "";
  if (st.cameraError) {
    el("camera-error-title").textContent = t(`c.err.${st.cameraError}.title`);
    el("camera-error-help").textContent = t(helpKey(st.cameraError));
  }
  // Nothing to retry without WebRTC or https; an in-app browser may work "anyway".
  el("camera-retry").hidden = !["denied", "missing", "other"].includes(st.cameraError) || st.starting;
  el("camera-try-anyway").hidden = !(st.cameraError && st.canForce) || st.starting;
  el("camera-stopped").hidden = !st.cameraStopped || !!st.cameraError;
  el("start-camera").disabled = st.starting;
}

function renderCall(st, zoom) {
  const screenOn = !!(st.room && st.room.tracks && st.room.tracks.screen);
  el("stage").classList.toggle("has-screen", screenOn);
  el("stage").dataset.screen = screenOn ? "on" : "off";
  const screenMode = screenOn && currentView(st) === "call";
  if (screenMode && document.body.dataset.screen !== "on" && wakeControls) wakeControls(); // a share starts: controls shown
  document.body.dataset.screen = screenMode ? "on" : "off";
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

function renderEnd(st) {
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
// While the agent shares: the controls over the picture fade after IDLE_MS without a
// touch; any touch brings them back. A tap on the preview moves it to the other corner.
const IDLE_MS = 4000;
let wakeControls = null;
export function setupScreenMode() {
  let timer = null;
  const wake = (wakeControls = () => {
    el("view-call").classList.remove("idle");
    clearTimeout(timer);
    timer = setTimeout(() => el("view-call").classList.add("idle"), IDLE_MS);
  });
  for (const type of ["pointerdown", "keydown", "focusin"]) el("view-call").addEventListener(type, wake);
  el("preview-wrap").addEventListener("click", () => {
    if (document.body.dataset.screen !== "on") return;
    const w = el("preview-wrap");
    w.dataset.corner = w.dataset.corner === "left" ? "right" : "left";
  });
  wake();
}

export function toast(text) {
  const box = el("toast");
  box.textContent = text;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => (box.hidden = true), 8000);
}

// ---------------------------------------------------------------- full screen

export function isFullscreen() {
  return !!document.fullscreenElement || el("screen-wrap").classList.contains("pseudo-fs");
}

export function exitFullscreen() {
  el("screen-wrap").classList.remove("pseudo-fs");
  document.body.classList.remove("no-scroll");
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
}

// iPhone Safari has no element fullscreen: fall back to covering the viewport.
export function toggleFullscreen(render) {
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
