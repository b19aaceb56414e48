// Caller side of the visual-assist toolkit (docs/protocol.md, "Toolkit"): the agent's
// marks over the camera preview, the shared frozen still, camera requests (asked first,
// always shown), pushed links, images and tutorials, chat, the link quality, low-data
// and photo-burst modes. caller.js loads this module once the camera runs, so none of it
// weighs on the page before media.

import { t, onLangChange, extend } from "./i18n.js";
import STRINGS from "./strings/toolkit.js";
import { cameraControl, fmt } from "./toolkit-caller-camera.js";
import { pushes } from "./toolkit-caller-push.js";
import { Overlay } from "./overlay.js";
import { Chat } from "./chat.js";
import { Quality, showQuality } from "./netq.js";

extend(STRINGS);

const el = (id) => document.getElementById(id);
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

  const { askKey, sendCaps, onRequest, answer, applyMode } = cameraControl({ st, tk, send, note, render, useCameraTrack });
  const { onPush, renderPush, closePush, step } = pushes({ tk, send, render });

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
      send({ type: "netq", ...q }); // 0 too: the agent must see an outage, not old bars
    } catch {
      /* stats are best effort */
    }
  }, 1000);

  tk.sendCaps = sendCaps;
  render();
  sendCaps();
  for (const m of early) sig.emit(m.type, m);
}
