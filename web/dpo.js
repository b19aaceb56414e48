// The data-protection officer's page (/dpo): requests by phone number (search, export,
// erase, correct, object to recording) and the audit log. API: server/privacy/dpo.py; roles:
// docs/security.md; test ids: docs/testing.md. Texts in lv/en/ru, always set as text.
// Language choice and lookup are the shared web/i18n.js; this page adds its own strings.

import * as i18n from "./i18n.js";

const STRINGS = {
  en: {
    title: "Data protection",
    language: "Language",
    logout: "Log out",
    cancel: "Cancel",
    "login.heading": "Log in",
    "login.username": "User name",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.failed": "Wrong user name or password.",
    "login.error": "Could not log in. Try again.",
    "forbidden.heading": "No access",
    "forbidden.text": "This page is for the data-protection officer.",
    "tab.subject": "Requests by phone number",
    "tab.audit": "Audit log",
    "search.heading": "Find what is held about a phone number",
    "search.hint": "Access, correction, erasure and objection requests (GDPR Art. 15–21). Every search and action is written to the audit log.",
    "search.phone": "Phone number",
    "search.reason": "Request reference (optional)",
    "search.submit": "Search",
    "result.count": "{n} session(s)",
    "result.empty": "Nothing is held about this number.",
    "dnr.label": "Do not record this number (objection)",
    "dnr.on": "Recording will not be started for this number.",
    "dnr.off": "This number may be recorded again.",
    "col.date": "Date",
    "col.reference": "Reference",
    "col.agent": "Agent",
    "col.device": "Device",
    "col.media": "Kept",
    "col.actions": "Actions",
    "media.summary": "video: {v}, snapshots: {s}, photos: {u}",
    "state.open": "open",
    "rectify.open": "Correct",
    "rectify.heading": "Correct session",
    "rectify.phone": "Correct phone number",
    "rectify.reference": "Correct reference",
    "rectify.reason": "Why (required)",
    "rectify.save": "Save correction",
    "rectify.done": "Corrected: {fields}.",
    "rectify.same": "Nothing changed.",
    "export.button": "Export everything (ZIP)",
    "export.hint": "Records as JSON, recordings as video files, photos as JPEG, and a manifest with SHA-256 hashes.",
    "export.working": "Decrypting and packing…",
    "export.done": "Downloaded {name} ({size}).",
    "erase.button": "Erase everything…",
    "erase.hint": "Deletes the records and every recording and photo in every storage, and destroys their keys. Cannot be undone.",
    "erase.confirm": "Type the phone number again to confirm",
    "erase.submit": "Erase for good",
    "erase.working": "Erasing…",
    "erase.done": "Erased {sessions} session(s) and {recordings} recording(s)/photo(s).",
    "audit.heading": "Audit log",
    "audit.reload": "Reload",
    "audit.more": "Older records",
    "audit.at": "Time",
    "audit.actor": "Who",
    "audit.action": "Action",
    "audit.object": "Object",
    "audit.result": "Result",
    "audit.reason": "Reason",
    "audit.ok": "The chain is intact: {n} records checked.",
    "audit.pruned": "Records up to #{seq} were removed by retention.",
    "audit.broken": "The audit log has been tampered with: {problem}",
    "error.network": "The server could not be reached.",
    "error.code": "code {code}",
    "size.kb": "{n} KB",
    "size.mb": "{n} MB",
  },
  lv: {
    title: "Datu aizsardzība",
    language: "Valoda",
    logout: "Iziet",
    cancel: "Atcelt",
    "login.heading": "Pieteikšanās",
    "login.username": "Lietotājvārds",
    "login.password": "Parole",
    "login.submit": "Pieteikties",
    "login.failed": "Nepareizs lietotājvārds vai parole.",
    "login.error": "Neizdevās pieteikties. Mēģiniet vēlreiz.",
    "forbidden.heading": "Nav piekļuves",
    "forbidden.text": "Šī lapa ir paredzēta datu aizsardzības speciālistam.",
    "tab.subject": "Pieprasījumi pēc tālruņa numura",
    "tab.audit": "Audita žurnāls",
    "search.heading": "Atrast, kas glabājas par tālruņa numuru",
    "search.hint": "Piekļuves, labošanas, dzēšanas un iebildumu pieprasījumi (VDAR 15.–21. pants). Katra meklēšana un darbība tiek ierakstīta audita žurnālā.",
    "search.phone": "Tālruņa numurs",
    "search.reason": "Pieprasījuma numurs (nav obligāts)",
    "search.submit": "Meklēt",
    "result.count": "Sesijas: {n}",
    "result.empty": "Par šo numuru nekas netiek glabāts.",
    "dnr.label": "Neierakstīt šo numuru (iebildums)",
    "dnr.on": "Šim numuram ieraksts netiks sākts.",
    "dnr.off": "Šo numuru atkal drīkst ierakstīt.",
    "col.date": "Datums",
    "col.reference": "Atsauce",
    "col.agent": "Konsultants",
    "col.device": "Ierīce",
    "col.media": "Saglabāts",
    "col.actions": "Darbības",
    "media.summary": "video: {v}, momentuzņēmumi: {s}, foto: {u}",
    "state.open": "atvērta",
    "rectify.open": "Labot",
    "rectify.heading": "Labot sesiju",
    "rectify.phone": "Pareizais tālruņa numurs",
    "rectify.reference": "Pareizā atsauce",
    "rectify.reason": "Iemesls (obligāts)",
    "rectify.save": "Saglabāt labojumu",
    "rectify.done": "Labots: {fields}.",
    "rectify.same": "Nekas netika mainīts.",
    "export.button": "Eksportēt visu (ZIP)",
    "export.hint": "Ieraksti JSON formātā, video ieraksti kā video faili, foto kā JPEG un manifests ar SHA-256 kontrolsummām.",
    "export.working": "Atšifrē un sagatavo…",
    "export.done": "Lejupielādēts {name} ({size}).",
    "erase.button": "Dzēst visu…",
    "erase.hint": "Dzēš ierakstus un visus video un foto visās krātuvēs un iznīcina to atslēgas. To nevar atsaukt.",
    "erase.confirm": "Lai apstiprinātu, ierakstiet tālruņa numuru vēlreiz",
    "erase.submit": "Dzēst neatgriezeniski",
    "erase.working": "Dzēš…",
    "erase.done": "Dzēstas sesijas: {sessions}; ieraksti un foto: {recordings}.",
    "audit.heading": "Audita žurnāls",
    "audit.reload": "Atjaunot",
    "audit.more": "Vecāki ieraksti",
    "audit.at": "Laiks",
    "audit.actor": "Kas",
    "audit.action": "Darbība",
    "audit.object": "Objekts",
    "audit.result": "Rezultāts",
    "audit.reason": "Iemesls",
    "audit.ok": "Ķēde ir nebojāta: pārbaudīti {n} ieraksti.",
    "audit.pruned": "Ieraksti līdz #{seq} ir dzēsti glabāšanas termiņa dēļ.",
    "audit.broken": "Audita žurnāls ir bojāts: {problem}",
    "error.network": "Neizdevās sazināties ar serveri.",
    "error.code": "kods {code}",
    "size.kb": "{n} KB",
    "size.mb": "{n} MB",
  },
  ru: {
    title: "Защита данных",
    language: "Язык",
    logout: "Выйти",
    cancel: "Отмена",
    "login.heading": "Вход",
    "login.username": "Имя пользователя",
    "login.password": "Пароль",
    "login.submit": "Войти",
    "login.failed": "Неверное имя пользователя или пароль.",
    "login.error": "Не удалось войти. Попробуйте ещё раз.",
    "forbidden.heading": "Нет доступа",
    "forbidden.text": "Эта страница предназначена для специалиста по защите данных.",
    "tab.subject": "Запросы по номеру телефона",
    "tab.audit": "Журнал аудита",
    "search.heading": "Найти, что хранится о номере телефона",
    "search.hint": "Запросы на доступ, исправление, удаление и возражение (GDPR, ст. 15–21). Каждый поиск и действие записываются в журнал аудита.",
    "search.phone": "Номер телефона",
    "search.reason": "Номер запроса (необязательно)",
    "search.submit": "Найти",
    "result.count": "Сеансов: {n}",
    "result.empty": "Об этом номере ничего не хранится.",
    "dnr.label": "Не записывать этот номер (возражение)",
    "dnr.on": "Запись для этого номера не будет начинаться.",
    "dnr.off": "Этот номер снова можно записывать.",
    "col.date": "Дата",
    "col.reference": "Номер обращения",
    "col.agent": "Консультант",
    "col.device": "Устройство",
    "col.media": "Сохранено",
    "col.actions": "Действия",
    "media.summary": "видео: {v}, снимки: {s}, фото: {u}",
    "state.open": "открыт",
    "rectify.open": "Исправить",
    "rectify.heading": "Исправить сеанс",
    "rectify.phone": "Правильный номер телефона",
    "rectify.reference": "Правильный номер обращения",
    "rectify.reason": "Причина (обязательно)",
    "rectify.save": "Сохранить исправление",
    "rectify.done": "Исправлено: {fields}.",
    "rectify.same": "Ничего не изменилось.",
    "export.button": "Экспортировать всё (ZIP)",
    "export.hint": "Записи в JSON, видеозаписи как видеофайлы, фото в JPEG и манифест с хешами SHA-256.",
    "export.working": "Расшифровка и упаковка…",
    "export.done": "Загружено: {name} ({size}).",
    "erase.button": "Удалить всё…",
    "erase.hint": "Удаляет записи и все видео и фото во всех хранилищах и уничтожает их ключи. Отменить нельзя.",
    "erase.confirm": "Для подтверждения введите номер телефона ещё раз",
    "erase.submit": "Удалить навсегда",
    "erase.working": "Удаление…",
    "erase.done": "Удалено сеансов: {sessions}; записей и фото: {recordings}.",
    "audit.heading": "Журнал аудита",
    "audit.reload": "Обновить",
    "audit.more": "Более старые записи",
    "audit.at": "Время",
    "audit.actor": "Кто",
    "audit.action": "Действие",
    "audit.object": "Объект",
    "audit.result": "Результат",
    "audit.reason": "Причина",
    "audit.ok": "Цепочка цела: проверено записей: {n}.",
    "audit.pruned": "Записи до #{seq} удалены по сроку хранения.",
    "audit.broken": "Журнал аудита повреждён: {problem}",
    "error.network": "Не удалось связаться с сервером.",
    "error.code": "код {code}",
    "size.kb": "{n} КБ",
    "size.mb": "{n} МБ",
  },
};

i18n.extend(STRINGS);
const t = i18n.t;

const state = {
  me: null,
  csrf: "",
  subject: null, // last search answer
  rectifying: null, // session id
  audit: [],
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
  box.textContent = err.code ? `${err.message} (${t("error.code", { code: err.code })})` : err.message;
  box.dataset.code = err.code || "";
  box.hidden = false;
}

// --- API ----------------------------------------------------------------------------------

async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = { Accept: raw ? "application/zip" : "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = state.csrf;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, credentials: "same-origin", cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (_) {
    throw { code: "network", message: t("error.network") };
  }
  if (res.status === 401) {
    showView("login");
    throw { code: "not_authenticated", message: t("login.heading") };
  }
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    const e = (data && data.error) || {};
    throw { code: e.code || String(res.status), message: e.message || `HTTP ${res.status}` };
  }
  if (raw) return res;
  return res.status === 204 ? null : res.json();
}

function showView(name) {
  document.body.dataset.view = name;
  for (const v of ["login", "forbidden", "console"]) $(`view-${v}`).hidden = v !== name;
  $("dpo-logout").hidden = name === "login";
  $("dpo-user").hidden = name === "login";
}

async function boot() {
  let me;
  try {
    const res = await fetch("/api/me", { credentials: "same-origin", cache: "no-store" });
    me = res.ok ? await res.json() : null;
  } catch (_) {
    me = null;
  }
  if (!me) return showView("login");
  state.me = me.user;
  state.csrf = me.csrf;
  $("dpo-user").textContent = `${me.user.name} (${me.user.role})`;
  if (me.user.role !== "dpo") return showView("forbidden");
  showView("console");
}

// --- subject --------------------------------------------------------------------------------

function reason() {
  return $("dpo-reason").value.trim();
}

async function search(phone) {
  showError(null);
  const data = await api("/api/dpo/search", { method: "POST", body: { phone, reason: reason() } });
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
    const data = await api(`/api/dpo/sessions/${encodeURIComponent(id)}/rectify`, { method: "POST", body });
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
    const data = await api("/api/dpo/objection", { method: "POST", body: { phone: state.subject.phone, do_not_record: want, reason: reason() } });
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
    const res = await api("/api/dpo/export", { method: "POST", body: { phone: state.subject.phone, reason: reason() }, raw: true });
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
    const data = await api("/api/dpo/erase", { method: "POST", body: { phone: state.subject.phone, confirm: $("dpo-erase-phone").value, reason: reason() } });
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
  const before = more && state.audit.length ? `&before=${state.audit[state.audit.length - 1].seq}` : "";
  try {
    const data = await api(`/api/dpo/audit?limit=100${before}`);
    state.audit = more ? state.audit.concat(data.records) : data.records;
    state.verify = data.verify;
    $("dpo-audit-more").hidden = data.records.length < 100;
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

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("login-error");
  err.hidden = true;
  let status = 0;
  try {
    const res = await fetch("/api/login", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      credentials: "same-origin",
      body: JSON.stringify({ username: $("login-username").value, password: $("login-password").value }),
    });
    status = res.status;
  } catch (_) {
    status = 0;
  }
  if (status === 200) {
    $("login-password").value = "";
    return boot();
  }
  err.textContent = t(status === 401 ? "login.failed" : "login.error");
  err.hidden = false;
});

$("dpo-logout").addEventListener("click", async () => {
  await api("/api/logout", { method: "POST" }).catch(() => null);
  state.me = null;
  state.subject = null;
  renderSubject();
  showView("login");
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
boot();
