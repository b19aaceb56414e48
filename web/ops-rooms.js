// Ops console: one card per live room (state, people, bitrate, loss, a two-minute sparkline,
// warnings), with "End room" (a reason is required, kept with the session; the audit log gets a code) and "Watch".

import * as i18n from "./i18n.js";
import { api } from "./lib/api.js";
import { h } from "./lib/dom.js";
import { state } from "./ops-state.js";
import { num, rate, pct, duration } from "./ops-format.js";
import { startWatch } from "./ops-watch.js";
import { startJoin } from "./ops-join.js";

const t = i18n.t;
const SVG_NS = "http://www.w3.org/2000/svg";
const WINDOW = 120; // sparkline samples (one a second)

const $ = (id) => document.getElementById(id);
const q = (root, testid) => root.querySelector(`[data-testid="${testid}"]`);

function warningText(w) {
  const vars = { ...w };
  if (w.track) vars.track = t(`track.${w.track}`);
  if (w.loss !== undefined) vars.loss = pct(w.loss);
  if (w.participant) vars.participant = t(`role.${w.participant.split("-")[0]}`);
  return t(`warn.${w.code}`, vars);
}

export function fillWarnings(list, warnings) {
  list.replaceChildren(
    ...warnings.map((w) => {
      const li = document.createElement("li");
      li.dataset.code = w.code;
      li.textContent = warningText(w);
      return li;
    }),
  );
  list.hidden = warnings.length === 0;
}

export function renderRooms(rooms) {
  const seen = new Set();
  const list = $("room-list");
  rooms.forEach((room, index) => {
    seen.add(room.id);
    let card = state.cards.get(room.id);
    if (!card) {
      card = makeCard(room.id);
      state.cards.set(room.id, card);
    }
    if (list.children[index] !== card) list.insertBefore(card, list.children[index] || null);
    fillCard(card, room);
  });
  for (const [id, card] of state.cards) {
    if (!seen.has(id)) {
      card.remove();
      state.cards.delete(id);
    }
  }
}

function makeCard(roomId) {
  const card = $("room-template").content.firstElementChild.cloneNode(true);
  i18n.apply(card);
  card.dataset.roomId = roomId;
  const form = q(card, "room-end-form");
  const reason = q(card, "room-end-reason");
  const err = q(card, "room-end-error");
  q(card, "room-end").addEventListener("click", () => {
    form.hidden = false;
    q(card, "room-end").hidden = true;
    reason.focus();
  });
  q(card, "room-end-cancel").addEventListener("click", () => {
    form.hidden = true;
    err.hidden = true;
    q(card, "room-end").hidden = false;
  });
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const why = reason.value.trim();
    if (!why) {
      err.textContent = t("room.endNeedReason");
      err.hidden = false;
      return;
    }
    q(card, "room-end-confirm").disabled = true;
    try {
      await api("POST", `/api/ops/rooms/${encodeURIComponent(roomId)}/end`, { reason: why });
      card.dataset.ending = "true";
      form.hidden = true;
    } catch (e) {
      err.textContent = t("room.endFailed", { msg: e.message });
      err.hidden = false;
    } finally {
      q(card, "room-end-confirm").disabled = false;
    }
  });
  q(card, "room-watch").addEventListener("click", () => startWatch(roomId));
  q(card, "room-join").addEventListener("click", () => startJoin(roomId)); // visibly
  return card;
}

function fillCard(card, room) {
  card.dataset.state = room.state;
  card.dataset.warnings = String(room.warnings.length);
  q(card, "room-id").textContent = room.id;
  const rs = q(card, "room-state");
  rs.textContent = t(`state.${room.state}`);
  rs.dataset.state = room.state;
  const cs = q(card, "room-caller-status");
  cs.textContent = t(`caller.${room.caller_status}`);
  cs.dataset.status = room.caller_status;
  q(card, "room-age").textContent = duration(room.age_s);
  q(card, "room-agent").textContent = room.agent;
  q(card, "room-phone").textContent = room.phone || t("room.none");
  q(card, "room-reference").textContent = room.reference || t("room.none");
  q(card, "room-device").textContent = room.device || t("room.none");
  const rec = q(card, "room-recording");
  rec.textContent = t(`recording.${room.recording.state}`);
  rec.dataset.state = room.recording.state;
  const bitrate = q(card, "room-bitrate");
  bitrate.textContent =
    t("room.total", { in: rate(room.in_kbps), out: rate(room.out_kbps) }) +
    (room.watchers ? ` · ${t("room.watchers", { n: room.watchers })}` : "");
  bitrate.dataset.kbps = String(room.in_kbps);
  bitrate.dataset.outKbps = String(room.out_kbps);
  q(card, "room-watch").hidden = !(state.me && state.me.role === "supervisor");
  q(card, "room-join").hidden = q(card, "room-watch").hidden;
  fillParticipants(q(card, "room-participants"), room.participants);
  fillWarnings(q(card, "room-warnings"), room.warnings);
  drawSpark(card, room.history);
}

function flow(dir, f) {
  const span = document.createElement("span");
  span.className = `flow flow-${dir}`;
  span.dataset.testid = `participant-${dir}`;
  span.dataset.kbps = String(f.kbps);
  span.dataset.fps = String(f.fps);
  span.dataset.loss = String(f.loss);
  const arrow = dir === "in" ? "↑" : "↓";
  span.textContent =
    `${arrow} ${t(`track.${f.track}`)} ${rate(f.kbps)} · ${num(f.fps, 0)} ${t("unit.fps")}` +
    ` · ${pct(f.loss)}`;
  span.title = t(`part.${dir}`);
  if (f.loss >= 0.05) span.dataset.level = "warn";
  return span;
}

function fillParticipants(box, participants) {
  box.replaceChildren(
    ...participants.map((p) => {
      const dot = h("span", { class: "ws-dot", "data-on": String(p.signalling), title: t(p.signalling ? "part.ws" : "part.noWs") });
      const rtt = p.rtt_ms === null ? "" : `${t("part.rtt")} ${num(p.rtt_ms, 0)} ${t("unit.ms")}`;
      return h("div", { class: "part", "data-testid": "room-participant", "data-role": p.role, "data-connection": p.connection },
        h("span", { class: "part-who" }, dot, t(`role.${p.role}`)),
        h("span", { class: "part-conn", "data-state": p.connection }, t(`conn.${p.connection}`)),
        h("span", { class: "part-rtt", "data-testid": "participant-rtt" }, rtt),
        h("span", { class: "part-flows" }, p.in && flow("in", p.in), p.out && flow("out", p.out)));
    }),
  );
}

function points(values, max, w, h) {
  const n = values.length;
  if (n === 0) return "";
  const step = n > 1 ? w / (n - 1) : 0;
  return values
    .map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (Math.min(v, max) / max) * (h - 6)).toFixed(1)}`)
    .join(" ");
}

function drawSpark(card, history) {
  const svg = q(card, "room-sparkline");
  const W = 240;
  const H = 56;
  const kb = history.in_kbps.slice(-WINDOW);
  const fps = history.fps.slice(-WINDOW);
  const kbMax = Math.max(100, ...kb) * 1.1;
  const fpsMax = Math.max(30, ...fps);
  // A time axis: the newest sample at the right edge, one sample a second, the window
  // growing from 20 s to two minutes as the room gets older.
  const span = Math.min(Math.max(kb.length, 20), WINDOW) - 1;
  const width = (W * Math.max(kb.length - 1, 1)) / span;
  const x0 = W - Math.min(width, W);
  const shift = (pts) =>
    pts
      .split(" ")
      .filter(Boolean)
      .map((p) => {
        const [x, y] = p.split(",").map(Number);
        return `${(x0 + x).toFixed(1)},${y}`;
      })
      .join(" ");
  const inPts = shift(points(kb, kbMax, Math.min(width, W), H));
  const fpsPts = shift(points(fps, fpsMax, Math.min(width, W), H));
  const mk = (name, attrs) => {
    const el = document.createElementNS(SVG_NS, name);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    return el;
  };
  const children = [mk("rect", { x: 0, y: 0, width: W, height: H, class: "spark-bg" })];
  if (inPts) {
    const first = inPts.split(" ")[0].split(",")[0];
    const last = inPts.split(" ").at(-1).split(",")[0];
    children.push(
      mk("polygon", { points: `${first},${H} ${inPts} ${last},${H}`, class: "spark-area" }),
      mk("polyline", { points: inPts, class: "spark-line-in" }),
      mk("polyline", { points: fpsPts, class: "spark-line-fps" }),
    );
  }
  const title = mk("title", {});
  title.textContent = `${t("spark.in")}: ${rate(kb.at(-1) || 0)}, ${t("spark.fps")}: ${num(fps.at(-1) || 0, 0)}`;
  children.push(title);
  svg.replaceChildren(...children);
  svg.dataset.points = String(kb.length);
  svg.setAttribute("aria-label", title.textContent);
  card.querySelector(".spark-in").textContent = `${t("spark.in")} ${rate(kb.at(-1) || 0)}`;
  card.querySelector(".spark-fps").textContent = `${t("spark.fps")} ${num(fps.at(-1) || 0, 0)}`;
}
