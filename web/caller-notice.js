// Caller page: the service notice, fetched in the page's language
// (GET /api/caller/notice?lang=…) and built with textContent only: it comes from the
// server, never as HTML. The operator's name (`st.notice.operator`) is the header's
// subtitle (caller-view.js).

import * as i18n from "./i18n.js";
import { api } from "./lib/api.js";

const el = (id) => document.getElementById(id);

export async function loadNotice(st, render) {
  st.noticeFailed = false;
  render();
  const lang = i18n.lang();
  try {
    const data = await api("GET", "/api/caller/notice?lang=" + encodeURIComponent(lang));
    if (lang !== i18n.lang()) return; // switched meanwhile; a newer load is running
    if (!data) throw new Error("empty notice");
    st.notice = data;
  } catch (err) {
    console.warn("notice failed", err);
    if (!st.notice) st.noticeFailed = true;
  }
  drawNotice(st.notice);
  render();
}

function drawNotice(n) {
  if (!n) return;
  const make = (tag, text, cls) => {
    const node = document.createElement(tag);
    node.textContent = text || "";
    if (cls) node.className = cls;
    return node;
  };
  // The summary above the button: the title and "label: text" lines (who, what is shared,
  // what is kept, how to stop). A deployment's own template without one shows the whole
  // text open instead, so nobody accepts unseen text.
  const head = [make("h1", n.title)];
  const lines = Array.isArray(n.summary) ? n.summary : [];
  if (lines.length) {
    const dl = make("dl", "", "summary-list");
    for (const line of lines) dl.append(make("dt", line.label), make("dd", line.text));
    head.push(dl);
  }
  el("notice-summary").replaceChildren(...head);
  el("notice-full").open = !lines.length || el("notice-full").open;
  const nodes = [];
  for (const sec of n.sections || []) {
    nodes.push(make("h2", sec.heading));
    for (const para of sec.paragraphs || []) nodes.push(make("p", para));
  }
  el("notice-body").replaceChildren(...nodes);
}
