// The administrator's page (/admin): accounts, the effective configuration (secrets
// masked), the cluster's nodes and webhook deliveries. API: server/http/admin*.py; roles:
// docs/security.md; page: docs/ops.md ("The admin page"). Texts in lv/en/ru, always set as
// text. The login box and header are lib/staff-shell.js's, as on the ops and DPO pages.

import * as i18n from "./i18n.js";
import STRINGS from "./strings/admin.js";
import { api } from "./lib/api.js";
import { h } from "./lib/dom.js";
import { staffShell } from "./lib/staff-shell.js";

i18n.extend(STRINGS);
const t = i18n.t;

const TABS = ["users", "config", "nodes", "webhooks"];
const ROLES = ["agent", "supervisor", "dpo", "admin"];
const state = {
  me: null,
  tab: "users",
  users: [],
  config: null,
  nodes: null,
  webhooks: null,
  resetting: null, // user name whose password form is open
  status: null, // [key, vars, dataState]: re-translated on a language switch
  error: null, // the last ApiError shown
};
window.callassistAdmin = state; // for tests and debugging

const $ = (id) => document.getElementById(id);

// --- messages --------------------------------------------------------------------------------

function status(key, vars, dataState = "done") {
  state.status = key ? [key, vars, dataState] : null;
  renderStatus();
}

function renderStatus() {
  const el = $("admin-status");
  el.hidden = !state.status;
  el.textContent = state.status ? t(state.status[0], state.status[1]) : "";
  el.dataset.state = state.status ? state.status[2] : "";
}

// A refusal says what was refused and why, in the page's language when the code is known
// (cli_only, own_account, ...), with the server's stable code in small print.
// subject: the account, node or event the refused action was about (named in the box).
function showError(err, subject = null) {
  state.error = err ? { err, subject } : null;
  if (err) status(null);
  renderError();
}

function renderError() {
  const box = $("admin-error");
  box.hidden = !state.error;
  box.dataset.code = state.error ? state.error.err.code || "" : "";
  if (!state.error) return box.replaceChildren();
  const { err, subject } = state.error;
  const known = `error.${err.code}`;
  const text = t(known) !== known ? t(known) : err.code === "network" ? t("error.network") : err.message;
  box.replaceChildren(subject ? h("strong", { "data-testid": "admin-error-subject" }, `${subject}: `) : "",
    h("span", {}, text), " ", h("span", { class: "code" }, t("error.code", { code: err.code })));
}

async function act(fn, subject = null) {
  showError(null);
  try {
    return await fn();
  } catch (err) {
    showError(err, subject);
    return null;
  }
}

// --- users -----------------------------------------------------------------------------------

async function loadUsers() {
  const data = await act(() => api("GET", "/api/admin/users"));
  if (data) state.users = data.users;
  renderUsers();
}

function roleSelect(u) {
  const select = h("select", { "data-testid": "admin-user-role", "aria-label": t("role.of", { name: u.name }) },
    ...ROLES.map((r) => h("option", { value: r, selected: r === u.role }, t(`role.${r}`))));
  select.value = u.role;
  select.addEventListener("change", async () => {
    const role = select.value;
    const ok = await act(() => api("POST", `/api/admin/users/${encodeURIComponent(u.name)}`, { role }), u.name);
    if (ok) status("user.role_done", { name: u.name, role: t(`role.${role}`) });
    else select.value = u.role; // refused: the select shows the role the account still has
    await refreshUsers();
  });
  return select;
}

function renderUsers() {
  const rows = state.users.map((u) => {
    const self = state.me && u.name === state.me.name;
    const cliOnly = u.role === "dpo" || u.role === "admin";
    const name = h("td", { class: "name" }, h("span", { class: "mono" }, u.name),
      self ? h("span", { class: "badge" }, t("user.you")) : null,
      cliOnly ? h("span", { class: "badge muted-badge", "data-testid": "admin-user-cli" }, t("user.cli")) : null,
      u.sso ? h("span", { class: "badge muted-badge", "data-testid": "admin-user-sso" }, t("user.sso")) : null);
    const stateCell = h("td", { "data-testid": "admin-user-state", "data-state": u.disabled ? "disabled" : "active" },
      t(u.disabled ? "user.disabled" : "user.active"));
    const actions = h("td", { class: "actions-cell" });
    if (!self) {
      const toggle = h("button", { type: "button", class: u.disabled ? "btn btn-small" : "btn btn-small btn-danger", "data-testid": "admin-user-toggle",
        "aria-label": t(u.disabled ? "user.enable_of" : "user.disable_of", { name: u.name }) }, t(u.disabled ? "user.enable" : "user.disable"));
      toggle.addEventListener("click", () => setDisabled(u, !u.disabled));
      actions.append(toggle);
    }
    const reset = h("button", { type: "button", class: "btn btn-small", "data-testid": "admin-user-password",
      "aria-label": t("user.password_of", { name: u.name }) }, t("user.password"));
    reset.addEventListener("click", () => openPassword(u.name));
    // Single sign-on: the password and the role are the identity provider's (409 sso_account).
    if (!u.sso) actions.append(reset);
    const select = roleSelect(u);
    select.disabled = Boolean(u.sso);
    const roleCell = h("td", {}, select);
    name.dataset.label = t("col.name");
    roleCell.dataset.label = t("col.role");
    stateCell.dataset.label = t("col.state");
    return h("tr", { "data-testid": "admin-account", "data-name": u.name, "data-role": u.role, class: state.resetting === u.name ? "editing" : null },
      name, roleCell, stateCell, actions);
  });
  $("admin-user-rows").replaceChildren(...rows);
}

async function refreshUsers() {
  const data = await api("GET", "/api/admin/users").catch(() => null);
  if (data) state.users = data.users;
  renderUsers();
}

async function setDisabled(u, disabled) {
  const ok = await act(() => api("POST", `/api/admin/users/${encodeURIComponent(u.name)}`, { disabled }), u.name);
  if (ok) status(disabled ? "user.disabled_done" : "user.enabled_done", { name: u.name });
  await refreshUsers();
  // Keep the keyboard where it was: on the same row's button.
  const row = document.querySelector(`tr[data-testid="admin-account"][data-name="${CSS.escape(u.name)}"]`);
  row?.querySelector('[data-testid="admin-user-toggle"]')?.focus();
}

function openPassword(name) {
  state.resetting = name;
  $("admin-password-heading").textContent = t("password.heading", { name });
  $("admin-password-input").value = "";
  $("admin-password").hidden = false;
  renderUsers();
  $("admin-password-input").focus();
}

function closePassword() {
  const name = state.resetting;
  state.resetting = null;
  $("admin-password").hidden = true;
  $("admin-password-input").value = "";
  renderUsers();
  if (name) document.querySelector(`tr[data-name="${CSS.escape(name)}"] [data-testid="admin-user-password"]`)?.focus();
}

async function savePassword(ev) {
  ev.preventDefault();
  const name = state.resetting;
  const ok = await act(() => api("POST", `/api/admin/users/${encodeURIComponent(name)}`, { password: $("admin-password-input").value }), name);
  if (!ok) return;
  closePassword();
  status("user.password_done", { name });
}

async function createUser(ev) {
  ev.preventDefault();
  const body = { username: $("admin-create-username").value, password: $("admin-create-password").value, role: $("admin-create-role").value };
  const data = await act(() => api("POST", "/api/admin/users", body), body.username.trim() || null);
  if (!data) return;
  $("admin-create-username").value = "";
  $("admin-create-password").value = "";
  status("user.created", { name: data.user.name, role: t(`role.${data.user.role}`) });
  await refreshUsers();
}

// --- configuration ---------------------------------------------------------------------------

function shownValue(v) {
  if (Array.isArray(v)) return v.length ? v.join(", ") : t("config.empty_list");
  if (v === "") return t("config.empty");
  if (typeof v === "boolean") return t(v ? "config.true" : "config.false");
  return String(v);
}

function renderConfig() {
  const c = state.config;
  if (!c) return;
  $("admin-secrets").replaceChildren(...c.secrets.map((s) =>
    h("li", { "data-testid": "admin-secret", "data-name": s.name, "data-set": String(s.set) },
      h("span", { class: "mono" }, s.name), " ", h("span", { class: s.set ? "pill ok" : "pill" }, t(s.set ? "secret.set" : "secret.unset")))));
  $("admin-config-sections").replaceChildren(...c.sections.map((sec) =>
    h("section", { class: "config-section", "data-testid": "admin-config-section", "data-name": sec.name },
      h("h2", {}, `[${sec.name}]`),
      h("dl", {}, ...sec.keys.flatMap((k) => [
        h("dt", { class: "mono" }, k.key),
        h("dd", { class: k.masked ? "mono masked" : "mono", "data-testid": "admin-config-value", "data-key": k.key, "data-masked": String(k.masked) },
          shownValue(k.value), k.masked ? h("span", { class: "badge muted-badge" }, t("config.masked")) : null),
      ])))));
}

async function loadConfig() {
  const data = await act(() => api("GET", "/api/admin/config"));
  if (data) state.config = data;
  renderConfig();
}

// --- nodes -----------------------------------------------------------------------------------

function renderNodes() {
  const n = state.nodes;
  if (!n) return;
  $("admin-nodes-wrap").hidden = !n.cluster;
  $("admin-nodes-summary").dataset.cluster = String(n.cluster);
  $("admin-nodes-summary").textContent = n.cluster
    ? t("nodes.cluster", { n: n.nodes.length, rooms: n.rooms })
    : t("nodes.single", { node: n.node_id, rooms: n.rooms });
  $("admin-node-rows").replaceChildren(...(n.cluster ? n.nodes : []).map((row) => {
    const draining = row.draining || !!row.drain_requested;
    const stateKey = row.draining ? "node.draining" : row.drain_requested ? "node.drain_requested" : "node.open";
    const btn = h("button", { type: "button", class: draining ? "btn btn-small" : "btn btn-small btn-danger", "data-testid": "admin-node-drain",
      "aria-label": t(draining ? "node.undo_of" : "node.drain_of", { node: row.node_id }) }, t(draining ? "node.undo" : "node.drain"));
    btn.addEventListener("click", () => drain(row.node_id, !draining));
    const cells = [
      h("td", { class: "mono" }, row.node_id, row.this ? h("span", { class: "badge" }, t("node.this")) : null),
      h("td", { "data-testid": "admin-node-rooms" }, `${row.rooms} / ${row.max_rooms}`),
      h("td", {}, `${row.cpu_percent} %`),
      h("td", {}, `${row.loop_lag_ms} ms`),
      h("td", { "data-testid": "admin-node-state", "data-state": row.draining ? "draining" : row.drain_requested ? "requested" : "open" }, t(stateKey)),
      h("td", { class: "actions-cell" }, btn),
    ];
    ["node.id", "node.rooms", "node.cpu", "node.lag", "node.state"].forEach((k, i) => (cells[i].dataset.label = t(k)));
    return h("tr", { "data-testid": "admin-node", "data-node-id": row.node_id }, ...cells);
  }));
}

async function loadNodes() {
  const data = await act(() => api("GET", "/api/admin/nodes"));
  if (data) state.nodes = data;
  renderNodes();
}

async function drain(node, on) {
  const ok = await act(() => api("POST", `/api/admin/nodes/${encodeURIComponent(node)}/drain`, { drain: on }), node);
  if (ok) status(on ? "node.drain_done" : "node.undo_done", { node });
  const data = await api("GET", "/api/admin/nodes").catch(() => null);
  if (data) state.nodes = data;
  renderNodes();
  document.querySelector(`tr[data-node-id="${CSS.escape(node)}"] [data-testid="admin-node-drain"]`)?.focus();
}

// --- webhooks --------------------------------------------------------------------------------

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : new Intl.DateTimeFormat(i18n.lang(), { dateStyle: "short", timeStyle: "medium" }).format(d);
}

function eventCell(r) {
  return h("td", {}, h("span", { class: "mono" }, r.type), h("br"), h("span", { class: "mono muted small" }, r.event_id),
    h("br"), h("span", { class: "muted small" }, `${r.session_id} · ${when(r.created_at)}`));
}

function renderWebhooks() {
  const w = state.webhooks;
  if (!w) return;
  $("admin-webhooks-summary").textContent = w.enabled
    ? t("webhooks.summary", { pending: w.counts.pending, dead: w.counts.dead, receivers: w.receivers.join(", ") })
    : t("webhooks.off", { pending: w.counts.pending, dead: w.counts.dead });
  $("admin-dead-empty").hidden = w.dead.length > 0;
  $("admin-pending-empty").hidden = w.pending.length > 0;
  $("admin-dead-rows").replaceChildren(...w.dead.map((r) => {
    const btn = h("button", { type: "button", class: "btn btn-small btn-primary", "data-testid": "admin-replay",
      "aria-label": t("webhooks.replay_of", { id: r.event_id }) }, t("webhooks.replay"));
    btn.addEventListener("click", () => replay(r.event_id, btn));
    const cells = [eventCell(r), h("td", { class: "mono" }, r.receiver), h("td", {}, String(r.attempts)), h("td", {}, r.last_error || "—"), h("td", { class: "actions-cell" }, btn)];
    ["wh.event", "wh.receiver", "wh.attempts", "wh.error"].forEach((k, i) => (cells[i].dataset.label = t(k)));
    return h("tr", { "data-testid": "admin-dead-row", "data-event-id": r.event_id }, ...cells);
  }));
  $("admin-pending-rows").replaceChildren(...w.pending.map((r) => {
    const cells = [eventCell(r), h("td", { class: "mono" }, r.receiver), h("td", {}, String(r.attempts)), h("td", {}, when(r.next_attempt_at))];
    ["wh.event", "wh.receiver", "wh.attempts", "wh.next"].forEach((k, i) => (cells[i].dataset.label = t(k)));
    return h("tr", { "data-testid": "admin-pending-row", "data-event-id": r.event_id, "data-attempts": String(r.attempts) }, ...cells);
  }));
}

async function loadWebhooks() {
  const data = await act(() => api("GET", "/api/admin/webhooks"));
  if (data) state.webhooks = data;
  renderWebhooks();
}

async function replay(id, btn) {
  btn.disabled = true; // one click, one request (the server refuses a second anyway: 409)
  const ok = await act(() => api("POST", `/api/admin/webhooks/${encodeURIComponent(id)}/replay`), id);
  if (ok) status("webhooks.replayed", { id });
  const data = await api("GET", "/api/admin/webhooks").catch(() => null);
  if (data) state.webhooks = data;
  renderWebhooks();
  $("admin-webhooks-reload").focus();
}

// --- tabs ------------------------------------------------------------------------------------

const LOADERS = { users: loadUsers, config: loadConfig, nodes: loadNodes, webhooks: loadWebhooks };

function showTab(which, focus = false) {
  state.tab = which;
  for (const name of TABS) {
    const tab = $(`tab-${name}`);
    tab.setAttribute("aria-selected", String(name === which));
    tab.tabIndex = name === which ? 0 : -1;
    $(`panel-${name}`).hidden = name !== which;
  }
  if (focus) $(`tab-${which}`).focus();
  LOADERS[which]();
}

// Arrow keys move between tabs (WAI-ARIA tabs pattern); Tab goes on into the panel.
document.querySelector(".tabs").addEventListener("keydown", (ev) => {
  const i = TABS.indexOf(state.tab);
  const next = { ArrowRight: i + 1, ArrowLeft: i - 1, Home: 0, End: TABS.length - 1 }[ev.key];
  if (next === undefined) return;
  ev.preventDefault();
  showTab(TABS[(next + TABS.length) % TABS.length], true);
});

// What i18n.apply() cannot redo by itself after a language switch.
function relabel() {
  document.title = t("title");
  if (state.resetting) $("admin-password-heading").textContent = t("password.heading", { name: state.resetting });
  renderStatus();
  renderError();
  renderUsers();
  renderConfig();
  renderNodes();
  renderWebhooks();
}

// --- wiring ----------------------------------------------------------------------------------

const shell = staffShell({
  page: "admin",
  role: "admin",
  onConsole(user) {
    state.me = user;
    showTab("users");
  },
  onLeave() {
    state.resetting = null;
    $("admin-password").hidden = true;
  },
  onLogout() {
    Object.assign(state, { me: null, users: [], config: null, nodes: null, webhooks: null, status: null, error: null });
    relabel();
  },
});

for (const name of TABS) $(`tab-${name}`).addEventListener("click", () => showTab(name));
$("admin-create").addEventListener("submit", createUser);
$("admin-password").addEventListener("submit", savePassword);
$("admin-password-cancel").addEventListener("click", closePassword);
$("admin-config-reload").addEventListener("click", loadConfig);
$("admin-nodes-reload").addEventListener("click", loadNodes);
$("admin-webhooks-reload").addEventListener("click", loadWebhooks);
i18n.onLangChange(relabel);
i18n.init();
relabel();
shell.boot();
