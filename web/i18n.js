// The one lookup and language switch of every page: Latvian (default), English, Russian.
// The strings live in web/strings/ (common.js here; each page extend()s with its own).
// Elements carry data-i18n="key" (text), data-i18n-ph (placeholder), data-i18n-label
// (aria-label) and are filled by apply(). Values are always set as text, never HTML.

import COMMON from "./strings/common.js";

const STRINGS = { lv: { ...COMMON.lv }, en: { ...COMMON.en }, ru: { ...COMMON.ru } };

export const LANGS = ["lv", "en", "ru"];
const STORAGE_KEY = "callassist.lang";
const listeners = [];

function stored() {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage blocked (private mode, policies)
  }
}

// Saved choice first, then the browser's preferred languages, then Latvian.
function detect() {
  const saved = stored();
  if (LANGS.includes(saved)) return saved;
  for (const tag of navigator.languages || [navigator.language || ""]) {
    const base = String(tag).toLowerCase().split("-")[0];
    if (LANGS.includes(base)) return base;
  }
  return "lv";
}

let current = detect();

export function lang() {
  return current;
}

export function t(key, vars) {
  let s = STRINGS[current][key] ?? STRINGS.en[key] ?? key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
  return s;
}

export function apply(root = document) {
  document.documentElement.lang = current;
  if (document.body.dataset.titleKey) document.title = t(document.body.dataset.titleKey);
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-ph]")) el.placeholder = t(el.dataset.i18nPh);
  for (const el of root.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
  for (const el of root.querySelectorAll("[data-lang]")) {
    el.setAttribute("aria-pressed", String(el.dataset.lang === current));
  }
}

export function setLang(next) {
  if (!LANGS.includes(next) || next === current) return;
  current = next;
  try {
    localStorage.setItem(STORAGE_KEY, next);
  } catch {
    /* not remembered; still switches */
  }
  apply();
  for (const fn of listeners) fn(next);
}

export function onLangChange(fn) {
  listeners.push(fn);
}

// Feature modules bring their own strings ({lv: {...}, en: {...}, ru: {...}}, same keys).
export function extend(more) {
  for (const l of LANGS) Object.assign(STRINGS[l], more[l]);
  if (document.body) apply();
}

// Language buttons are <button data-lang="lv"> etc.; wire them and fill all texts.
export function init() {
  for (const el of document.querySelectorAll("[data-lang]")) {
    el.addEventListener("click", () => setLang(el.dataset.lang));
    el.setAttribute("title", STRINGS[el.dataset.lang]["lang.name"]);
  }
  apply();
}
