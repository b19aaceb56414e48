// The data-protection officer's page (/dpo): requests by phone number (search, export,
// erase, correct, object to recording) and the audit log. API: server/privacy/dpo.py; roles:
// docs/security.md; test ids: docs/testing.md. Texts in lv/en/ru, always set as text.
// Language choice and lookup are the shared web/i18n.js; this page adds its own strings.

import * as i18n from "./i18n.js";
import STRINGS from "./strings/dpo.js";
import { api } from "./lib/api.js";
import { staffShell } from "./lib/staff-shell.js";

i18n.extend(STRINGS);
const t = i18n.t;

const state = {
  me: null,
  subject: null, // last search answer
  rectifying: null, // session id
  audit: [],
  auditNext: null,
  verify: null,
  messages: {}, // status element id -> [key, vars, state]
};
window.callassistDpo = state; // for tests and debugging

const $ = (id) => document.getElementById(id);

// What i18n.apply() cannot redo by itself after a language switch.
function relabel() {
  document.title = t("title");
  for (const [id, [key, vars]] of Object.entries(state.messages)) $(id).textContent = t(key, vars);
  renderSubject();
  renderAudit();
}

function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return isNaN(d) ? iso : new Intl.DateTimeFormat(i18n.lang(), { dateStyle: "medium", timeStyle: "short" }).format(d);
}

// Audit times: compact and exact (seconds), one line.
function stamp(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return iso || "—";
  const two = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

function size(bytes) {
  return bytes >= 1048576 ? t("size.mb", { n: (bytes / 1048576).toFixed(1) }) : t("size.kb", { n: Math.max(1, Math.round(bytes / 1024)) });
}

// A status line: translated key (re-translated on a language switch) and a data-state.
function note(id, key, vars, dataState) {
  const el = $(id);
  if (!key) {
    delete state.messages[id];
    el.hidden = true;
    el.textContent = "";
    el.dataset.state = "";
    return;
  }
  state.messages[id] = [key, vars, dataState];
  el.textContent = t(key, vars);
  el.dataset.state = dataState;
  el.hidden = false;
}

function showError(err) {
  const box = $("dpo-error");
  if (!err) {
    box.hidden = true;
    box.dataset.code = "";
    return;
  }
  const message = err.code === "network" ? t("error.network") : err.message;
  box.textContent = err.code ? `${message} (${t("error.code", { code: err.code })})` : message;
  box.dataset.code = err.code || "";
  box.hidden = false;
}

// --- subject --------------------------------------------------------------------------------

function reason() {
  return $("dpo-reason").value.trim();
}

async function search(phone) {
  showError(null);
  const data = await api("POST", "/api/dpo/search", { phone, reason: reason() });
  state.subject = data;
  $("dpo-dnr").checked = !!data.do_not_record;
  renderSubject();
  return data;
}

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function renderSubject() {
  const s = state.subject;
  $("dpo-result").hidden = !s;
  if (!s) return;
  $("dpo-subject").textContent = s.phone;
  $("dpo-count").textContent = t("result.count", { n: s.sessions.length });
  $("dpo-empty").hidden = s.sessions.length > 0;
  $("dpo-export").disabled = false;
  $("dpo-erase").disabled = s.sessions.length === 0;
  const rows = s.sessions.map((x) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "dpo-session";
    tr.dataset.sessionId = x.id;
    const date = cell(when(x.created_at));
    const id = document.createElement("span");
    id.className = "mono muted nowrap";
    id.textContent = x.id + (x.state !== "ended" ? ` · ${t("state.open")}` : "");
    date.append(document.createElement("br"), id);
    const btn = document.createElement("button");
    btn.type = "button";
    btn.className = "btn btn-small";
    btn.dataset.testid = "dpo-rectify-open";
    btn.textContent = t("rectify.open");
    btn.addEventListener("click", () => openRectify(x));
    const actions = document.createElement("td");
    actions.append(btn);
    const cells = [date, cell(x.reference || "—"), cell(x.agent || "—"), cell(x.device_type || "—", "device"),
      cell(t("media.summary", { v: x.recordings, s: x.snapshots, u: x.uploads })), actions];
    // Labels for the narrow layout, where each row becomes a card (dpo.css).
    ["col.date", "col.reference", "col.agent", "col.device", "col.media"].forEach((k, i) => (cells[i].dataset.label = t(k)));
    tr.append(...cells);
    return tr;
  });
  $("dpo-session-rows").replaceChildren(...rows);
}

function openRectify(session) {
  state.rectifying = session.id;
  $("dpo-rectify-session").textContent = session.id;
  $("dpo-rectify-phone").value = session.phone;
  $("dpo-rectify-reference").value = session.reference || "";
  $("dpo-rectify-reason").value = reason();
  $("dpo-rectify").hidden = false;
  for (const tr of document.querySelectorAll("#dpo-session-rows tr")) tr.classList.toggle("editing", tr.dataset.sessionId === session.id);
  $("dpo-rectify").scrollIntoView({ block: "nearest" });
  $("dpo-rectify-reason").focus();
}

async function saveRectify(ev) {
  ev.preventDefault();
  const id = state.rectifying;
  const body = { phone: $("dpo-rectify-phone").value, reference: $("dpo-rectify-reference").value, reason: $("dpo-rectify-reason").value };
  try {
    const data = await api("POST", `/api/dpo/sessions/${encodeURIComponent(id)}/rectify`, body);
    $("dpo-rectify").hidden = true;
    state.rectifying = null;
    await search(state.subject.phone);
    note("dpo-dnr-status", data.changed.length ? "rectify.done" : "rectify.same", { fields: data.changed.join(", ") }, "ok");
  } catch (err) {
    showError(err);
  }
}

async function toggleDnr() {
  const want = $("dpo-dnr").checked;
  try {
    const data = await api("POST", "/api/dpo/objection", { phone: state.subject.phone, do_not_record: want, reason: reason() });
    state.subject.do_not_record = data.do_not_record;
    note("dpo-dnr-status", data.do_not_record ? "dnr.on" : "dnr.off", null, data.do_not_record ? "on" : "off");
  } catch (err) {
    $("dpo-dnr").checked = !want;
    showError(err);
  }
}

function filename(res) {
  const m = /filename="([^"]+)"/.exec(res.headers.get("Content-Disposition") || "");
  return m ? m[1] : "export.zip";
}

async function exportAll() {
  const btn = $("dpo-export");
  btn.disabled = true;
  showError(null);
  note("dpo-export-status", "export.working", null, "working");
  try {
    const res = await api("POST", "/api/dpo/export", { phone: state.subject.phone, reason: reason() }, { raw: true, accept: "application/zip" });
    const blob = await res.blob();
    const name = filename(res);
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    note("dpo-export-status", "export.done", { name, size: size(blob.size) }, "done");
  } catch (err) {
    note("dpo-export-status", null);
    showError(err);
  } finally {
    btn.disabled = false;
  }
}

async function erase(ev) {
  ev.preventDefault();
  showError(null);
  note("dpo-erase-status", "erase.working", null, "working");
  try {
    const data = await api("POST", "/api/dpo/erase", { phone: state.subject.phone, confirm: $("dpo-erase-phone").value, reason: reason() });
    $("dpo-erase-confirm").hidden = true;
    $("dpo-erase-phone").value = "";
    await search(state.subject.phone);
    note("dpo-erase-status", "erase.done", data.erased, "done");
  } catch (err) {
    note("dpo-erase-status", null);
    showError(err);
  }
}

// --- audit log -----------------------------------------------------------------------------

async function loadAudit(more = false) {
  // One page at a time: "More" follows the server's cursor (next_before; null on the last page).
  const before = more && state.auditNext ? `&before=${state.auditNext}` : "";
  try {
    const data = await api("GET", `/api/dpo/audit?limit=100${before}`);
    state.audit = more ? state.audit.concat(data.records) : data.records;
    state.auditNext = data.next_before;
    state.verify = data.verify;
    $("dpo-audit-more").hidden = !data.next_before;
    renderAudit();
  } catch (err) {
    showError(err);
  }
}

function renderAudit() {
  const v = state.verify;
  const box = $("dpo-audit-verify");
  if (v) {
    box.dataset.state = v.ok ? "ok" : "broken";
    box.textContent = v.ok
      ? t("audit.ok", { n: v.count }) + (v.pruned_through ? " " + t("audit.pruned", { seq: v.pruned_through }) : "")
      : t("audit.broken", { problem: v.problem });
  }
  const rows = state.audit.map((r) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "dpo-audit-row";
    tr.dataset.seq = String(r.seq);
    tr.dataset.result = r.result;
    const cells = [cell(String(r.seq), "mono seq"), cell(stamp(r.at), "nowrap"), cell(`${r.actor} (${r.role})`, "nowrap"), cell(r.action, "mono"),
      cell(r.object || "—", "mono"), cell(r.result, "result"), cell(r.reason || "")];
    ["#", "audit.at", "audit.actor", "audit.action", "audit.object", "audit.result", "audit.reason"].forEach((k, i) => (cells[i].dataset.label = k === "#" ? "#" : t(k)));
    tr.append(...cells);
    return tr;
  });
  $("dpo-audit-rows").replaceChildren(...rows);
}

function showTab(which) {
  for (const name of ["subject", "audit"]) {
    $(`tab-${name}`).setAttribute("aria-selected", String(name === which));
    $(`panel-${name}`).hidden = name !== which;
  }
  if (which === "audit") loadAudit();
}

// --- wiring ----------------------------------------------------------------------------------

const shell = staffShell({
  page: "dpo",
  role: "dpo",
  onConsole: (user) => (state.me = user),
  onLogout() {
    state.me = null;
    state.subject = null;
    renderSubject();
  },
});

$("search-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  note("dpo-dnr-status", null);
  note("dpo-export-status", null);
  note("dpo-erase-status", null);
  $("dpo-rectify").hidden = true;
  $("dpo-erase-confirm").hidden = true;
  try {
    await search($("dpo-phone").value);
  } catch (err) {
    state.subject = null;
    renderSubject();
    showError(err);
  }
});
$("dpo-dnr").addEventListener("change", toggleDnr);
$("dpo-export").addEventListener("click", exportAll);
$("dpo-erase").addEventListener("click", () => {
  $("dpo-erase-confirm").hidden = false;
  $("dpo-erase-phone").focus();
});
$("dpo-erase-cancel").addEventListener("click", () => ($("dpo-erase-confirm").hidden = true));
$("dpo-erase-confirm").addEventListener("submit", erase);
$("dpo-rectify").addEventListener("submit", saveRectify);
$("dpo-rectify-cancel").addEventListener("click", () => {
  $("dpo-rectify").hidden = true;
  state.rectifying = null;
  for (const tr of document.querySelectorAll("#dpo-session-rows tr.editing")) tr.classList.remove("editing");
});
$("tab-subject").addEventListener("click", () => showTab("subject"));
$("tab-audit").addEventListener("click", () => showTab("audit"));
$("dpo-audit-reload").addEventListener("click", () => loadAudit());
$("dpo-audit-more").addEventListener("click", () => loadAudit(true));
i18n.onLangChange(relabel);
i18n.init();
relabel();
shell.boot();
