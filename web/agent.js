// Agent console: login, create a session and its one-time link, follow the caller,
// watch the caller's camera, share a screen back, end the session. The session card is
// agent-card.js; the socket, the peer connection and screen sharing are agent-media.js;
// the page's state is agent-state.js.

import * as i18n from "./i18n.js";
import STRINGS from "./strings/agent.js";
import { forgetPcNumber } from "./rtc.js";
import { api, showError, setCsrf, onUnauthorized } from "./lib/api.js";
import { h } from "./lib/dom.js";
import { st, STATUS_RANK } from "./agent-state.js";
import * as card from "./agent-card.js";
import { fmtTime } from "./agent-card.js";
import { initMedia, connect, disconnect, shareScreen, stopShare, toggleFullscreen } from "./agent-media.js";
import * as toolkit from "./toolkit-agent.js"; // pointer, drawing, freeze, chat, pushes, …
import * as recording from "./recording-agent.js"; // record, snapshots, photos
import * as smsPreview from "./sms-preview.js"; // SMS language and segment count
import * as shareArea from "./agent-share-area.js"; // a phone-sized part of the console

i18n.extend(STRINGS);
const t = i18n.t;

const el = (id) => document.getElementById(id);

// ---------------------------------------------------------------- login

function showView(name) {
  document.body.dataset.view = name;
  el("view-login").hidden = name !== "login";
  el("view-console").hidden = name !== "console";
  const loggedIn = name === "console";
  el("user-name").hidden = !loggedIn;
  el("logout").hidden = !loggedIn;
}

function showLogin(err) {
  closeSession();
  st.me = null;
  st.csrf = null;
  setCsrf(null);
  showView("login");
  showError(el("login-error"), err || null);
  if (!el("login-local").hidden) el("login-username").focus();
}

// Which ways in the server offers: password form, single sign-on, or both.
async function loginOptions() {
  const opts = await api("GET", "/api/login/options").catch(() => ({ local: true, sso: false }));
  el("login-sso").hidden = !opts.sso;
  el("login-local").hidden = !opts.local;
  el("login-or").hidden = !(opts.sso && opts.local);
}

async function onLogin(ev) {
  ev.preventDefault();
  const username = el("login-username").value.trim();
  const password = el("login-password").value;
  el("login-submit").disabled = true;
  try {
    const data = await api("POST", "/api/login", { username, password });
    el("login-password").value = "";
    loggedIn(data);
  } catch (err) {
    showError(el("login-error"), err);
  } finally {
    el("login-submit").disabled = false;
  }
}

function loggedIn(data) {
  st.me = data.user || {};
  st.csrf = data.csrf || null;
  setCsrf(st.csrf);
  // The server may tell which country code it adds to local numbers.
  st.defaultCountryCode = data.default_country_code || (data.defaults && data.defaults.country_code) || st.defaultCountryCode;
  el("user-name").textContent = st.me.name || "";
  showError(el("login-error"), null);
  showView("console");
  card.renderHint();
  loadRecent();
  const restore = new URLSearchParams(location.hash.slice(1)).get("session");
  if (restore) openSessionById(restore);
  else showNewForm();
}

async function logout() {
  let answer = null;
  try {
    answer = await api("POST", "/api/logout");
  } catch {
    /* the session is gone either way */
  }
  history.replaceState(null, "", location.pathname);
  // A single sign-on account goes on to the provider's logout, which comes back here.
  if (answer && answer.redirect) return location.assign(answer.redirect);
  showLogin();
}

// ---------------------------------------------------------------- sessions

function showNewForm() {
  closeSession();
  history.replaceState(null, "", location.pathname);
  el("new-session-form").hidden = false;
  el("session-card").hidden = true;
  el("video-col").hidden = true;
  document.querySelector(".console-grid").classList.remove("has-session");
  showError(el("new-session-error"), null);
  el("new-session-phone").focus();
}

async function onCreate(ev) {
  ev.preventDefault();
  const phone = el("new-session-phone").value.trim();
  const reference = el("new-session-reference").value.trim();
  el("new-session-submit").disabled = true;
  showError(el("new-session-error"), null);
  try {
    const data = await api("POST", "/api/sessions", { phone, reference });
    el("new-session-phone").value = "";
    el("new-session-reference").value = "";
    openSession(data.session, { link: data.link, qr_svg: data.qr_svg, expires_at: data.expires_at, sms: data.sms });
    loadRecent();
  } catch (err) {
    showError(el("new-session-error"), err);
  } finally {
    el("new-session-submit").disabled = false;
  }
}

async function openSessionById(id) {
  try {
    const data = await api("GET", "/api/sessions/" + encodeURIComponent(id));
    openSession(data.session, null);
  } catch (err) {
    showNewForm();
    if (err.status !== 401) showError(el("new-session-error"), err);
  }
}

function openSession(session, link) {
  closeSession();
  st.session = session;
  st.link = link;
  st.linkAfterOpen = false;
  st.noFrames = null;
  st.screenCodec = null;
  st.room = null;
  st.ended = session.state === "ended";
  st.endReason = session.end_reason || null;
  st.maxRank = STATUS_RANK[session.caller_status] ?? 0;
  history.replaceState(null, "", "#session=" + encodeURIComponent(session.id));
  el("new-session-form").hidden = true;
  el("session-card").hidden = false;
  el("video-col").hidden = false;
  document.querySelector(".console-grid").classList.add("has-session");
  el("session-phone").textContent = session.phone_masked || session.phone || "";
  el("session-reference").textContent = session.reference || "—";
  card.resetSms();
  el("send-sms").disabled = false;
  el("end-session-confirm").disabled = false;
  el("copy-status").textContent = "";
  el("new-link-status").textContent = "";
  el("end-confirm-box").hidden = true;
  showError(el("session-error"), null);
  showError(el("share-error"), null);
  card.renderLink();
  smsPreview.show(link && link.sms, { newSession: true });
  card.renderSession();
  recording.open(session.id);
  if (!st.ended) connect(session.id);
  loadRecent();
}

// Leave the open session (without ending it): sockets, media, sharing.
function closeSession() {
  recording.detach();
  disconnect();
  st.session = null;
}

async function endSession() {
  const s = st.session;
  if (!s) return;
  el("end-session-confirm").disabled = true;
  try {
    const data = await api("POST", `/api/sessions/${encodeURIComponent(s.id)}/end`);
    el("end-confirm-box").hidden = true;
    const ended = (data && data.session) || {};
    onEnded(ended.end_reason || "agent_ended");
  } catch (err) {
    showError(el("session-error"), err);
  } finally {
    el("end-session-confirm").disabled = false;
  }
}

function onEnded(reason) {
  if (st.ended && st.endReason) return;
  st.ended = true;
  st.endReason = st.endReason || reason || null;
  const id = st.session && st.session.id;
  disconnect();
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  if (id) forgetPcNumber(id, "agent");
  card.renderSession();
  loadRecent();
}

async function loadRecent() {
  let list = [];
  try {
    const data = await api("GET", "/api/sessions");
    list = (data && data.sessions) || [];
  } catch {
    return;
  }
  const ul = el("recent-sessions");
  const items = list.slice(0, 10).map((s) => {
    const li = h("li", { "data-testid": "recent-session", "data-session-id": s.id, "data-state": s.state },
      h("div", { class: "info" },
        h("strong", {}, [s.phone_masked || s.phone, s.reference].filter(Boolean).join(" · ")),
        h("span", {}, fmtTime(s.created_at) + " · " + t("a.state." + s.state))));
    if (s.state !== "ended" && (!st.session || st.session.id !== s.id)) {
      const open = h("button", { type: "button", class: "btn btn-small", "data-testid": "recent-open" }, t("a.recent.open"));
      open.addEventListener("click", () => openSessionById(s.id));
      li.append(open);
    }
    return li;
  });
  ul.replaceChildren(...items);
  el("recent-empty").hidden = items.length > 0;
}

// ---------------------------------------------------------------- wiring

function wire() {
  el("login-form").addEventListener("submit", onLogin);
  el("logout").addEventListener("click", logout);
  el("new-session-form").addEventListener("submit", onCreate);
  el("copy-link").addEventListener("click", card.copyLink);
  el("send-sms").addEventListener("click", card.sendSms);
  el("new-link").addEventListener("click", card.newLink);
  el("end-session").addEventListener("click", () => {
    el("end-confirm-box").hidden = false;
    el("end-session-confirm").focus();
  });
  el("end-session-cancel").addEventListener("click", () => (el("end-confirm-box").hidden = true));
  el("end-session-confirm").addEventListener("click", endSession);
  el("new-session").addEventListener("click", showNewForm);
  el("share-screen").addEventListener("click", () => shareScreen());
  shareArea.init({ shareScreen, stopShare });
  el("stop-share").addEventListener("click", () => stopShare());
  el("fullscreen-camera").addEventListener("click", toggleFullscreen);
  document.addEventListener("fullscreenchange", card.renderVideo);
  i18n.onLangChange(() => {
    card.renderHint();
    card.renderSession();
    if (st.link) card.renderLink();
    if (st.me) loadRecent();
  });
}

async function boot() {
  i18n.init();
  wire();
  onUnauthorized(() => showLogin());
  initMedia({ onEnded, showLogin, loadRecent });
  toolkit.init(st);
  recording.init(st, api, showError);
  smsPreview.init();
  await loginOptions();
  try {
    loggedIn(await api("GET", "/api/me"));
  } catch (err) {
    showLogin(err.status === 401 ? null : err);
  }
}

boot();
