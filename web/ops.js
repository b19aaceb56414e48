// Ops console (/ops): live rooms from server-sent events (GET /api/ops/stream), ending a
// room, a supervisor's silent watch (/ws/watch/{room}, docs/protocol.md). Plain ES module,
// no build step, strict CSP (no inline script or style). docs/ops.md lists the test ids.
// Language choice and lookup are the shared web/i18n.js; this page adds its own strings.

import * as i18n from "./i18n.js";

const STRINGS = {
  en: {
    title: "Ops console",
    language: "Language",
    logout: "Log out",
    "login.heading": "Log in",
    "login.username": "User name",
    "login.password": "Password",
    "login.submit": "Log in",
    "login.failed": "Wrong user name or password.",
    "login.error": "Could not log in. Try again.",
    "forbidden.heading": "No access",
    "forbidden.text": "The ops console is for supervisors.",
    "stream.idle": "Connecting…",
    "stream.live": "Live",
    "stream.reconnecting": "Reconnecting…",
    "totals.heading": "Now",
    "totals.rooms": "Active rooms",
    "totals.waiting": "{n} waiting",
    "totals.participants": "Participants",
    "totals.in": "Incoming",
    "totals.out": "Outgoing",
    "totals.cpu": "Process CPU",
    "totals.memory": "Memory",
    "totals.lag": "event loop lag {ms} ms",
    "today.heading": "Today",
    "today.sessions": "Sessions",
    "today.connected": "{n} connected",
    "today.median": "Median time to connect",
    "today.never": "Caller never connected",
    "today.ofFinished": "{n} of {total} finished",
    "drop.link": "link not opened",
    "drop.notice": "left at the notice",
    "drop.camera": "camera not started",
    "drop.connection": "connection failed",
    "webhooks.title": "Webhooks",
    "webhooks.off": "off",
    "webhooks.ok": "OK",
    "webhooks.failing": "failing",
    "webhooks.detail": "{delivered} delivered · {queued} waiting · {failed} failed attempts",
    "recording.title": "Recording",
    "recording.off": "off",
    "rooms.heading": "Live rooms",
    "rooms.empty": "No live rooms right now.",
    "room.agent": "Agent",
    "room.phone": "Phone",
    "room.reference": "Reference",
    "room.device": "Caller's device",
    "room.recording": "Recording",
    "room.watch": "Watch",
    "room.end": "End room",
    "room.endReason": "Why is this room ended? (kept in the audit log)",
    "room.endConfirm": "End now",
    "room.endCancel": "Cancel",
    "room.endNeedReason": "Give a reason.",
    "room.endFailed": "The room could not be ended: {msg}",
    "room.total": "in {in} · out {out}",
    "room.watchers": "{n} watching",
    "room.none": "—",
    "part.in": "in",
    "part.out": "out",
    "part.rtt": "RTT",
    "part.ws": "signalling connected",
    "part.noWs": "signalling not connected",
    "spark.in": "incoming",
    "spark.fps": "camera fps",
    "state.waiting": "waiting",
    "state.active": "active",
    "state.ended": "ended",
    "role.caller": "Caller",
    "role.agent": "Agent",
    "role.supervisor": "Supervisor",
    "conn.new": "new",
    "conn.connecting": "connecting",
    "conn.connected": "connected",
    "conn.disconnected": "disconnected",
    "conn.failed": "failed",
    "conn.closed": "closed",
    "conn.none": "no media",
    "caller.link_sent": "link sent",
    "caller.opened": "link opened",
    "caller.accepted": "notice accepted",
    "caller.connecting": "connecting",
    "caller.live": "camera live",
    "caller.paused": "camera paused",
    "caller.reconnecting": "reconnecting",
    "caller.left": "left",
    "caller.ended": "ended",
    "warn.no_frames": "No frames on {track} for {seconds} s",
    "warn.high_loss": "High packet loss: {loss} ({participant})",
    "warn.caller_reconnecting": "Caller is reconnecting",
    "warn.webhooks_failing": "Webhook deliveries are failing ({queued} waiting)",
    "warn.webhooks_lost": "{count} webhook events were lost",
    "warn.event_loop_lag": "Server busy: event loop lag {ms} ms",
    "watch.title": "Silent watch",
    "watch.stop": "Stop watching",
    "watch.hint": "Neither the caller nor the agent is told. Every watch is audited.",
    "watch.idle": "starting",
    "watch.connecting": "connecting",
    "watch.connected": "watching",
    "watch.ended": "room ended",
    "watch.failed": "failed",
    "watch.closed": "closed",
    "track.camera": "camera",
    "track.screen": "screen",
    "unit.kbps": "kbit/s",
    "unit.mbps": "Mbit/s",
    "unit.fps": "fps",
    "unit.ms": "ms",
    "unit.s": "s",
    "unit.min": "min",
    "unit.h": "h",
    "unit.mb": "MB",
  },
  lv: {
    title: "Operāciju konsole",
    language: "Valoda",
    logout: "Iziet",
    "login.heading": "Pieteikšanās",
    "login.username": "Lietotājvārds",
    "login.password": "Parole",
    "login.submit": "Pieteikties",
    "login.failed": "Nepareizs lietotājvārds vai parole.",
    "login.error": "Neizdevās pieteikties. Mēģiniet vēlreiz.",
    "forbidden.heading": "Nav piekļuves",
    "forbidden.text": "Operāciju konsole ir paredzēta uzraugiem.",
    "stream.idle": "Savienojas…",
    "stream.live": "Tiešsaistē",
    "stream.reconnecting": "Atjauno savienojumu…",
    "totals.heading": "Tagad",
    "totals.rooms": "Aktīvās istabas",
    "totals.waiting": "{n} gaida",
    "totals.participants": "Dalībnieki",
    "totals.in": "Ienākošā",
    "totals.out": "Izejošā",
    "totals.cpu": "Procesa CPU",
    "totals.memory": "Atmiņa",
    "totals.lag": "notikumu cilpas aizture {ms} ms",
    "today.heading": "Šodien",
    "today.sessions": "Sesijas",
    "today.connected": "{n} savienotas",
    "today.median": "Savienošanās laika mediāna",
    "today.never": "Zvanītājs nepievienojās",
    "today.ofFinished": "{n} no {total} pabeigtajām",
    "drop.link": "saite netika atvērta",
    "drop.notice": "pameta pie paziņojuma",
    "drop.camera": "kamera netika ieslēgta",
    "drop.connection": "savienojums neizdevās",
    "webhooks.title": "Tīmekļa āķi",
    "webhooks.off": "izslēgti",
    "webhooks.ok": "Kārtībā",
    "webhooks.failing": "kļūdas",
    "webhooks.detail": "{delivered} piegādāti · {queued} gaida · {failed} neizdevušies mēģinājumi",
    "recording.title": "Ierakstīšana",
    "recording.off": "izslēgta",
    "rooms.heading": "Aktīvās istabas",
    "rooms.empty": "Pašlaik nav aktīvu istabu.",
    "room.agent": "Konsultants",
    "room.phone": "Tālrunis",
    "room.reference": "Atsauce",
    "room.device": "Zvanītāja ierīce",
    "room.recording": "Ierakstīšana",
    "room.watch": "Vērot",
    "room.end": "Beigt istabu",
    "room.endReason": "Kāpēc istaba tiek beigta? (saglabā audita žurnālā)",
    "room.endConfirm": "Beigt tagad",
    "room.endCancel": "Atcelt",
    "room.endNeedReason": "Norādiet iemeslu.",
    "room.endFailed": "Istabu neizdevās beigt: {msg}",
    "room.total": "ienāk {in} · iziet {out}",
    "room.watchers": "{n} vēro",
    "room.none": "—",
    "part.in": "ienāk",
    "part.out": "iziet",
    "part.rtt": "RTT",
    "part.ws": "signalizācija savienota",
    "part.noWs": "signalizācija nav savienota",
    "spark.in": "ienākošā",
    "spark.fps": "kameras kadri/s",
    "state.waiting": "gaida",
    "state.active": "aktīva",
    "state.ended": "beigta",
    "role.caller": "Zvanītājs",
    "role.agent": "Konsultants",
    "role.supervisor": "Uzraugs",
    "conn.new": "jauns",
    "conn.connecting": "savienojas",
    "conn.connected": "savienots",
    "conn.disconnected": "atvienots",
    "conn.failed": "neizdevās",
    "conn.closed": "slēgts",
    "conn.none": "nav video",
    "caller.link_sent": "saite nosūtīta",
    "caller.opened": "saite atvērta",
    "caller.accepted": "paziņojums pieņemts",
    "caller.connecting": "savienojas",
    "caller.live": "kamera darbojas",
    "caller.paused": "kamera apturēta",
    "caller.reconnecting": "atjauno savienojumu",
    "caller.left": "aizgāja",
    "caller.ended": "beigta",
    "warn.no_frames": "{track}: nav kadru jau {seconds} s",
    "warn.high_loss": "Liels pakešu zudums: {loss} ({participant})",
    "warn.caller_reconnecting": "Zvanītājs atjauno savienojumu",
    "warn.webhooks_failing": "Tīmekļa āķu piegāde neizdodas ({queued} gaida)",
    "warn.webhooks_lost": "Zaudēti {count} tīmekļa āķu notikumi",
    "warn.event_loop_lag": "Serveris noslogots: notikumu cilpas aizture {ms} ms",
    "watch.title": "Klusā vērošana",
    "watch.stop": "Beigt vērot",
    "watch.hint": "Ne zvanītājam, ne konsultantam par to netiek paziņots. Katra vērošana tiek auditēta.",
    "watch.idle": "sāk",
    "watch.connecting": "savienojas",
    "watch.connected": "vēro",
    "watch.ended": "istaba beigta",
    "watch.failed": "neizdevās",
    "watch.closed": "slēgts",
    "track.camera": "kamera",
    "track.screen": "ekrāns",
    "unit.kbps": "kbit/s",
    "unit.mbps": "Mbit/s",
    "unit.fps": "kadri/s",
    "unit.ms": "ms",
    "unit.s": "s",
    "unit.min": "min",
    "unit.h": "h",
    "unit.mb": "MB",
  },
  ru: {
    title: "Консоль операций",
    language: "Язык",
    logout: "Выйти",
    "login.heading": "Вход",
    "login.username": "Имя пользователя",
    "login.password": "Пароль",
    "login.submit": "Войти",
    "login.failed": "Неверное имя пользователя или пароль.",
    "login.error": "Не удалось войти. Попробуйте ещё раз.",
    "forbidden.heading": "Нет доступа",
    "forbidden.text": "Консоль операций доступна только супервайзерам.",
    "stream.idle": "Подключение…",
    "stream.live": "В эфире",
    "stream.reconnecting": "Переподключение…",
    "totals.heading": "Сейчас",
    "totals.rooms": "Активные комнаты",
    "totals.waiting": "{n} ожидают",
    "totals.participants": "Участники",
    "totals.in": "Входящий",
    "totals.out": "Исходящий",
    "totals.cpu": "CPU процесса",
    "totals.memory": "Память",
    "totals.lag": "задержка цикла событий {ms} мс",
    "today.heading": "Сегодня",
    "today.sessions": "Сеансы",
    "today.connected": "{n} подключились",
    "today.median": "Медиана времени подключения",
    "today.never": "Абонент не подключился",
    "today.ofFinished": "{n} из {total} завершённых",
    "drop.link": "ссылка не открыта",
    "drop.notice": "ушёл на уведомлении",
    "drop.camera": "камера не включена",
    "drop.connection": "соединение не удалось",
    "webhooks.title": "Вебхуки",
    "webhooks.off": "выключены",
    "webhooks.ok": "ОК",
    "webhooks.failing": "ошибки",
    "webhooks.detail": "{delivered} доставлено · {queued} в очереди · {failed} неудачных попыток",
    "recording.title": "Запись",
    "recording.off": "выключена",
    "rooms.heading": "Активные комнаты",
    "rooms.empty": "Сейчас нет активных комнат.",
    "room.agent": "Консультант",
    "room.phone": "Телефон",
    "room.reference": "Ссылка на обращение",
    "room.device": "Устройство абонента",
    "room.recording": "Запись",
    "room.watch": "Наблюдать",
    "room.end": "Завершить комнату",
    "room.endReason": "Почему комната завершается? (сохраняется в журнале аудита)",
    "room.endConfirm": "Завершить",
    "room.endCancel": "Отмена",
    "room.endNeedReason": "Укажите причину.",
    "room.endFailed": "Не удалось завершить комнату: {msg}",
    "room.total": "вход {in} · выход {out}",
    "room.watchers": "наблюдают: {n}",
    "room.none": "—",
    "part.in": "вход",
    "part.out": "выход",
    "part.rtt": "RTT",
    "part.ws": "сигнализация подключена",
    "part.noWs": "сигнализация не подключена",
    "spark.in": "входящий",
    "spark.fps": "кадры/с камеры",
    "state.waiting": "ожидает",
    "state.active": "активна",
    "state.ended": "завершена",
    "role.caller": "Абонент",
    "role.agent": "Консультант",
    "role.supervisor": "Супервайзер",
    "conn.new": "новое",
    "conn.connecting": "подключается",
    "conn.connected": "подключено",
    "conn.disconnected": "разорвано",
    "conn.failed": "ошибка",
    "conn.closed": "закрыто",
    "conn.none": "нет видео",
    "caller.link_sent": "ссылка отправлена",
    "caller.opened": "ссылка открыта",
    "caller.accepted": "уведомление принято",
    "caller.connecting": "подключается",
    "caller.live": "камера включена",
    "caller.paused": "камера на паузе",
    "caller.reconnecting": "переподключается",
    "caller.left": "ушёл",
    "caller.ended": "завершено",
    "warn.no_frames": "{track}: нет кадров уже {seconds} с",
    "warn.high_loss": "Большие потери пакетов: {loss} ({participant})",
    "warn.caller_reconnecting": "Абонент переподключается",
    "warn.webhooks_failing": "Вебхуки не доставляются ({queued} в очереди)",
    "warn.webhooks_lost": "Потеряно событий вебхуков: {count}",
    "warn.event_loop_lag": "Сервер перегружен: задержка цикла событий {ms} мс",
    "watch.title": "Скрытое наблюдение",
    "watch.stop": "Прекратить",
    "watch.hint": "Ни абонент, ни консультант об этом не узнают. Каждое наблюдение записывается в аудит.",
    "watch.idle": "запуск",
    "watch.connecting": "подключение",
    "watch.connected": "наблюдение",
    "watch.ended": "комната завершена",
    "watch.failed": "ошибка",
    "watch.closed": "закрыто",
    "track.camera": "камера",
    "track.screen": "экран",
    "unit.kbps": "кбит/с",
    "unit.mbps": "Мбит/с",
    "unit.fps": "к/с",
    "unit.ms": "мс",
    "unit.s": "с",
    "unit.min": "мин",
    "unit.h": "ч",
    "unit.mb": "МБ",
  },
};

const SVG_NS = "http://www.w3.org/2000/svg";
const WINDOW = 120; // sparkline samples (one a second)

i18n.extend(STRINGS);
const t = i18n.t;

const state = {
  me: null,
  csrf: "",
  source: null,
  retryTimer: null,
  snapshot: null,
  cards: new Map(),
  watch: null,
};
window.callassistOps = state; // for tests and debugging

const $ = (id) => document.getElementById(id);
const q = (root, testid) => root.querySelector(`[data-testid="${testid}"]`);

// What i18n.apply() cannot redo by itself after a language switch.
function relabel() {
  document.title = t("title");
  setStream(document.querySelector('[data-testid="ops-stream-state"]').dataset.state);
  if (state.snapshot) render(state.snapshot);
  if (state.watch) setWatchState(state.watch.state);
}

// --- formatting ---------------------------------------------------------------------------

function num(value, digits = 0) {
  return new Intl.NumberFormat(i18n.lang(), {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  }).format(value);
}

function rate(kbps) {
  if (kbps >= 1000) return `${num(kbps / 1000, 1)} ${t("unit.mbps")}`;
  return `${num(kbps, 0)} ${t("unit.kbps")}`;
}

function pct(share) {
  return `${num(share * 100, share > 0 && share < 0.1 ? 1 : 0)} %`;
}

function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} ${t("unit.s")}`;
  if (s < 3600) return `${Math.floor(s / 60)} ${t("unit.min")} ${s % 60} ${t("unit.s")}`;
  return `${Math.floor(s / 3600)} ${t("unit.h")} ${Math.floor((s % 3600) / 60)} ${t("unit.min")}`;
}

function mb(bytes) {
  return `${num(bytes / 1048576, 0)} ${t("unit.mb")}`;
}

// --- API ----------------------------------------------------------------------------------

async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  if (method !== "GET") {
    headers["Content-Type"] = "application/json";
    headers["X-CSRF-Token"] = state.csrf;
  }
  const res = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  return { status: res.status, data };
}

function showView(name) {
  document.body.dataset.view = name;
  for (const v of ["login", "forbidden", "console"]) $(`view-${v}`).hidden = v !== name;
  $("ops-logout").hidden = name === "login";
  $("ops-user").hidden = name === "login";
}

async function boot() {
  const { status, data } = await api("/api/me").catch(() => ({ status: 0, data: null }));
  if (status !== 200 || !data) {
    stopStream();
    showView("login");
    return;
  }
  state.me = data.user;
  state.csrf = data.csrf;
  $("ops-user").textContent = `${data.user.name} (${data.user.role})`;
  if (data.user.role !== "supervisor") {
    stopStream();
    showView("forbidden");
    return;
  }
  showView("console");
  startStream();
}

// --- the stream ---------------------------------------------------------------------------

function setStream(s) {
  const el = document.querySelector('[data-testid="ops-stream-state"]');
  el.dataset.state = s;
  $("stream-text").textContent = t(`stream.${s}`);
}

function stopStream() {
  clearTimeout(state.retryTimer);
  if (state.source) state.source.close();
  state.source = null;
}

function startStream() {
  stopStream();
  setStream(state.snapshot ? "reconnecting" : "idle");
  const es = new EventSource("/api/ops/stream");
  state.source = es;
  es.addEventListener("open", () => setStream("live"));
  es.addEventListener("snapshot", (ev) => {
    setStream("live");
    try {
      render(JSON.parse(ev.data));
    } catch (err) {
      console.error("ops: bad snapshot", err);
    }
  });
  es.addEventListener("error", () => {
    setStream("reconnecting");
    if (es.readyState === EventSource.CLOSED) {
      // Refused (logged out, no longer allowed) or the server went away: ask again.
      state.retryTimer = setTimeout(boot, 3000);
    }
  });
}

// --- rendering ----------------------------------------------------------------------------

function setStat(testid, value, sub = "", level = "") {
  const el = document.querySelector(`[data-testid="${testid}"]`);
  el.querySelector(".stat-value").textContent = value;
  el.querySelector(".stat-sub").textContent = sub;
  el.dataset.level = level;
}

function warningText(w) {
  const vars = { ...w };
  if (w.track) vars.track = t(`track.${w.track}`);
  if (w.loss !== undefined) vars.loss = pct(w.loss);
  if (w.participant) vars.participant = t(`role.${w.participant.split("-")[0]}`);
  return t(`warn.${w.code}`, vars);
}

function fillWarnings(list, warnings) {
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

function render(snap) {
  state.snapshot = snap;
  const tot = snap.totals;
  setStat(
    "total-rooms",
    num(tot.rooms_active),
    tot.rooms_waiting ? t("totals.waiting", { n: tot.rooms_waiting }) : "",
  );
  setStat("total-participants", num(tot.participants));
  setStat("total-in", rate(tot.in_kbps));
  setStat("total-out", rate(tot.out_kbps));
  setStat(
    "total-cpu",
    `${num(tot.cpu_percent, 0)} %`,
    tot.event_loop_lag_ms !== undefined ? t("totals.lag", { ms: num(tot.event_loop_lag_ms, 0) }) : "",
    tot.cpu_percent > 80 ? "warn" : "",
  );
  setStat("total-memory", mb(tot.memory_bytes));

  const today = snap.today;
  setStat("today-sessions", num(today.sessions), t("today.connected", { n: today.connected }));
  setStat(
    "today-median-connect",
    today.median_connect_s === null ? t("room.none") : duration(today.median_connect_s),
  );
  const dropped = Object.entries(today.dropped_at)
    .filter(([, n]) => n > 0)
    .map(([step, n]) => `${t(`drop.${step}`)}: ${n}`)
    .join(" · ");
  setStat(
    "today-never-connected",
    today.never_connected_share === null ? t("room.none") : pct(today.never_connected_share),
    [t("today.ofFinished", { n: today.never_connected, total: today.finished }), dropped]
      .filter(Boolean)
      .join(" — "),
    today.never_connected_share > 0.3 ? "warn" : "",
  );
  const wh = snap.webhooks;
  if (!wh.enabled) setStat("webhooks-status", t("webhooks.off"));
  else {
    const failing = wh.queued > 0 && wh.last_error;
    setStat(
      "webhooks-status",
      failing ? t("webhooks.failing") : t("webhooks.ok"),
      t("webhooks.detail", {
        delivered: wh.delivered,
        queued: wh.queued,
        failed: wh.failed_attempts,
      }),
      failing || wh.given_up || wh.dropped ? "warn" : "",
    );
  }
  setStat("recording-status", t(`recording.${snap.recording.state}`));
  fillWarnings($("ops-warnings"), snap.warnings);

  const seen = new Set();
  const list = $("room-list");
  snap.rooms.forEach((room, index) => {
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
  $("room-count").textContent = String(snap.rooms.length);
  $("room-empty").hidden = snap.rooms.length > 0;
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
    const { status, data } = await api(`/api/ops/rooms/${encodeURIComponent(roomId)}/end`, {
      method: "POST",
      body: { reason: why },
    }).catch((e) => ({ status: 0, data: { error: { message: String(e) } } }));
    q(card, "room-end-confirm").disabled = false;
    if (status === 200) {
      card.dataset.ending = "true";
      form.hidden = true;
      return;
    }
    err.textContent = t("room.endFailed", {
      msg: (data && data.error && data.error.message) || `HTTP ${status}`,
    });
    err.hidden = false;
  });
  q(card, "room-watch").addEventListener("click", () => startWatch(roomId));
  return card;
}

function fillCard(card, room) {
  card.dataset.state = room.state;
  card.dataset.warnings = String(room.warnings.length);
  q(card, "room-id").textContent = room.id;
  const st = q(card, "room-state");
  st.textContent = t(`state.${room.state}`);
  st.dataset.state = room.state;
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
      const row = document.createElement("div");
      row.className = "part";
      row.dataset.testid = "room-participant";
      row.dataset.role = p.role;
      row.dataset.connection = p.connection;
      const who = document.createElement("span");
      who.className = "part-who";
      const dot = document.createElement("span");
      dot.className = "ws-dot";
      dot.dataset.on = String(p.signalling);
      dot.title = t(p.signalling ? "part.ws" : "part.noWs");
      who.append(dot, t(`role.${p.role}`));
      const conn = document.createElement("span");
      conn.className = "part-conn";
      conn.dataset.state = p.connection;
      conn.textContent = t(`conn.${p.connection}`);
      const flows = document.createElement("span");
      flows.className = "part-flows";
      if (p.in) flows.append(flow("in", p.in));
      if (p.out) flows.append(flow("out", p.out));
      const rtt = document.createElement("span");
      rtt.className = "part-rtt";
      rtt.dataset.testid = "participant-rtt";
      rtt.textContent =
        p.rtt_ms === null ? "" : `${t("part.rtt")} ${num(p.rtt_ms, 0)} ${t("unit.ms")}`;
      row.append(who, conn, rtt, flows);
      return row;
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

// --- silent watch (supervisor) ------------------------------------------------------------

function setWatchState(s) {
  if (!state.watch) return;
  state.watch.state = s;
  const el = $("watch-state");
  el.dataset.state = s;
  el.textContent = t(`watch.${s}`);
}

function stopWatch() {
  const w = state.watch;
  if (!w) return;
  clearInterval(w.ping);
  if (w.pc) w.pc.close();
  if (w.ws && w.ws.readyState <= 1) w.ws.close(1000);
  $("watch-video").srcObject = null;
  $("watch-panel").hidden = true;
  document.body.classList.remove("watching");
  state.watch = null;
}

function startWatch(roomId) {
  stopWatch();
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${location.host}/ws/watch/${encodeURIComponent(roomId)}`, [
    "callassist.v1",
  ]);
  const w = { roomId, ws, pc: null, state: "idle", pending: [], offered: false };
  state.watch = w;
  $("watch-room").textContent = roomId;
  $("watch-panel").hidden = false;
  document.body.classList.add("watching");
  setWatchState("idle");
  const send = (m) => ws.readyState === 1 && ws.send(JSON.stringify(m));
  w.ping = setInterval(() => send({ type: "ping" }), 10000);
  ws.addEventListener("message", async (ev) => {
    if (state.watch !== w) return;
    const msg = JSON.parse(ev.data);
    if (msg.type === "welcome") {
      const pc = new RTCPeerConnection({ iceServers: msg.iceServers || [] });
      w.pc = pc;
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addEventListener("track", (e) => {
        $("watch-video").srcObject = new MediaStream([e.track]);
      });
      pc.addEventListener("icecandidate", (e) => {
        const m = { type: "candidate", pc: 1, candidate: e.candidate ? e.candidate.toJSON() : null };
        if (w.offered) send(m);
        else w.pending.push(m);
      });
      pc.addEventListener("connectionstatechange", () => {
        const s = pc.connectionState;
        if (["connecting", "connected", "failed", "closed"].includes(s)) setWatchState(s);
      });
      setWatchState("connecting");
      await pc.setLocalDescription(await pc.createOffer());
      send({ type: "offer", pc: 1, sdp: pc.localDescription.sdp });
      w.offered = true;
      w.pending.splice(0).forEach(send);
    } else if (msg.type === "answer" && w.pc) {
      await w.pc.setRemoteDescription({ type: "answer", sdp: msg.sdp });
    } else if (msg.type === "ended") {
      setWatchState("ended");
    }
  });
  ws.addEventListener("close", () => {
    if (state.watch === w && w.state !== "ended") setWatchState("closed");
  });
}

// --- wiring -------------------------------------------------------------------------------

$("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const err = $("login-error");
  err.hidden = true;
  const { status } = await api("/api/login", {
    method: "POST",
    body: { username: $("login-username").value, password: $("login-password").value },
  }).catch(() => ({ status: 0 }));
  if (status === 200) {
    $("login-password").value = "";
    await boot();
    return;
  }
  err.textContent = t(status === 401 ? "login.failed" : "login.error");
  err.hidden = false;
});

$("ops-logout").addEventListener("click", async () => {
  stopWatch();
  stopStream();
  await api("/api/logout", { method: "POST" }).catch(() => null);
  state.me = null;
  state.snapshot = null;
  showView("login");
});

$("watch-stop").addEventListener("click", stopWatch);
i18n.onLangChange(relabel);
i18n.init();
relabel();
boot();
