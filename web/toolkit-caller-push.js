// Caller side of the toolkit's pushes (docs/protocol.md, "Toolkit"): a link card (only
// http/https links are ever made clickable), an image, or a tutorial step by step, each
// reported back with push_state. toolkit-caller.js owns the state `tk`.

import { t, lang } from "./i18n.js";
import { api } from "./lib/api.js";

const el = (id) => document.getElementById(id);

export function pushes({ tk, send, render }) {
  function onPush(m) {
    tk.push = m;
    tk.tut = null;
    tk.step = 0;
    send({ type: "push_state", id: m.id, state: "shown" });
    if (m.kind === "tutorial") {
      api("GET", m.src)
        .then((tut) => {
          if (tk.push === m) {
            tk.tut = tut;
            render();
          }
        })
        .catch((err) => console.warn("tutorial failed", err));
    }
    render();
  }

  // Only http(s) links are ever made clickable, whatever the server sent.
  function safeLink(url) {
    try {
      const u = new URL(url);
      return (u.protocol === "https:" || u.protocol === "http:") && !u.username && !u.password ? u : null;
    } catch {
      return null;
    }
  }

  function renderPush() {
    const m = tk.push;
    const card = el("tk-push");
    card.hidden = !m;
    if (!m) return;
    card.dataset.kind = m.kind;
    const L = lang();
    let title = m.title || "";
    let host = "";
    let text = "";
    let img = "";
    const open = el("tk-push-open");
    const link = m.kind === "link" ? safeLink(m.url) : null;
    open.hidden = !link;
    if (link) open.href = link.href;
    else open.removeAttribute("href");
    if (m.kind === "link") {
      title = title || t("tk.push.link");
      host = link ? link.host : "";
      if (!link) text = t("tk.push.bad");
    } else if (m.kind === "image") {
      title = title || t("tk.push.image");
      img = m.src;
    } else if (tk.tut) {
      const steps = tk.tut.steps;
      const s = steps[tk.step];
      title = tk.tut.title[L] || "";
      text = s.text[L] || "";
      img = s.image || "";
      el("tk-step").textContent = t("tk.step", { n: tk.step + 1, total: steps.length });
      el("tk-step-back").disabled = tk.step === 0;
      const last = tk.step === steps.length - 1;
      el("tk-step-next").dataset.i18n = last ? "tk.close" : "tk.next";
      el("tk-step-next").textContent = t(last ? "tk.close" : "tk.next");
    }
    el("tk-push-nav").hidden = !tk.tut;
    el("tk-push-title").textContent = title;
    el("tk-push-host").textContent = host;
    el("tk-push-host").hidden = !host;
    el("tk-push-text").textContent = text;
    el("tk-push-text").hidden = !text;
    const im = el("tk-push-img");
    im.hidden = !img;
    if (img && im.getAttribute("src") !== img) im.src = img;
  }

  function closePush() {
    if (tk.push) send({ type: "push_state", id: tk.push.id, state: "closed" });
    tk.push = tk.tut = null;
    el("tk-push-img").removeAttribute("src");
    render();
  }

  function step(d) {
    if (!tk.tut) return;
    const next = tk.step + d;
    if (next >= tk.tut.steps.length) return closePush();
    tk.step = Math.max(0, next);
    send({ type: "push_state", id: tk.push.id, state: "shown", step: tk.step + 1 });
    render();
  }

  return { onPush, renderPush, closePush, step };
}
