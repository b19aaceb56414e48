// Agent console: the staff who joined the call visibly (supervisor, expert) and what
// happened to them ("Supervisor sue left: the caller asked"), from `participant_joined`,
// `participant_left` and the `room` message's `staff` (docs/protocol.md, "Team").

import * as i18n from "./i18n.js";

const t = i18n.t;

i18n.extend({
  lv: {
    "ateam.here": "Zvanā arī: {who}",
    "ateam.joined": "{who} pievienojās",
    "ateam.left": "{who} izgāja",
    "ateam.caller_asked": "{who} izgāja pēc zvanītāja lūguma",
    "ateam.role.supervisor": "Vadītājs",
    "ateam.role.expert": "Eksperts",
  },
  en: {
    "ateam.here": "Also in the call: {who}",
    "ateam.joined": "{who} joined",
    "ateam.left": "{who} left",
    "ateam.caller_asked": "{who} left: the caller asked them to",
    "ateam.role.supervisor": "Supervisor",
    "ateam.role.expert": "Expert",
  },
  ru: {
    "ateam.here": "Также в звонке: {who}",
    "ateam.joined": "{who} присоединился",
    "ateam.left": "{who} вышел",
    "ateam.caller_asked": "{who} вышел по просьбе звонящего",
    "ateam.role.supervisor": "Руководитель",
    "ateam.role.expert": "Эксперт",
  },
});

const who = (p) => `${t("ateam.role." + p.role)} ${p.name || ""}`.trim();

let box = null;
let staff = [];
let last = null; // {key, p}

function render() {
  if (!box) {
    const anchor = document.getElementById("caller-progress");
    if (!anchor) return;
    box = document.createElement("div");
    box.className = "hint";
    box.dataset.testid = "agent-team";
    anchor.after(box);
  }
  const lines = [];
  if (staff.length) lines.push(t("ateam.here", { who: staff.map(who).join(", ") }));
  if (last) lines.push(t(last.key, { who: who(last.p) }));
  box.textContent = lines.join(" · ");
  box.dataset.last = last ? last.key.slice(6) : "";
  box.hidden = !lines.length;
}

export function attach(signal) {
  staff = [];
  last = null;
  signal.on("room", (m) => {
    staff = (m.room && m.room.staff) || [];
    render();
  });
  signal.on("welcome", (m) => {
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
