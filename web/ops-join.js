// Ops console: a supervisor JOINS a room visibly (/ws/join/{room}, docs/protocol.md "Team").
// Unlike the silent watch (ops-watch.js) the caller's page names the joiner first, and
// the joiner sees both tracks (one receive-only peer connection per track: a media leg
// receives one track), marks on the caller's camera (a click = a pinned circle) and chats.
// The caller may ask the joiner to leave (`removed`).

import * as i18n from "./i18n.js";
import { Signal } from "./ws.js";
import { showTrack } from "./rtc.js";
import { PcSession } from "./lib/pc-session.js";

const t = i18n.t;

i18n.extend({
  lv: {
    "join.title": "Pievienojies zvanam",
    "join.leave": "Iziet",
    "join.hint": "Zvanītājs redz jūsu vārdu un lomu un var lūgt jūs iziet. Klikšķis uz kameras attēla atzīmē vietu.",
    "join.chat": "Ziņa zvanītājam",
    "join.send": "Sūtīt",
    "join.state.connecting": "savienojas",
    "join.state.connected": "pievienojies",
    "join.state.closed": "slēgts",
    "join.state.ended": "zvans beidzies",
    "join.state.removed": "zvanītājs lūdza jūs iziet",
    "join.state.full": "zvanā jau ir maksimālais dalībnieku skaits",
  },
  en: {
    "join.title": "Joined the call",
    "join.leave": "Leave",
    "join.hint": "The caller sees your name and role and can ask you to leave. A click on the camera picture marks the spot.",
    "join.chat": "Message to the caller",
    "join.send": "Send",
    "join.state.connecting": "connecting",
    "join.state.connected": "joined",
    "join.state.closed": "closed",
    "join.state.ended": "call ended",
    "join.state.removed": "the caller asked you to leave",
    "join.state.full": "the call has the most participants it may have",
  },
  ru: {
    "join.title": "Вы в звонке",
    "join.leave": "Выйти",
    "join.hint": "Звонящий видит ваше имя и роль и может попросить вас выйти. Щелчок по изображению камеры отмечает место.",
    "join.chat": "Сообщение звонящему",
    "join.send": "Отправить",
    "join.state.connecting": "соединение",
    "join.state.connected": "в звонке",
    "join.state.closed": "закрыто",
    "join.state.ended": "звонок окончен",
    "join.state.removed": "звонящий попросил вас выйти",
    "join.state.full": "в звонке уже максимальное число участников",
  },
});

let current = null;

function panel() {
  let p = document.getElementById("join-panel");
  if (p) return p;
  p = document.createElement("aside");
  p.id = "join-panel";
  p.className = "watch join";
  p.dataset.testid = "join-panel";
  p.innerHTML = `
    <div class="watch-head">
      <strong data-i18n="join.title"></strong>
      <span class="badge" data-testid="join-state" data-state="idle"></span>
      <button type="button" class="btn btn-small" data-testid="join-leave" data-i18n="join.leave"></button>
    </div>
    <video data-testid="join-camera" autoplay playsinline muted style="object-fit: contain; cursor: crosshair"></video>
    <video data-testid="join-screen" autoplay playsinline muted></video>
    <ol class="join-chat" data-testid="join-chat"></ol>
    <form class="join-say" data-testid="join-say">
      <input type="text" maxlength="1000" data-testid="join-chat-input" data-i18n-placeholder="join.chat">
      <button type="submit" class="btn btn-small" data-testid="join-chat-send" data-i18n="join.send"></button>
    </form>
    <p class="hint" data-i18n="join.hint"></p>`;
  document.body.append(p);
  p.querySelector("[data-testid=join-leave]").addEventListener("click", stopJoin);
  p.querySelector("[data-testid=join-camera]").addEventListener("click", markAt);
  p.querySelector("[data-testid=join-say]").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const input = p.querySelector("[data-testid=join-chat-input]");
    const text = input.value.trim();
    if (text && current && current.signal.send({ type: "chat", text })) input.value = "";
  });
  i18n.onLangChange(() => {
    i18n.apply(p);
    if (current) setState(current.state);
  });
  i18n.apply(p);
  for (const el of p.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  return p;
}

const q = (id) => panel().querySelector(`[data-testid=${id}]`);

function setState(s) {
  if (!current) return;
  current.state = s;
  const el = q("join-state");
  el.dataset.state = s;
  el.textContent = t(`join.state.${s}`);
}

// A click on the camera picture: a pinned yellow circle there, in frame fractions (the
// caller's page maps them onto its own layout, as for the agent's marks).
function markAt(ev) {
  const v = ev.currentTarget;
  if (!current || !v.videoWidth) return;
  const b = v.getBoundingClientRect();
  const s = Math.min(b.width / v.videoWidth, b.height / v.videoHeight);
  const w = v.videoWidth * s, h = v.videoHeight * s;
  const fx = (ev.clientX - b.left - (b.width - w) / 2) / w;
  const fy = (ev.clientY - b.top - (b.height - h) / 2) / h;
  if (fx < 0 || fx > 1 || fy < 0 || fy > 1) return;
  const id = "j" + Math.random().toString(36).slice(2, 10);
  current.marks.push(id);
  current.signal.send({
    type: "mark", id, shape: "circle", color: "yellow", pin: true,
    pts: [[fx, fy], [Math.min(1, fx + 0.05), fy]], ar: v.videoWidth / v.videoHeight,
  });
}

function chatLine(m) {
  const li = document.createElement("li");
  li.dataset.testid = "join-chat-msg";
  li.dataset.from = m.from;
  const who = m.sender ? `${m.sender.name} (${m.sender.role})` : m.from;
  li.textContent = `${who}: ${m.text}`;
  q("join-chat").append(li);
}

export function stopJoin() {
  const j = current;
  if (!j) return;
  current = null;
  j.signal.close();
  for (const m of j.media) m.close();
  q("join-camera").srcObject = null;
  q("join-screen").srcObject = null;
  panel().hidden = true;
}

// base: "/ws/join/" (a supervisor, from the ops console) or "/ws/expert/" (web/join.js).
export function startJoin(roomId, base = "/ws/join/") {
  stopJoin();
  const signal = new Signal(base + encodeURIComponent(roomId));
  const j = { roomId, signal, state: "idle", welcomed: false, iceServers: [], marks: [], firstFrameAt: {} };
  const live = () => current === j && j.welcomed && !["ended", "removed", "full"].includes(j.state);
  // One receive-only pc per track; camera pcs have odd numbers, screen pcs even, so an
  // `answer` (which names only its pc) finds its own.
  const leg = (track, first) => {
    let n = first - 2;
    const tagged = {
      send: (m) => signal.send(m.type === "offer" || m.type === "candidate" ? { ...m, track } : m),
      get isOpen() { return signal.isOpen; },
      kick: () => signal.kick(),
    };
    const video = q(`join-${track}`);
    const session = new PcSession({
      signal: () => tagged,
      iceServers: () => j.iceServers,
      ready: live,
      alive: live,
      nextNumber: () => (n += 2),
      setup(pc) {
        pc.addTransceiver("video", { direction: "recvonly" });
        pc.addEventListener("track", (e) => showTrack(video, e.track));
      },
      onChange: (s) => track === "camera" && ["connecting", "connected"].includes(s) && setState(s),
    });
    // When this page first got a picture: tests check the caller was told before.
    video.addEventListener("loadeddata", () => (j.firstFrameAt[track] = j.firstFrameAt[track] || Date.now()));
    return session;
  };
  j.media = [leg("camera", 1), leg("screen", 2)];
  current = j;
  window.callassistJoin = j; // debug handle for tests (docs/testing.md)
  q("join-chat").replaceChildren();
  panel().hidden = false;
  setState("connecting");
  signal.on("welcome", (msg) => {
    j.welcomed = true;
    j.participant = msg.participant;
    j.iceServers = Array.isArray(msg.iceServers) ? msg.iceServers : [];
    for (const m of j.media) m.start();
  });
  signal.on("answer", (msg) => j.media.forEach((m) => m.answer(msg)));
  signal.on("chat", chatLine);
  signal.on("error", (msg) => {
    if (msg.code === "room_full") return setState("full");
    j.media.forEach((m) => m.serverError(msg));
  });
  signal.on("removed", () => setState("removed"));
  signal.on("ended", () => current === j && setState("ended"));
  signal.on("refused", (r) => {
    signal.close();
    if (current === j) setState(r.code === "room_ended" ? "ended" : r.code === "room_full" ? "full" : "closed");
  });
  signal.on("close", (ev) => {
    j.welcomed = false;
    if (ev.code === 4005) setState("removed");
    if (["removed", "full", "ended"].includes(j.state)) return signal.close();
    if (current === j) setState("closed");
  });
  signal.connect();
}
