// Agent side of the toolkit's drawing and freeze (docs/protocol.md, "Toolkit"): the pointer
// and marks over the caller's camera (or the frozen still), and the freeze itself: the
// still is taken here, from the video this page receives, so both sides show the same
// pixels; saved with its marks as a snapshot. toolkit-agent.js owns the state `tk`.

import { t } from "./i18n.js";
import { api } from "./lib/api.js";
import { drawMark, frameSize } from "./overlay.js";

const el = (id) => document.getElementById(id);
const SEND_EVERY_MS = 90; // stroke updates while drawing (the server allows 20/s)
const POINTER_EVERY_MS = 40; // pointer moves (the server keeps at most 30/s)
const MAX_POINTS = 300;

async function jpeg(canvas, limit) {
  for (const q of [0.92, 0.8, 0.65, 0.5]) {
    const blob = await new Promise((r) => canvas.toBlob(r, "image/jpeg", q));
    if (blob && blob.size <= limit) return blob;
  }
  return null;
}

export function drawTools({ tk, send, status, render, sessionId }) {
  // The live picture is the video, or in photo-burst mode the latest still.
  const liveMedia = () => (tk.still ? el("tk-still") : el("camera-video"));
  const surface = () => (tk.frozen ? tk.freezeOverlay : tk.overlay);

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

  // ---------------------------------------------------------------- freeze and snapshot

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
      const data = await api("POST", `/api/sessions/${encodeURIComponent(sessionId())}/blobs?kind=frame`, blob);
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
    tk.freezeOverlay.remove();
    el("tk-freeze-img").src = m.src;
    status(el("tk-tool-status"), "");
    render();
  }

  function onUnfrozen() {
    tk.frozen = null;
    tk.freezing = false;
    tk.drawing = null;
    tk.freezeOverlay.remove();
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
      for (const m of tk.freezeOverlay.marks.values()) drawMark(g, m, { x: 0, y: 0, w, h });
      const blob = await jpeg(c, tk.settings.max_image_bytes);
      await api("POST", `/api/sessions/${encodeURIComponent(sessionId())}/freeze/snapshot`, blob);
      status(node, t("ta.snapshot.saved"), "ok");
    } catch (err) {
      status(node, t("ta.snapshot.failed", { message: err.message + (err.code ? " (" + err.code + ")" : "") }), "error");
    }
  }

  return { liveMedia, surface, onDown, onMove, onUp, clearMarks, freeze, toggleFreeze, onFrozen, onUnfrozen, saveSnapshot };
}
