// Ops console: a supervisor's silent watch of a room's camera (/ws/watch/{room},
// docs/protocol.md "Supervisor"): the same signalling client (ws.js) and peer connection
// with recovery (lib/pc-session.js) as the agent and caller pages, receive-only.

import * as i18n from "./i18n.js";
import { Signal } from "./ws.js";
import { showTrack } from "./rtc.js";
import { PcSession } from "./lib/pc-session.js";
import { state } from "./ops-state.js";

const t = i18n.t;
const $ = (id) => document.getElementById(id);
const SHOWN = ["connecting", "connected", "failed", "closed"]; // connectionStates shown as they are

export function setWatchState(s) {
  if (!state.watch) return;
  state.watch.state = s;
  const el = $("watch-state");
  el.dataset.state = s;
  el.textContent = t(`watch.${s}`);
}

export function stopWatch() {
  const w = state.watch;
  if (!w) return;
  state.watch = null;
  w.signal.close();
  w.media.close();
  $("watch-video").srcObject = null;
  $("watch-panel").hidden = true;
  document.body.classList.remove("watching");
}

export function startWatch(roomId) {
  stopWatch();
  const signal = new Signal(`/ws/watch/${encodeURIComponent(roomId)}`);
  let pcNum = 0; // every watch is a new participant: its pc numbers start at 1
  const w = { roomId, signal, state: "idle", welcomed: false, iceServers: [] };
  const current = () => state.watch === w;
  w.media = new PcSession({
    signal: () => signal,
    iceServers: () => w.iceServers,
    ready: () => current() && w.welcomed && w.state !== "ended",
    alive: () => current() && w.state !== "ended",
    nextNumber: () => ++pcNum,
    setup(pc) {
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addEventListener("track", (e) => showTrack($("watch-video"), e.track));
    },
    onStart: () => setWatchState("connecting"),
    onChange: (s) => SHOWN.includes(s) && setWatchState(s),
  });
  Object.defineProperty(w, "pc", { get: () => w.media.pc, enumerable: true });
  state.watch = w;
  $("watch-room").textContent = roomId;
  $("watch-panel").hidden = false;
  document.body.classList.add("watching");
  setWatchState("idle");
  signal.on("welcome", (msg) => {
    w.welcomed = true;
    w.iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
    w.media.start();
  });
  signal.on("answer", (msg) => w.media.answer(msg));
  signal.on("error", (msg) => w.media.serverError(msg));
  signal.on("ended", () => current() && setWatchState("ended"));
  signal.on("refused", (r) => {
    signal.close(); // not logged in, or the room is gone: retrying cannot help
    if (current()) setWatchState(r.code === "room_ended" ? "ended" : "closed");
  });
  signal.on("close", () => {
    w.welcomed = false;
    if (current() && w.state !== "ended") setWatchState("closed");
  });
  signal.connect();
}
