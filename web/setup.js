// The first-run page: create the administrator and the first agent, once. The setup
// token is in an HttpOnly cookie (server/http/setup.py); this page never sees it.

import * as i18n from "./i18n.js";
import { t } from "./i18n.js";

i18n.extend({
  lv: {
    "s.title": "Pirmā palaišana",
    "s.heading": "Pirmie konti",
    "s.intro": "Šajā serverī vēl nav neviena konta. Izveidojiet administratoru un pirmo konsultantu; šī lapa darbojas vienu reizi.",
    "s.admin": "Administrators",
    "s.agent": "Konsultants",
    "s.username": "Lietotājvārds",
    "s.password": "Parole (vismaz 10 rakstzīmes)",
    "s.submit": "Izveidot kontus",
    "s.done.heading": "Gatavs",
    "s.done.text": "Konti izveidoti. Piesakieties konsultanta konsolē kā {agent} un izveidojiet sesiju.",
    "s.done.console": "Atvērt konsultanta konsoli",
    "s.closed.heading": "Šī saite vairs nedarbojas",
  },
  en: {
    "s.title": "First run",
    "s.heading": "First accounts",
    "s.intro": "This server has no accounts yet. Create the administrator and the first agent; this page works once.",
    "s.admin": "Administrator",
    "s.agent": "Agent",
    "s.username": "User name",
    "s.password": "Password (at least 10 characters)",
    "s.submit": "Create the accounts",
    "s.done.heading": "Done",
    "s.done.text": "The accounts are created. Log in to the agent console as {agent} and start a session.",
    "s.done.console": "Open the agent console",
    "s.closed.heading": "This link no longer works",
  },
  ru: {
    "s.title": "Первый запуск",
    "s.heading": "Первые учётные записи",
    "s.intro": "На этом сервере ещё нет учётных записей. Создайте администратора и первого консультанта; эта страница работает один раз.",
    "s.admin": "Администратор",
    "s.agent": "Консультант",
    "s.username": "Имя пользователя",
    "s.password": "Пароль (не менее 10 символов)",
    "s.submit": "Создать учётные записи",
    "s.done.heading": "Готово",
    "s.done.text": "Учётные записи созданы. Войдите в консоль консультанта как {agent} и начните сеанс.",
    "s.done.console": "Открыть консоль консультанта",
    "s.closed.heading": "Эта ссылка больше не действует",
  },
});

const el = (id) => document.getElementById(id);

function show(id) {
  for (const v of ["setup-form", "setup-done", "setup-closed"]) el(v).hidden = v !== id;
  document.body.dataset.view = id;
}

function closed(message) {
  el("setup-closed-text").textContent = message || "";
  show("setup-closed");
}

async function submit(ev) {
  ev.preventDefault();
  const body = {
    admin: { username: el("admin-username").value.trim(), password: el("admin-password").value },
    agent: { username: el("agent-username").value.trim(), password: el("agent-password").value },
  };
  const box = el("setup-error");
  box.hidden = true;
  el("setup-submit").disabled = true;
  try {
    const r = await fetch("/api/setup", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
    const data = await r.json().catch(() => ({}));
    if (r.status === 410) return closed(data.error && data.error.message);
    if (!r.ok) {
      const e = data.error || {};
      box.textContent = (e.message || "HTTP " + r.status) + (e.code ? " (" + e.code + ")" : "");
      box.hidden = false;
      return;
    }
    el("admin-password").value = "";
    el("agent-password").value = "";
    el("setup-done-text").textContent = t("s.done.text", { agent: body.agent.username });
    show("setup-done");
  } catch {
    box.textContent = t("common.network_error");
    box.hidden = false;
  } finally {
    el("setup-submit").disabled = false;
  }
}

async function boot() {
  i18n.init();
  el("setup-form").addEventListener("submit", submit);
  try {
    const r = await fetch("/api/setup", { credentials: "same-origin" });
    if (!r.ok) {
      const data = await r.json().catch(() => ({}));
      return closed(data.error && data.error.message);
    }
    show("setup-form");
  } catch {
    closed(t("common.network_error"));
  }
}

boot();
