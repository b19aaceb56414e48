// Caller page: the recording indicator, the agent's snapshots and photo uploads from the
// gallery (docs/protocol.md, "Recording, snapshots and photos").
//
// - While room.recording.active is true a red "Recording" badge stays on screen (top of
//   the page, and on the shared screen in full screen too).
// - `snapshot` from the server: take a still of the camera (ImageCapture.takePhoto() at
//   the camera's resolution where the browser has it, else the current video frame on a
//   canvas) and upload it; the caller is told. If that is impossible, `snapshot_failed`.
// - "Send a photo": the same reminder as before the camera, then the gallery picker; the
//   server checks, cleans (EXIF/GPS) and stores it, and says why when it refuses.

import { extend, onLangChange, t } from "./i18n.js";
import STRINGS from "./strings/recording-caller.js";
import { api } from "./lib/api.js";

extend(STRINGS);

const el = (id) => document.getElementById(id);
const TAKE_PHOTO_TIMEOUT_MS = 4000;

export function setupRecording(st) {
  const ui = {
    badge: el("rec-indicator"),
    fsBadge: el("rec-indicator-fs"),
    box: el("photo-upload"),
    send: el("upload-photo"),
    file: el("photo-file"),
    confirm: el("photo-confirm"),
    reminder: el("photo-reminder-text"),
    status: el("photo-status"),
  };
  let statusKey = null;
  let statusVars = null;
  let busy = false;

  function render() {
    const rec = st.room && st.room.recording;
    const on = !!(rec && rec.active) && !st.ended && !st.fatal;
    ui.badge.hidden = !on;
    ui.fsBadge.hidden = !on;
    document.body.dataset.recording = on ? "on" : "off";
    const view = document.body.dataset.view;
    ui.box.hidden = !(view === "ready" || view === "call");
    if (ui.box.hidden) ui.confirm.hidden = true;
    ui.send.disabled = busy;
    ui.reminder.textContent = (st.notice && st.notice.reminder) || t("c.reminder");
    ui.status.hidden = !statusKey;
    if (statusKey) ui.status.textContent = t(statusKey, statusVars || undefined);
  }

  let statusTimer = null;
  function setStatus(state, key, vars) {
    ui.status.dataset.state = state;
    statusKey = key;
    statusVars = vars || null;
    clearTimeout(statusTimer);
    if (state === "sent" || state === "snapshot") {
      statusTimer = setTimeout(() => {
        statusKey = null;
        ui.status.dataset.state = "";
        render();
      }, 8000);
    }
    render();
  }

  async function upload(blob, snapshotId) {
    const path = "/api/caller/photos" + (snapshotId ? "?snapshot=" + encodeURIComponent(snapshotId) : "");
    busy = true;
    if (!snapshotId) setStatus("sending", "c.photo.sending");
    delete ui.status.dataset.code;
    try {
      await api("POST", path, blob);
      if (snapshotId) setStatus("snapshot", "c.photo.snapshot");
      else setStatus("sent", "c.photo.sent");
    } catch (err) {
      if (snapshotId) setStatus("error", "c.photo.snapshot_failed");
      else setStatus("error", "c.photo.failed", { message: err.message || t("common.network_error") });
      ui.status.dataset.code = err.code || "network";
    } finally {
      busy = false;
      render();
    }
  }

  // ------------------------------------------------------------ snapshots

  function withTimeout(promise, ms) {
    return Promise.race([promise, new Promise((_, reject) => setTimeout(() => reject(new Error("timeout")), ms))]);
  }

  function videoFrame() {
    const video = el("camera-preview");
    if (!video || !video.videoWidth) return Promise.resolve(null);
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.92));
  }

  async function takeSnapshot(id) {
    const track = st.cameraTrack;
    const fail = (reason) => {
      st.signal.send({ type: "snapshot_failed", id, reason });
      setStatus("error", "c.photo.snapshot_failed");
    };
    if (!track || track.readyState !== "live") return fail("no_camera");
    if (st.paused || !track.enabled) return fail("camera_paused");
    let blob = null;
    if (typeof window.ImageCapture === "function") {
      try {
        blob = await withTimeout(new window.ImageCapture(track).takePhoto(), TAKE_PHOTO_TIMEOUT_MS);
      } catch (err) {
        console.info("takePhoto unavailable, using the video frame", err && err.name);
      }
    }
    if (!blob || !blob.size) blob = await videoFrame();
    if (!blob) return fail("capture_failed");
    await upload(blob, id);
  }

  // ------------------------------------------------------------ gallery

  ui.send.addEventListener("click", () => {
    ui.confirm.hidden = false; // the reminder first, every time
    render();
    el("photo-choose").focus();
  });
  el("photo-cancel").addEventListener("click", () => {
    ui.confirm.hidden = true;
    render();
  });
  el("photo-choose").addEventListener("click", () => {
    ui.confirm.hidden = true;
    ui.file.value = "";
    ui.file.click();
  });
  ui.file.addEventListener("change", () => {
    const file = ui.file.files && ui.file.files[0];
    // A file can reach the input without the "Choose" button (WebKit's file dialog or a
    // drop hands it straight to the input): the reminder was read, close it either way.
    ui.confirm.hidden = true;
    if (file) upload(file, null);
  });

  st.signal.on("snapshot", (msg) => takeSnapshot(String(msg.id || "")));
  for (const type of ["welcome", "room", "ended", "close"]) st.signal.on(type, () => setTimeout(render));
  // The page's own render() sets body[data-view]; follow it.
  new MutationObserver(render).observe(document.body, { attributes: true, attributeFilter: ["data-view"] });
  onLangChange(render);
  render();
  return { render };
}
