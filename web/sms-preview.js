// The SMS language and its segment count next to "Send SMS". The server sends, with each
// link, per language how the SMS would be encoded (GSM-7 or UCS-2) and how many segments it
// takes; the agent picks the caller's language (Latvian by default, per session) and sees
// the count before sending. The module owns its elements: #sms-lang and #sms-segments.

import { extend, t, onLangChange } from "./i18n.js";

extend({
  lv: {
    "sms.lang": "SMS valoda",
    "sms.lang.lv": "latviski",
    "sms.lang.en": "angliski",
    "sms.lang.ru": "krieviski",
    "sms.segments": "{segments} SMS ({encoding}, {characters}/{room} rakstzīmes)",
  },
  en: {
    "sms.lang": "SMS language",
    "sms.lang.lv": "Latvian",
    "sms.lang.en": "English",
    "sms.lang.ru": "Russian",
    "sms.segments": "{segments} SMS ({encoding}, {characters}/{room} characters)",
  },
  ru: {
    "sms.lang": "Язык SMS",
    "sms.lang.lv": "латышский",
    "sms.lang.en": "английский",
    "sms.lang.ru": "русский",
    "sms.segments": "{segments} SMS ({encoding}, {characters}/{room} символов)",
  },
});

const el = (id) => document.getElementById(id);
let previews = null;

function render() {
  const out = el("sms-segments");
  if (!out) return;
  const p = previews && previews[el("sms-lang").value];
  out.hidden = !p;
  if (!p) return;
  out.dataset.segments = String(p.segments);
  out.dataset.encoding = p.encoding;
  // Room of all segments: one segment's worth, or 153/67 per part when it is split.
  const room = p.segments === 1 ? p.per_segment : p.segments * (p.encoding === "GSM-7" ? 153 : 67);
  out.textContent = t("sms.segments", { segments: p.segments, encoding: p.encoding, characters: p.characters, room });
}

// A new session: Latvian again. A new link of the same session keeps the agent's choice.
export function show(smsPreviews, { newSession = false } = {}) {
  previews = smsPreviews || null;
  if (newSession) el("sms-lang").value = "lv";
  render();
}

export function lang() {
  return el("sms-lang").value || "lv";
}

export function init() {
  el("sms-lang").addEventListener("change", render);
  onLangChange(render);
}
