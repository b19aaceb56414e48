// The caller's privacy receipt, shown in the end view when the session is over: what this
// session kept (snapshots, photos, a recording and its length), until when, and whom to ask
// for a copy or for deletion. Loaded by caller.js with import() when the session ends, so
// it is not part of the page before media. Data: GET /api/caller/receipt (docs/protocol.md).

import { extend, lang, onLangChange, t } from "./i18n.js";
import STRINGS from "./strings/receipt.js";
import { api } from "./lib/api.js";

extend(STRINGS);

let data = null;
let box = null;

function date(iso) {
  const d = new Date(iso);
  if (isNaN(d)) return "";
  // Latvian needs the month in the dative after "līdz": the numeric form has no case.
  const style = lang() === "lv" ? { day: "2-digit", month: "2-digit", year: "numeric" } : { day: "numeric", month: "long", year: "numeric" };
  return new Intl.DateTimeFormat(lang(), style).format(d);
}

function duration(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  return s < 60 ? t("rc.sec", { s }) : t("rc.min", { m: Math.floor(s / 60), s: s % 60 });
}

function node(tag, testid, text, className) {
  const n = document.createElement(tag);
  if (testid) n.dataset.testid = testid;
  if (className) n.className = className;
  if (text !== undefined) n.textContent = text;
  return n;
}

// The contact is text from the configuration: an e-mail address becomes a mailto: link,
// anything else stays plain text (never HTML).
function contactNode(contact) {
  if (/^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/.test(contact)) {
    const a = node("a", "receipt-contact", contact);
    a.href = "mailto:" + contact;
    return a;
  }
  return node("strong", "receipt-contact", contact);
}

// "… write to {contact} …" with the contact as an element of its own.
function rightsLine(r) {
  const p = node("p", "receipt-rights", undefined, "receipt-rights");
  const text = t("rc.rights", { code: "\u0000code\u0000" });
  const [before, after] = text.split("{contact}");
  const parts = [before, contactNode(r.contact), after || ""];
  for (const part of parts) {
    if (typeof part !== "string") {
      p.append(part);
      continue;
    }
    const [a, b] = part.split("\u0000code\u0000");
    p.append(a);
    if (b !== undefined) p.append(node("code", "receipt-session", r.session_id), b);
  }
  return p;
}

function render() {
  if (!box || !data) return;
  const r = data;
  const h = node("h2", null, t("rc.title"));
  h.id = "receipt-title";
  const kept = node("p", null, t("rc.kept"), "receipt-lead");
  const list = node("ul", "receipt-captured", undefined, "receipt-list");
  list.append(node("li", "receipt-record", t("rc.record", { phone: r.phone_masked })));
  const snaps = node("li", "receipt-snapshots", t("rc.snapshots", { n: r.snapshots }));
  snaps.dataset.count = String(r.snapshots);
  const ups = node("li", "receipt-uploads", t("rc.uploads", { n: r.uploads }));
  ups.dataset.count = String(r.uploads);
  const rec = node("li", "receipt-recording",
    r.recording.recorded ? t("rc.recording.yes", { duration: duration(r.recording.seconds) }) : t("rc.recording.no"));
  rec.dataset.recorded = r.recording.recorded ? "yes" : "no";
  rec.dataset.seconds = String(r.recording.seconds);
  list.append(snaps, ups, rec);
  if (r.faces_blurred) {  // faces blurred before the stills were stored (privacy.redact_faces)
    const faces = node("li", "receipt-faces", t("rc.faces", { n: r.faces_blurred }));
    faces.dataset.count = String(r.faces_blurred);
    list.append(faces);
  }
  // Watched silently by a supervisor, for quality: yes/no (the notice says one may).
  const watched = node("li", "receipt-watched", t(r.watched_by_supervisor ? "rc.watched.yes" : "rc.watched.no"));
  watched.dataset.watched = r.watched_by_supervisor ? "yes" : "no";
  list.append(watched);
  const parts = [h, kept, list];
  if (!r.recording.recorded && !r.snapshots && !r.uploads) parts.push(node("p", "receipt-nothing", t("rc.nothing"), "muted"));
  const until = node("div", "receipt-kept-until", undefined, "receipt-until");
  const dates = node("ul", null, undefined, "receipt-list");
  dates.append(node("li", null, t("rc.until.record", { date: date(r.kept_until.record) })));
  if (r.kept_until.recordings) dates.append(node("li", null, t("rc.until.recordings", { date: date(r.kept_until.recordings) })));
  if (r.kept_until.photos) dates.append(node("li", null, t("rc.until.photos", { date: date(r.kept_until.photos) })));
  until.append(node("p", null, t("rc.until"), "receipt-lead"), dates, node("p", null, t("rc.until.after"), "muted small"));
  parts.push(until, rightsLine(r));
  box.replaceChildren(...parts);
}

// Called once when the session ends. Shows nothing if the receipt cannot be read.
export async function show() {
  if (box) return;
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = "/static/receipt.css";
  document.head.append(link);
  box = node("section", "privacy-receipt", undefined, "receipt");
  box.hidden = true;
  box.setAttribute("aria-labelledby", "receipt-title");
  document.getElementById("view-end").append(box);
  try {
    data = (await api("GET", "/api/caller/receipt")).receipt;
  } catch (err) {
    console.warn("privacy receipt not available", err);
    box.remove();
    return;
  }
  render();
  box.hidden = false;
  onLangChange(render);
  window.callassistReceipt = data; // for tests
}
