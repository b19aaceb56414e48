// The staff pages' shared frame (ops console, DPO page, a later admin page): the header's
// user name, logout and language buttons, the login box and the "no access" box, and the
// views login / forbidden / console (body[data-view]). Built here once, as DOM, with the
// ids and test ids those pages have always had (docs/testing.md, docs/ops.md); styled by
// lib/staff.css. The page keeps its own brand in <header class="top"> and its console in
// <section id="view-console"> inside <main class="main">.

import * as i18n from "../i18n.js";
import STRINGS from "../strings/staff.js";
import { api, setCsrf, onUnauthorized } from "./api.js";
import { h } from "./dom.js";

i18n.extend(STRINGS);

const $ = (id) => document.getElementById(id);

function header(page) {
  const langs = h("div", { class: "langs", role: "group", "data-i18n-label": "language" },
    ...["lv", "en", "ru"].map((l) => h("button", { type: "button", class: "lang", "data-lang": l, "data-testid": `lang-${l}` }, l.toUpperCase())));
  return h("div", { class: "top-right" },
    h("span", { class: "user", "data-testid": `${page}-user`, id: `${page}-user`, hidden: true }),
    h("button", { type: "button", class: "btn btn-small", "data-testid": `${page}-logout`, id: `${page}-logout`, "data-i18n": "logout", hidden: true }),
    langs);
}

function views(page) {
  const login = h("form", { class: "card login", id: "login-form", novalidate: true },
    h("h1", { "data-i18n": "login.heading" }),
    // Single sign-on, when GET /api/login/options says so: a link (the provider's
    // redirects navigate the whole page), back to this page afterwards.
    h("a", { class: "btn btn-primary", href: `/auth/oidc/login?next=/${page}`, id: "login-sso", "data-testid": "login-sso", "data-i18n": "login.sso", hidden: true }),
    h("label", { for: "login-username", "data-i18n": "login.username" }),
    h("input", { type: "text", id: "login-username", "data-testid": "login-username", autocomplete: "username", autocapitalize: "none", spellcheck: "false", required: true }),
    h("label", { for: "login-password", "data-i18n": "login.password" }),
    h("input", { type: "password", id: "login-password", "data-testid": "login-password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit", class: "btn btn-primary", "data-testid": "login-submit", "data-i18n": "login.submit" }),
    h("p", { class: "alert", "data-testid": "login-error", id: "login-error", role: "alert", hidden: true }));
  const forbidden = h("div", { class: "card", "data-testid": `${page}-forbidden` },
    h("h1", { "data-i18n": "forbidden.heading" }),
    h("p", { "data-i18n": "forbidden.text" }));
  return [h("section", { id: "view-login", hidden: true }, login), h("section", { id: "view-forbidden", hidden: true }, forbidden)];
}

// page: "ops" | "dpo" (prefix of its test ids); role: the one role allowed in.
// onConsole(user): the right user is logged in; onLeave(): the console is no longer shown
// (logged out, 401, other role); onLogout(): after the logout button's request.
// Call before i18n.init(), which wires the language buttons.
export function staffShell({ page, role, onConsole, onLeave = () => {}, onLogout = () => {} }) {
  document.querySelector("header.top").append(header(page));
  document.querySelector("main.main").prepend(...views(page));

  function showView(name) {
    document.body.dataset.view = name;
    for (const v of ["login", "forbidden", "console"]) $(`view-${v}`).hidden = v !== name;
    $(`${page}-logout`).hidden = name === "login";
    $(`${page}-user`).hidden = name === "login";
  }

  function leave(view) {
    onLeave();
    showView(view);
  }

  async function loginOptions() {
    const opts = await api("GET", "/api/login/options", undefined, { quiet: true }).catch(() => ({ local: true, sso: false }));
    $("login-sso").hidden = !opts.sso;
    // Without local login the password fields go (the form stays: it holds the SSO link).
    for (const id of ["login-username", "login-password"]) {
      $(id).hidden = !opts.local;
      document.querySelector(`label[for=${id}]`).hidden = !opts.local;
    }
    document.querySelector("#login-form button[type=submit]").hidden = !opts.local;
  }

  async function boot() {
    await loginOptions();
    let me = null;
    try {
      me = await api("GET", "/api/me", undefined, { quiet: true });
    } catch {
      me = null;
    }
    if (!me || !me.user) return leave("login");
    setCsrf(me.csrf);
    $(`${page}-user`).textContent = `${me.user.name} (${me.user.role})`;
    if (me.user.role !== role) return leave("forbidden");
    showView("console");
    onConsole(me.user);
  }

  $("login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const err = $("login-error");
    err.hidden = true;
    try {
      await api("POST", "/api/login", { username: $("login-username").value, password: $("login-password").value });
    } catch (e) {
      err.textContent = i18n.t(e.status === 401 ? "login.failed" : "login.error");
      err.hidden = false;
      return;
    }
    $("login-password").value = "";
    await boot();
  });

  $(`${page}-logout`).addEventListener("click", async () => {
    onLeave();
    const answer = await api("POST", "/api/logout").catch(() => null);
    setCsrf(null);
    onLogout();
    // A single sign-on account goes on to the provider's logout, which comes back to /agent.
    if (answer && answer.redirect) return location.assign(answer.redirect);
    showView("login");
  });

  onUnauthorized(() => leave("login"));
  return { boot };
}
