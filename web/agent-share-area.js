// The share area (issue #16, item 1): a phone-shaped panel of the console (390x844 CSS px,
// scaled down to fit the window) where the agent opens a tutorial step or a picture from
// this computer, or types a few lines, and shares that panel alone. The capture is this
// very tab (getDisplayMedia with preferCurrentTab), narrowed to the panel by Element
// Capture (RestrictionTarget + track.restrictTo: only the panel's own pixels, even with a
// dialog drawn over it) or else Region Capture (CropTarget + track.cropTo: the panel's
// rectangle). The caller's phone then receives frames of its own shape and the text stays
// readable, where a whole 1280x800 tab shrinks to 360x225. A browser with neither API never
// sees the option. The picture from this computer stays here (a blob: URL): nothing is
// uploaded, the caller sees only the shared frames.

import { t, lang, onLangChange } from "./i18n.js";
import { api, showError } from "./lib/api.js";

const el = (id) => document.getElementById(id);
const area = { tutorials: [], tut: null, step: 0, picture: null };

export function supported() {
  const md = navigator.mediaDevices;
  if (!md || !md.getDisplayMedia) return false;
  return typeof window.RestrictionTarget?.fromElement === "function" || typeof window.CropTarget?.fromElement === "function";
}

// Narrow a capture of this tab to the panel. `window.callassistShareAreaMethod = "crop"`
// (tests) skips Element Capture, so both paths can be checked in one browser.
export async function narrow(track) {
  const target = el("share-area-content");
  const box = el("share-area");
  const prefer = window.callassistShareAreaMethod || "element";
  if (prefer === "element" && window.RestrictionTarget && track.restrictTo) {
    try {
      await track.restrictTo(await window.RestrictionTarget.fromElement(target));
      box.dataset.cropped = "yes";
      box.dataset.method = "element";
      return;
    } catch (err) {
      console.warn("element capture failed, trying region capture", err);
    }
  }
  if (!window.CropTarget || !track.cropTo) throw new Error("Region Capture is not available");
  await track.cropTo(await window.CropTarget.fromElement(target));
  box.dataset.cropped = "yes";
  box.dataset.method = "region";
}

export function unshared() {
  el("share-area").dataset.cropped = "no";
  el("share-area").dataset.method = "";
}

function open() {
  el("share-area").hidden = false;
  if (!area.tutorials.length) loadTutorials();
  el("share-area-notes").focus();
}

// Closing the panel ends its share: the caller must never get frames of a panel the agent
// no longer looks at.
function close(stopShare) {
  if (el("share-area").dataset.cropped === "yes") stopShare();
  el("share-area").hidden = true;
  el("share-area-open").focus();
}

async function loadTutorials() {
  try {
    area.tutorials = (await api("GET", "/api/tutorials")).tutorials;
  } catch (err) {
    showError(el("share-area-error"), err);
  }
  renderTutorials();
}

function renderTutorials() {
  const sel = el("share-area-tutorial");
  const keep = sel.value;
  const none = new Option(t("a.area.none"), "");
  sel.replaceChildren(none, ...area.tutorials.map((x) => new Option(x.title[lang()] || x.id, x.id)));
  sel.value = keep;
}

async function pickTutorial() {
  const id = el("share-area-tutorial").value;
  area.tut = null;
  area.step = 0;
  if (id) {
    try {
      area.tut = await api("GET", `/api/tutorials/${encodeURIComponent(id)}`);
      showError(el("share-area-error"), null);
    } catch (err) {
      showError(el("share-area-error"), err);
    }
  }
  render();
}

function pickPicture() {
  const file = el("share-area-file").files[0];
  if (area.picture) URL.revokeObjectURL(area.picture);
  area.picture = file ? URL.createObjectURL(file) : null;
  el("share-area-file").value = "";
  el("share-area-tutorial").value = "";
  area.tut = null;
  render();
}

function render() {
  const s = area.tut ? area.tut.steps[area.step] : null;
  const img = el("share-area-image");
  const src = s ? s.image : area.picture;
  img.hidden = !src;
  if (src && img.getAttribute("src") !== src) img.src = src;
  if (!src) img.removeAttribute("src");
  el("share-area-heading").textContent = area.tut ? area.tut.title[lang()] || "" : "";
  el("share-area-heading").hidden = !area.tut;
  el("share-area-text").textContent = s ? s.text[lang()] || "" : "";
  el("share-area-text").hidden = !s;
  el("share-area-steps").hidden = !area.tut;
  if (area.tut) {
    el("share-area-step").textContent = t("a.area.step", { n: area.step + 1, total: area.tut.steps.length });
    el("share-area-prev").disabled = area.step === 0;
    el("share-area-next").disabled = area.step === area.tut.steps.length - 1;
  }
}

function step(d) {
  if (!area.tut) return;
  area.step = Math.min(area.tut.steps.length - 1, Math.max(0, area.step + d));
  render();
}

export function init({ shareScreen, stopShare }) {
  el("share-area-open").hidden = !supported();
  el("share-area-open").addEventListener("click", open);
  el("share-area-close").addEventListener("click", () => close(stopShare));
  el("share-area-share").addEventListener("click", () => shareScreen({ narrow }));
  el("share-area-tutorial").addEventListener("change", pickTutorial);
  el("share-area-file").addEventListener("change", pickPicture);
  el("share-area-prev").addEventListener("click", () => step(-1));
  el("share-area-next").addEventListener("click", () => step(1));
  onLangChange(() => {
    renderTutorials();
    render();
  });
}
