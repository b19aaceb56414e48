// Caller side of the visual-assist toolkit (docs/protocol.md, "Toolkit"): the agent's
// marks over the camera preview, the shared frozen still, camera requests (asked first,
// always shown), pushed links, images and tutorials, chat, the link quality, low-data
// and photo-burst modes. caller.js loads this module once the camera runs, so none of it
// weighs on the page before media.

import "./toolkit-strings.js";
import { t, lang, onLangChange } from "./i18n.js";
import { Overlay } from "./overlay.js";
import { Chat } from "./chat.js";
import { Quality, showQuality } from "./netq.js";

const el = (id) => document.getElementById(id);
const LOW = { maxBitrate: 250000, maxFramerate: 12, scaleResolutionDownBy: 2 };
const NOTE_MS = 6000;

export function setup({ st, useCameraTrack, early }) {
  const css = document.createElement("link");
  css.rel = "stylesheet";
  css.href = "/static/toolkit.css";
  document.head.append(css);

  const sig = st.signal;
  const send = (m) => sig.send(m);
  const tk = {
    settings: { fade_s: 4, photo_interval_s: 2, max_frame_bytes: 300000 },
    allowed: new Set(), // kinds of camera change the caller allowed for this call
    ask: null, // the camera_request waiting for Allow / Refuse
    mode: "normal",
    torch: false,
    zoom: null,
    cameras: 1,
    frozen: null,
    freezing: false,
    push: null,
    tut: null,
    step: 0,
    sender: null,
    track: null,
    shooting: false,
  };
  window.callassistToolkit = tk; // for tests (tk.sendCaps re-reads the camera)
  const overlay = (tk.overlay = new Overlay(el("tk-overlay"), el("camera-preview")));
  const still = (tk.freezeOverlay = new Overlay(el("tk-freeze-overlay"), el("tk-freeze-img"), Infinity));
  const chatBox = el("tk-chat");
  const chat = (tk.chat = new Chat(chatBox, { role: "caller", send, isOpen: () => !chatBox.hidden, onChange: render }));
  const quality = new Quality("out");
  const surface = (m) => (m.on === "freeze" ? still : overlay);
  const netq = document.querySelector("[data-testid=netq]");

  // ------------------------------------------------------------ notes

  let noteTimer = 0;
  let noteAction = null;
  function note(text, action = null) {
    const n = el("tk-note");
    n.textContent = text;
    n.hidden = false;
    noteAction = action;
    clearTimeout(noteTimer);
    noteTimer = setTimeout(() => (n.hidden = true), NOTE_MS);
  }
  el("tk-note").addEventListener("click", () => {
    el("tk-note").hidden = true;
    if (noteAction) noteAction();
  });

  // ------------------------------------------------------------ rendering

  function render() {
    el("tk-chat-open").hidden = el("tk-freeze-btn").hidden = false;
    const fb = el("tk-freeze-btn");
    const key = tk.frozen ? "tk.unfreeze" : tk.freezing ? "tk.freezing" : "tk.freeze";
    fb.dataset.i18n = key;
    fb.textContent = t(key);
    fb.dataset.state = tk.frozen ? "frozen" : tk.freezing ? "freezing" : "live";
    fb.disabled = tk.freezing;
    el("tk-freeze").hidden = !tk.frozen;
    if (tk.frozen) el("tk-freeze-label").textContent = t(tk.frozen.by === "caller" ? "tk.frozen.caller" : "tk.frozen.agent");
    el("tk-prompt").hidden = !tk.ask;
    if (tk.ask) el("tk-prompt-text").textContent = t(...askKey(tk.ask, "ask"));
    const parts = [];
    if (tk.torch) parts.push(t("tk.tag.torch"));
    if (tk.zoom) parts.push(fmt(tk.zoom) + "×");
    if (tk.mode !== "normal") parts.push(t("tk.tag." + tk.mode));
    el("tk-tag").hidden = !parts.length;
    el("tk-tag").textContent = parts.join(" · ");
    const unread = chat.unread;
    el("tk-badge").hidden = !unread || !chatBox.hidden;
    el("tk-badge").textContent = String(unread);
    renderPush();
  }

  const fmt = (v) => String(Math.round(v * 10) / 10);
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
      const res = await fetch("/api/caller/blobs?kind=still", {
        method: "POST",
        body: blob,
        credentials: "same-origin",
        headers: { "Content-Type": "image/jpeg" },
      });
      if (res.ok) send({ type: "still", image: (await res.json()).blob.id });
    } catch (err) {
      console.warn("still failed", err);
    } finally {
      tk.shooting = false;
    }
  }

  // ------------------------------------------------------------ freeze

  function onFrozen(m) {
    tk.frozen = m;
    tk.freezing = false;
    still.remove();
    el("tk-freeze-img").src = m.src;
    render();
  }

  function onUnfrozen() {
    tk.frozen = null;
    tk.freezing = false;
    still.remove();
    el("tk-freeze-img").removeAttribute("src");
    render();
  }

  function toggleFreeze() {
    if (tk.frozen) send({ type: "unfreeze" });
    else if (send({ type: "freeze" })) {
      tk.freezing = true;
      setTimeout(() => {
        if (tk.freezing) {
          tk.freezing = false;
          render();
        }
      }, 8000);
    }
    render();
  }

  // ------------------------------------------------------------ pushes

  function onPush(m) {
    tk.push = m;
    tk.tut = null;
    tk.step = 0;
    send({ type: "push_state", id: m.id, state: "shown" });
    if (m.kind === "tutorial") {
      fetch(m.src, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : Promise.reject(new Error("HTTP " + r.status))))
        .then((tut) => {
          if (tk.push === m) {
            tk.tut = tut;
            render();
          }
        })
        .catch((err) => console.warn("tutorial failed", err));
    }
    render();
  }

  // Only http(s) links are ever made clickable, whatever the server sent.
  function safeLink(url) {
    try {
      const u = new URL(url);
      return (u.protocol === "https:" || u.protocol === "http:") && !u.username && !u.password ? u : null;
    } catch {
      return null;
    }
  }

  function renderPush() {
    const m = tk.push;
    const card = el("tk-push");
    card.hidden = !m;
    if (!m) return;
    card.dataset.kind = m.kind;
    const L = lang();
    let title = m.title || "";
    let host = "";
    let text = "";
    let img = "";
    const open = el("tk-push-open");
    const link = m.kind === "link" ? safeLink(m.url) : null;
    open.hidden = !link;
    if (link) open.href = link.href;
    else open.removeAttribute("href");
    if (m.kind === "link") {
      title = title || t("tk.push.link");
      host = link ? link.host : "";
      if (!link) text = t("tk.push.bad");
    } else if (m.kind === "image") {
      title = title || t("tk.push.image");
      img = m.src;
    } else if (tk.tut) {
      const steps = tk.tut.steps;
      const s = steps[tk.step];
      title = tk.tut.title[L] || "";
      text = s.text[L] || "";
      img = s.image || "";
      el("tk-step").textContent = t("tk.step", { n: tk.step + 1, total: steps.length });
      el("tk-step-back").disabled = tk.step === 0;
      const last = tk.step === steps.length - 1;
      el("tk-step-next").dataset.i18n = last ? "tk.close" : "tk.next";
      el("tk-step-next").textContent = t(last ? "tk.close" : "tk.next");
    }
    el("tk-push-nav").hidden = !tk.tut;
    el("tk-push-title").textContent = title;
    el("tk-push-host").textContent = host;
    el("tk-push-host").hidden = !host;
    el("tk-push-text").textContent = text;
    el("tk-push-text").hidden = !text;
    const im = el("tk-push-img");
    im.hidden = !img;
    if (img && im.getAttribute("src") !== img) im.src = img;
  }

  function closePush() {
    if (tk.push) send({ type: "push_state", id: tk.push.id, state: "closed" });
    tk.push = tk.tut = null;
    el("tk-push-img").removeAttribute("src");
    render();
  }

  function step(d) {
    if (!tk.tut) return;
    const next = tk.step + d;
    if (next >= tk.tut.steps.length) return closePush();
    tk.step = Math.max(0, next);
    send({ type: "push_state", id: tk.push.id, state: "shown", step: tk.step + 1 });
    render();
  }

  // ------------------------------------------------------------ chat

  function openChat(open = true) {
    chatBox.hidden = !open;
    if (open) {
      el("tk-note").hidden = true;
      chat.scroll();
      chat.seen();
      chatBox.querySelector("input").focus();
    }
    render();
  }

  function onChat(m) {
    const fresh = !chat.items.has(m.n);
    chat.onMessage(m);
    if (fresh && m.from === "agent" && chatBox.hidden) note(t("tk.chat.from_agent") + ": " + m.text, () => openChat());
  }

  // ------------------------------------------------------------ wiring

  const settings = (welcome) => {
    if (!welcome || !welcome.toolkit) return;
    tk.settings = welcome.toolkit;
    overlay.fadeMs = tk.settings.fade_s * 1000;
  };
  settings(st.welcome);
  // A new socket: the server replays what is still current (still, marks, chat).
  sig.on("welcome", (m) => {
    settings(m);
    overlay.remove();
    onUnfrozen();
    sendCaps();
  });
  sig.on("pointer", (m) => surface(m).point(m.x, m.y));
  sig.on("mark", (m) => {
    if (m.on === "camera" || (tk.frozen && m.frame === tk.frozen.frame)) surface(m).add(m);
  });
  sig.on("clear", (m) => surface(m).remove(m.id ?? null));
  sig.on("frozen", onFrozen);
  sig.on("unfrozen", onUnfrozen);
  sig.on("camera_request", onRequest);
  sig.on("push", onPush);
  sig.on("chat", onChat);
  sig.on("chat_receipt", (m) => chat.onReceipt(m));
  // Errors about our own toolkit messages are shown here, not as caller.js's toast.
  st.toolkitError = (msg) => {
    if (msg.ref === "freeze" || msg.ref === "unfreeze") {
      tk.freezing = false;
      note(t(msg.code === "peer_absent" ? "tk.absent" : "tk.cam_failed"));
      render();
      return true;
    }
    return ["chat", "chat_receipt", "caps", "still", "camera_result", "push_state", "netq"].includes(msg.ref);
  };

  el("tk-freeze-btn").addEventListener("click", toggleFreeze);
  el("tk-chat-open").addEventListener("click", () => openChat(chatBox.hidden));
  el("tk-chat-close").addEventListener("click", () => openChat(false));
  el("tk-allow").addEventListener("click", () => answer(true));
  el("tk-refuse").addEventListener("click", () => answer(false));
  el("tk-push-close").addEventListener("click", closePush);
  el("tk-step-back").addEventListener("click", () => step(-1));
  el("tk-step-next").addEventListener("click", () => step(1));
  el("tk-push-open").addEventListener("click", () => tk.push && send({ type: "push_state", id: tk.push.id, state: "opened" }));
  onLangChange(render);

  // Once a second: the quality indicator, and follow camera / connection changes.
  setInterval(async () => {
    if (st.cameraTrack !== tk.track && st.cameraTrack) {
      tk.track = st.cameraTrack;
      sendCaps();
    }
    if (st.cameraSender && (st.cameraSender !== tk.sender || tk.applied !== tk.mode)) {
      applyMode().catch(() => {}); // a new peer connection keeps the agent's choice
    }
    try {
      const q = await quality.sample(st.pc, !st.paused && tk.mode !== "photo");
      showQuality(netq, q, t("tk.netq"));
      if (q.score) send({ type: "netq", ...q });
    } catch {
      /* stats are best effort */
    }
  }, 1000);

  tk.sendCaps = sendCaps;
  render();
  sendCaps();
  for (const m of early) sig.emit(m.type, m);
}
