// An expert's one-time staff link (/x/<token>, docs/protocol.md "Team"): after the staff
// login the token is redeemed once (POST /api/staff-links/redeem) and the page joins the
// room visibly as an expert, with the ops console's join panel (ops-join.js). The token
// leaves the address bar at once.

import * as i18n from "./i18n.js";
import { staffShell } from "./lib/staff-shell.js";
import { api } from "./lib/api.js";
import { startJoin, stopJoin } from "./ops-join.js";

const t = i18n.t;
i18n.extend({
  lv: { "xjoin.title": "Pievienoties zvanam", "xjoin.redeeming": "Atver saiti…", "xjoin.joined": "Jūs esat zvanā kā eksperts.", "xjoin.invalid": "Šī saite jau izmantota vai tai beidzies derīgums. Palūdziet jaunu." },
  en: { "xjoin.title": "Join a call", "xjoin.redeeming": "Opening the link…", "xjoin.joined": "You are in the call as an expert.", "xjoin.invalid": "This link was used already or has expired. Ask for a new one." },
  ru: { "xjoin.title": "Присоединиться к звонку", "xjoin.redeeming": "Открываем ссылку…", "xjoin.joined": "Вы в звонке как эксперт.", "xjoin.invalid": "Эта ссылка уже использована или истекла. Попросите новую." },
});

const token = location.pathname.split("/").pop();
history.replaceState(null, "", "/x"); // out of the address bar and history
const stateEl = () => document.getElementById("xjoin-state");
function show(s) {
  stateEl().dataset.state = s;
  stateEl().textContent = t(`xjoin.${s}`);
}

let redeemed = null;
const shell = staffShell({
  page: "xjoin",
  role: "agent",
  async onConsole() {
    show("redeeming");
    try {
      redeemed = redeemed || (await api("POST", "/api/staff-links/redeem", { token }, { quiet: true }));
    } catch {
      return show("invalid");
    }
    show("joined");
    startJoin(redeemed.room, "/ws/expert/");
  },
  onLeave: stopJoin,
});
i18n.onLangChange(() => stateEl().dataset.state && show(stateEl().dataset.state));
i18n.init();
shell.boot();
