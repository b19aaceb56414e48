// Agent console: "read" on a photo (a snapshot, a saved frozen frame or an upload) asks the
// server for its codes and text (POST /api/sessions/{id}/inspect, docs/protocol.md,
// "Reading a still") and draws each finding's box on the still; clicking a box or its row
// copies the value, "To reference" adds it to the session's reference (the only way
// something read is stored). Nothing else read is kept once the view closes.

import { extend, t } from "./i18n.js";
import STRINGS from "./strings/inspect-agent.js";

extend(STRINGS);

let view = null; // the open viewer element
let current = null; // {sessionId, ctx, errorBox} of the open view

function node(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

// What a click copies: the recognised value (a MAC normalised, an IMEI's digits), else the line.
function valueOf(f) {
  return f.labels && f.labels.length ? f.labels[0].value : f.text;
}

async function copy(text, row) {
  try {
    await navigator.clipboard.writeText(text);
  } catch (err) {
    // No clipboard permission (plain http, an old browser): select the text for Ctrl+C.
    const range = document.createRange();
    range.selectNodeContents(row.querySelector(".inspect-value"));
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
  }
  row.dataset.copied = "yes";
  const note = view && view.querySelector("[data-testid=inspect-copied]");
  if (note) {
    note.hidden = false;
    note.textContent = t("ai.copied", { value: text });
  }
}

async function toReference(text, row) {
  const { sessionId, ctx, errorBox } = current;
  ctx.showError(errorBox, null);
  try {
    const data = await ctx.api("POST", `/api/sessions/${encodeURIComponent(sessionId)}/inspect/reference`, { value: text });
    row.dataset.referenced = "yes";
    const shown = document.getElementById("session-reference");
    if (shown && data && typeof data.reference === "string") shown.textContent = data.reference;
  } catch (err) {
    ctx.showError(errorBox, err);
  }
}

function close() {
  if (view) view.remove();
  view = null;
}

function show(card, photo, result) {
  close();
  view = node("div", "inspect-view");
  view.dataset.testid = "inspect-view";
  view.dataset.photoId = photo.id;
  const head = node("div", "inspect-head");
  head.append(node("strong", null, t("ai.title", { n: result.findings.length })));
  const shut = node("button", "btn btn-small", t("ai.close"));
  shut.type = "button";
  shut.dataset.testid = "inspect-close";
  shut.addEventListener("click", close);
  head.append(shut);
  const stage = node("div", "inspect-stage");
  const img = node("img");
  img.src = photo.url;
  img.alt = t("ai.still");
  stage.append(img);
  const list = node("ol", "inspect-findings");
  list.dataset.testid = "inspect-findings";
  result.findings.forEach((f, i) => {
    const [x, y, w, h] = f.box;
    // Boxes in percent of the still: right at any displayed size.
    const box = node("button", "inspect-box");
    box.type = "button";
    box.dataset.testid = "inspect-box";
    box.dataset.index = String(i);
    box.dataset.label = f.labels && f.labels.length ? f.labels[0].label : "";
    box.style.left = (100 * x) / result.width + "%";
    box.style.top = (100 * y) / result.height + "%";
    box.style.width = (100 * w) / result.width + "%";
    box.style.height = (100 * h) / result.height + "%";
    box.title = f.text;
    const row = node("li", "inspect-finding");
    row.dataset.testid = "inspect-finding";
    row.dataset.source = f.source;
    row.dataset.label = box.dataset.label;
    const label = node("span", "inspect-label", box.dataset.label ? t("ai.label." + box.dataset.label) : t("ai.source." + f.source));
    const value = node("code", "inspect-value", valueOf(f));
    const btn = node("button", "btn btn-small", t("ai.copy"));
    btn.type = "button";
    btn.dataset.testid = "inspect-copy";
    const keep = node("button", "btn btn-small", t("ai.reference"));
    keep.type = "button";
    keep.dataset.testid = "inspect-reference";
    keep.addEventListener("click", () => toReference(valueOf(f), row));
    const actions = node("span", "inspect-actions");
    actions.append(btn, keep);
    row.append(label, value, actions);
    const pick = () => copy(valueOf(f), row);
    btn.addEventListener("click", pick);
    box.addEventListener("click", pick);
    stage.append(box);
    list.append(row);
  });
  if (!result.findings.length) list.append(node("li", "muted", t("ai.nothing")));
  // The OCR was missing or too slow: the codes above are all there is, and the agent is
  // told so rather than left to think the still has no text.
  const notes = [];
  if ((result.notes || []).includes("text_unavailable")) {
    const note = node("p", "muted", t("ai.text_unavailable"));
    note.dataset.testid = "inspect-note";
    notes.push(note);
  }
  const copied = node("p", "muted", "");
  copied.dataset.testid = "inspect-copied";
  copied.hidden = true;
  view.append(head, stage, list, ...notes, copied);
  card.append(view);
}

// A "read" button for one photo of the list (web/recording-agent.js renders the list).
export function readButton(sessionId, photo, ctx, errorBox) {
  const btn = node("button", "btn btn-small inspect-read", t("ai.read"));
  btn.type = "button";
  btn.dataset.testid = "inspect-read";
  btn.addEventListener("click", async () => {
    btn.disabled = true;
    btn.textContent = t("ai.reading");
    ctx.showError(errorBox, null);
    try {
      const result = await ctx.api("POST", `/api/sessions/${encodeURIComponent(sessionId)}/inspect`, { photo: photo.id });
      current = { sessionId, ctx, errorBox };
      show(document.getElementById("photos-card"), photo, result);
    } catch (err) {
      ctx.showError(errorBox, err);
    } finally {
      btn.disabled = false;
      btn.textContent = t("ai.read");
    }
  });
  return btn;
}

export function reset() {
  close();
}
