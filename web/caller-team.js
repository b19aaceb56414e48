// Caller page: the staff who joined the call visibly (a supervisor, an expert), loaded by
// caller.js with the first `participant_joined` (or a `room` naming staff after a reload),
// so the page before media stays small. Shown at once, before the joiner gets any media
// (the server sends this first): "Supervisor Anna joined", with a button to ask them to
// leave (`dismiss`). Marks and chat from several people carry `sender`: the last mark's
// author is shown under the picture. docs/protocol.md, "Team".

import * as i18n from "./i18n.js";

const t = i18n.t;

i18n.extend({
  lv: {
    "team.joined": "{role} {name} pievienojās zvanam",
    "team.left": "{role} {name} izgāja no zvana",
    "team.dismiss": "Lūgt iziet",
    "team.here": "Zvanā arī: {who}",
    "team.markBy": "Atzīmēja: {who}",
    "team.role.supervisor": "Uzraugs",
    "team.role.expert": "Eksperts",
    "team.role.agent": "Konsultants",
    "team.holder": "Tagad jums palīdz {name}",
  },
  en: {
    "team.joined": "{role} {name} joined the call",
    "team.left": "{role} {name} left the call",
    "team.dismiss": "Ask to leave",
    "team.here": "Also in the call: {who}",
    "team.markBy": "Marked by {who}",
    "team.role.supervisor": "Supervisor",
    "team.role.expert": "Expert",
    "team.role.agent": "Agent",
    "team.holder": "Now helping you: {name}",
  },
  ru: {
    "team.joined": "{role} {name} присоединился к звонку",
    "team.left": "{role} {name} вышел из звонка",
    "team.dismiss": "Попросить выйти",
    "team.here": "Также в звонке: {who}",
    "team.markBy": "Отметил(а): {who}",
    "team.role.supervisor": "Супервайзер",
    "team.role.expert": "Эксперт",
    "team.role.agent": "Консультант",
    "team.holder": "Теперь вам помогает {name}",
  },
});

const who = (p) => `${t("team.role." + p.role)} ${p.name || ""}`.trim();

let handle = null;
// caller.js calls this with every team message (and `room`/`welcome` naming staff).
export function on(st, m) {
  handle = handle || setup(st);
  handle(m);
}

function setup(st) {
  const box = document.createElement("section");
  box.className = "team";
  box.dataset.testid = "team";
  box.setAttribute("role", "status");
  box.setAttribute("aria-live", "assertive");
  // In the flow at the top (sticky), not over the page: the status and the safety line
  // below it stay readable.
  box.style.cssText = "position:sticky;top:0;z-index:30;display:grid;gap:6px;padding:6px 8px;background:#fff";
  const by = document.createElement("p");
  by.dataset.testid = "team-mark-by";
  by.hidden = true;
  by.style.cssText = "margin:0;padding:4px 8px;border-radius:6px;background:#101820;color:#fff;font-size:.85rem";
  document.body.prepend(box);
  const staff = new Map(); // participant id -> {id, name, role}
  const notes = []; // what was said, to re-render on a language change
  st.team = { staff, shownAt: {} }; // for tests (docs/testing.md)
  let holder = st.room && st.room.agent ? st.room.agent.name : null; // who helps (hand-over)
  let handedTo = null;

  function render() {
    box.replaceChildren();
    for (const n of notes.slice(-2)) {
      const p = document.createElement("div");
      p.dataset.testid = n.joined ? "team-joined" : "team-left";
      p.dataset.participant = n.p.id;
      p.style.cssText = "display:flex;gap:8px;align-items:center;padding:8px 10px;border-radius:8px;background:#fff8d6;color:#222;box-shadow:0 2px 8px rgba(0,0,0,.25)";
      const text = document.createElement("span");
      text.textContent = t(n.joined ? "team.joined" : "team.left", { role: t("team.role." + n.p.role), name: n.p.name || "" });
      text.style.flex = "1";
      p.append(text);
      if (n.joined && staff.has(n.p.id)) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "btn";
        b.dataset.testid = "team-dismiss";
        b.textContent = t("team.dismiss");
        b.addEventListener("click", () => st.signal.send({ type: "dismiss", participant: n.p.id }));
        p.append(b);
      }
      const x = document.createElement("button");
      x.type = "button";
      x.className = "btn";
      x.textContent = "×";
      x.setAttribute("aria-label", "OK");
      x.addEventListener("click", () => {
        notes.splice(notes.indexOf(n), 1);
        render();
      });
      p.append(x);
      box.append(p);
    }
    if (handedTo) {
      const hd = document.createElement("div");
      hd.dataset.testid = "team-holder";
      hd.style.cssText = "padding:8px 10px;border-radius:8px;background:#dff3e4;color:#222";
      hd.textContent = t("team.holder", { name: handedTo });
      box.append(hd);
    }
    if (staff.size) {
      const here = document.createElement("div");
      here.dataset.testid = "team-here";
      here.style.cssText = "padding:4px 8px;border-radius:6px;background:rgba(16,24,32,.8);color:#fff;font-size:.85rem";
      here.textContent = t("team.here", { who: [...staff.values()].map(who).join(", ") });
      box.append(here);
    }
    box.append(by);
  }
  i18n.onLangChange(render);

  function sync(list) {
    for (const p of list) if (!staff.has(p.id)) staff.set(p.id, p);
    for (const id of [...staff.keys()]) if (!list.some((p) => p.id === id)) staff.delete(id);
  }

  // Mark authorship: the toolkit draws the mark; this says whose it is.
  st.signal.on("mark", (m) => {
    if (!m.sender) return;
    by.textContent = t("team.markBy", { who: who(m.sender) });
    by.dataset.role = m.sender.role;
    by.hidden = false;
    box.append(by);
  });

  return (m) => {
    if (m.type === "participant_joined") {
      staff.set(m.participant.id, m.participant);
      notes.push({ joined: true, p: m.participant });
      st.team.shownAt[m.participant.id] = Date.now();
    } else if (m.type === "participant_left") {
      staff.delete(m.participant.id);
      notes.push({ joined: false, p: m.participant });
    } else if (m.room && Array.isArray(m.room.staff)) {
      sync(m.room.staff);
    }
    const name = m.room && m.room.agent && m.room.agent.name;
    if (name && holder && name !== holder) handedTo = name; // handed over: say to whom
    if (name) holder = name;
    render();
  };
}
