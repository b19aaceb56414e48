// Caller page: the service notice, fetched in the page's language
// (GET /api/caller/notice?lang=…) and built with textContent only: it comes from the
// server, never as HTML.

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
  const nodes = [];
  const h1 = document.createElement("h1");
  h1.textContent = n.title || "";
  nodes.push(h1);
  for (const sec of n.sections || []) {
    const h2 = document.createElement("h2");
    h2.textContent = sec.heading || "";
    nodes.push(h2);
    for (const para of sec.paragraphs || []) {
      const p = document.createElement("p");
      p.textContent = para;
      nodes.push(p);
    }
  }
  el("notice-body").replaceChildren(...nodes);
  if (n.operator) el("brand-sub").textContent = n.operator;
}
