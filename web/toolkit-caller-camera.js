// Caller side of the toolkit's camera requests (docs/protocol.md, "Toolkit"): what the
// camera can do (caps), the agent's requests (torch, zoom, the other camera: asked once per
// kind of change per call; low-data and photo modes applied at once and shown), and the
// photo-burst stills. toolkit-caller.js owns the state `tk`.

import { t } from "./i18n.js";
import { api } from "./lib/api.js";

const el = (id) => document.getElementById(id);
const LOW = { maxBitrate: 250000, maxFramerate: 12, scaleResolutionDownBy: 2 };
export const fmt = (v) => String(Math.round(v * 10) / 10);

export function cameraControl({ st, tk, send, note, render, useCameraTrack }) {
  function askKey(req, verb) {
    const a = req.action;
    if (a === "torch") return [`tk.${verb}.torch.${req.value ? "on" : "off"}`];
    if (a === "zoom") return [`tk.${verb}.zoom`, { value: fmt(req.value) }];
    if (a === "facing") return [`tk.${verb}.facing.${req.value}`];
    return [`tk.${verb}.mode.${req.value}`, { s: fmt(tk.settings.photo_interval_s) }];
  }

  // ------------------------------------------------------------ camera requests

  function capsOf() {
    const tr = st.cameraTrack;
    const c = (tr && tr.getCapabilities && tr.getCapabilities()) || {};
    const s = (tr && tr.getSettings && tr.getSettings()) || {};
    const z = c.zoom;
    return {
      torch: c.torch === true || (Array.isArray(c.torch) && c.torch.includes(true)),
      torch_on: !!s.torch,
      zoom: z && z.max > z.min ? { min: z.min, max: z.max, step: z.step || 0.1, value: Math.min(z.max, Math.max(z.min, s.zoom || z.min)) } : null,
      can_switch: tk.cameras > 1,
      facing: s.facingMode === "user" || s.facingMode === "environment" ? s.facingMode : null,
      mode: tk.mode,
    };
  }

  async function sendCaps() {
    try {
      const devices = await navigator.mediaDevices.enumerateDevices();
      tk.cameras = devices.filter((d) => d.kind === "videoinput").length;
    } catch {
      /* keep the last count */
    }
    send({ type: "caps", ...capsOf() });
  }

  const reply = (req, result) => send({ type: "camera_result", id: req.id, action: req.action, result });

  function onRequest(req) {
    const c = capsOf();
    const ok = { torch: c.torch, zoom: !!c.zoom, facing: c.can_switch, mode: true }[req.action];
    if (!ok) {
      reply(req, "unsupported");
      note(t("tk.no." + req.action));
      return;
    }
    // Less video is never a privacy question: modes apply at once (and are shown).
    if (req.action === "mode" || tk.allowed.has(req.action)) return apply(req);
    if (tk.ask) reply(tk.ask, "refused"); // superseded by the newer request
    tk.ask = req;
    render();
    el("tk-allow").focus();
  }

  function answer(allow) {
    const req = tk.ask;
    tk.ask = null;
    render();
    if (!req) return;
    if (!allow) return reply(req, "refused");
    tk.allowed.add(req.action);
    apply(req);
  }

  async function apply(req) {
    const tr = st.cameraTrack;
    let shown = req;
    try {
      if (!tr) throw new Error("no camera");
      if (req.action === "torch") {
        await tr.applyConstraints({ advanced: [{ torch: req.value }] });
        tk.torch = req.value;
      } else if (req.action === "zoom") {
        const z = capsOf().zoom;
        const v = Math.min(z.max, Math.max(z.min, req.value));
        await tr.applyConstraints({ advanced: [{ zoom: v }] });
        tk.zoom = v > z.min ? v : null;
        shown = { ...req, value: v };
      } else if (req.action === "facing") {
        await switchCamera(req.value);
      } else {
        await setMode(req.value);
      }
    } catch (err) {
      console.warn("camera change failed", err);
      reply(req, "failed");
      note(t(req.action === "mode" ? "tk.no.mode" : "tk.cam_failed"));
      return;
    }
    reply(req, "applied");
    note(t(...askKey(shown, "did")));
    render();
    sendCaps();
  }

  async function switchCamera(facing) {
    const old = st.cameraTrack;
    const want = (f) => ({ video: { facingMode: { ideal: f }, width: { ideal: 1280 }, height: { ideal: 720 } }, audio: false });
    let stream;
    try {
      stream = await navigator.mediaDevices.getUserMedia(want(facing));
    } catch {
      // Many phones open one camera at a time: free this one and try again.
      const before = old.getSettings().facingMode || "environment";
      old.stop();
      try {
        stream = await navigator.mediaDevices.getUserMedia(want(facing));
      } catch (err) {
        try {
          stream = await navigator.mediaDevices.getUserMedia(want(before));
        } catch {
          old.dispatchEvent(new Event("ended")); // caller.js offers "Start camera" again
          throw err;
        }
        useCameraTrack(stream.getVideoTracks()[0]);
        throw err;
      }
    }
    tk.torch = false;
    tk.zoom = null;
    useCameraTrack(stream.getVideoTracks()[0]);
  }

  // ------------------------------------------------------------ low-data and photo modes

  async function setMode(mode) {
    tk.mode = mode;
    clearInterval(tk.photoTimer);
    await applyMode();
    if (mode === "photo") {
      tk.photoTimer = setInterval(shoot, tk.settings.photo_interval_s * 1000);
      shoot();
    }
  }

  // Sender parameters of the camera: lower resolution, frame rate and bitrate in "low";
  // no video at all in "photo" (stills go over HTTP instead). Applied again to every new
  // peer connection.
  async function applyMode() {
    const sender = st.cameraSender;
    tk.sender = sender;
    if (!sender) return;
    const p = sender.getParameters();
    if (!p.encodings || !p.encodings.length) return; // not negotiated yet: the tick retries
    const e = p.encodings[0];
    e.active = tk.mode !== "photo";
    if (tk.mode === "low") Object.assign(e, LOW);
    else {
      delete e.maxBitrate;
      delete e.maxFramerate;
      e.scaleResolutionDownBy = 1;
    }
    await sender.setParameters(p);
    tk.applied = tk.mode;
  }

  async function shoot() {
    const v = el("camera-preview");
    // Never while the caller paused the camera.
    if (tk.mode !== "photo" || tk.shooting || st.paused || !st.cameraTrack || !v.videoWidth) return;
    tk.shooting = true;
    try {
      const k = Math.min(1, 1280 / Math.max(v.videoWidth, v.videoHeight));
      const c = document.createElement("canvas");
      c.width = Math.round(v.videoWidth * k);
      c.height = Math.round(v.videoHeight * k);
      c.getContext("2d").drawImage(v, 0, 0, c.width, c.height);
      let blob = null;
      for (const q of [0.8, 0.6, 0.4]) {
        blob = await new Promise((r) => c.toBlob(r, "image/jpeg", q));
        if (blob && blob.size <= tk.settings.max_frame_bytes) break;
      }
      const data = await api("POST", "/api/caller/blobs?kind=still", blob);
      send({ type: "still", image: data.blob.id });
    } catch (err) {
      console.warn("still failed", err);
    } finally {
      tk.shooting = false;
    }
  }

  return { askKey, sendCaps, onRequest, answer, applyMode };
}
