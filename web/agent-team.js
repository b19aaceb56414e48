// Agent console: the staff who joined the call visibly (supervisor, expert) and what
// happened to them ("Supervisor sue left: the caller asked"), from `participant_joined`,
// `participant_left` and the `room` message's `staff` (docs/protocol.md, "Team"); the
// expert's one-time link (POST …/staff-link) and the hand-over (POST …/hand-over) to a
// joined person or to another agent account.

import * as i18n from "./i18n.js";
import { api, showError } from "./lib/api.js";
import { h } from "./lib/dom.js";
import { st } from "./agent-state.js";

const t = i18n.t;

i18n.extend({
  lv: {
    "ateam.invite": "Uzaicināt ekspertu (saite)",
    "ateam.link": "Vienreizēja saite kolēģim (15 min): {link}",
    "ateam.handOver": "Nodot: {who}",
    "ateam.handTo": "Nodot konsultantam (lietotājvārds)",
    "ateam.holder": "Sesiju tur: {name}",
    "ateam.here": "Zvanā arī: {who}",
    "ateam.joined": "{who} pievienojās",
    "ateam.left": "{who} izgāja",
    "ateam.caller_asked": "{who} izgāja pēc zvanītāja lūguma",
    "ateam.role.supervisor": "Uzraugs",
    "ateam.role.expert": "Eksperts",
  },
  en: {
    "ateam.invite": "Invite an expert (link)",
    "ateam.link": "One-time link for a colleague (15 min): {link}",
    "ateam.handOver": "Hand over to {who}",
    "ateam.handTo": "Hand over to an agent (username)",
    "ateam.holder": "Held by {name}",
    "ateam.here": "Also in the call: {who}",
    "ateam.joined": "{who} joined",
    "ateam.left": "{who} left",
    "ateam.caller_asked": "{who} left: the caller asked them to",
    "ateam.role.supervisor": "Supervisor",
    "ateam.role.expert": "Expert",
  },
  ru: {
    "ateam.invite": "Пригласить эксперта (ссылка)",
    "ateam.link": "Одноразовая ссылка для коллеги (15 мин): {link}",
    "ateam.handOver": "Передать: {who}",
    "ateam.handTo": "Передать консультанту (имя пользователя)",
    "ateam.holder": "Сессию ведёт: {name}",
    "ateam.here": "Также в звонке: {who}",
    "ateam.joined": "{who} присоединился",
    "ateam.left": "{who} вышел",
    "ateam.caller_asked": "{who} вышел по просьбе звонящего",
    "ateam.role.supervisor": "Супервайзер",
    "ateam.role.expert": "Эксперт",
  },
});

const who = (p) => `${t("ateam.role." + p.role)} ${p.name || ""}`.trim();

let box = null;
let staff = [];
let last = null; // {key, p}
let link = null;
let room = null; // the last `room` object (agent-media.js updates st.room after us)

async function post(path, body) {
  if (!st.session) return null;
  try {
    return await api("POST", `/api/sessions/${encodeURIComponent(st.session.id)}/${path}`, body);
  } catch (err) {
    showError(err);
    return null;
  }
}

function render() {
  if (!box) {
    const anchor = document.getElementById("caller-progress");
    if (!anchor) return;
    box = h("div", { class: "hint", "data-testid": "agent-team" });
    anchor.after(box);
  }
  const lines = [];
  if (staff.length) lines.push(t("ateam.here", { who: staff.map(who).join(", ") }));
  if (last) lines.push(t(last.key, { who: who(last.p) }));
  const info = h("span", { "data-testid": "agent-team-info" }, lines.join(" · "));
  const holder = room && room.agent ? room.agent.name : "";
  const parts = [info, h("span", { "data-testid": "agent-holder" }, holder ? " · " + t("ateam.holder", { name: holder }) : "")];
  const mine = st.me && holder === st.me.name;
  if (mine && !st.ended) {
    const invite = h("button", { type: "button", class: "btn btn-small", "data-testid": "agent-invite" }, t("ateam.invite"));
    invite.addEventListener("click", async () => {
      const r = await post("staff-link", {});
      if (r) link = r.link;
      render();
    });
    parts.push(" ", invite);
    for (const p of staff) {
      const b = h("button", { type: "button", class: "btn btn-small", "data-testid": "agent-hand-over", "data-participant": p.id }, t("ateam.handOver", { who: who(p) }));
      b.addEventListener("click", () => post("hand-over", { participant: p.id }));
      parts.push(" ", b);
    }
    const to = h("input", { type: "text", "data-testid": "agent-hand-to", "aria-label": t("ateam.handTo"), placeholder: t("ateam.handTo"), size: "18" });
    to.addEventListener("keydown", (ev) => ev.key === "Enter" && to.value.trim() && post("hand-over", { username: to.value.trim() }));
    parts.push(" ", to);
  }
  if (link && mine) parts.push(h("p", { "data-testid": "agent-invite-link" }, t("ateam.link", { link })));
  box.replaceChildren(...parts);
  box.dataset.last = last ? last.key.slice(6) : "";
}

export function attach(signal) {
  staff = [];
  last = null;
  link = null;
  signal.on("room", (m) => {
    room = m.room || room;
    staff = (m.room && m.room.staff) || [];
    render();
  });
  signal.on("welcome", (m) => {
    room = m.room || room;
    staff = (m.room && m.room.staff) || [];
    render();
  });
  signal.on("participant_joined", (m) => {
    last = { key: "ateam.joined", p: m.participant };
    render();
  });
  signal.on("participant_left", (m) => {
    last = { key: m.reason === "caller_asked" ? "ateam.caller_asked" : "ateam.left", p: m.participant };
    render();
  });
  i18n.onLangChange(render);
}
