// Agent side of the toolkit's pushes (docs/protocol.md, "Toolkit"): a link (http/https only,
// checked here and again by the server), an image (uploaded, then pushed) or a tutorial of
// the library, and the list of what was pushed with its state on the caller's phone.
// toolkit-agent.js owns the state `tk`.

import { t, lang } from "./i18n.js";
import { api, showError } from "./lib/api.js";

const el = (id) => document.getElementById(id);

export function pushTools({ tk, send, sessionId }) {
  function safeLink(url) {
    try {
      const u = new URL(url);
      return (u.protocol === "https:" || u.protocol === "http:") && u.hostname && !u.username && !u.password ? u : null;
    } catch {
      return null;
    }
  }

  function pushLink(ev) {
    ev.preventDefault();
    const input = el("tk-link");
    const url = input.value.trim();
    // Checked here and again by the server; javascript:, data: and the like never leave.
    if (!safeLink(url)) {
      showError(el("tk-push-error"), { message: t("ta.push.bad_url"), code: "bad_url" });
      return;
    }
    showError(el("tk-push-error"), null);
    if (send({ type: "push", kind: "link", url })) input.value = "";
  }

  async function pushImage() {
    const file = el("tk-image").files[0];
    if (!file || !sessionId()) return;
    showError(el("tk-push-error"), null);
    try {
      if (file.size > tk.settings.max_image_bytes) throw Object.assign(new Error(file.name), { code: "too_large" });
      const data = await api("POST", `/api/sessions/${encodeURIComponent(sessionId())}/blobs?kind=image`, file);
      // The agent's own title or none (the caller then reads "the agent sent you a
      // picture"): a local file name ("push.png", "IMG_2041.jpg") means nothing to them.
      const title = el("tk-image-title").value.trim().slice(0, 80);
      if (send({ type: "push", kind: "image", image: data.blob.id, title: title || undefined })) el("tk-image-title").value = "";
    } catch (err) {
      showError(el("tk-push-error"), err);
    } finally {
      el("tk-image").value = "";
    }
  }

  function pushTutorial() {
    const id = el("tk-tutorial").value;
    if (id) send({ type: "push", kind: "tutorial", tutorial: id });
  }

  async function loadTutorials() {
    try {
      tk.tutorials = (await api("GET", "/api/tutorials")).tutorials;
    } catch {
      tk.tutorials = [];
    }
    renderTutorials();
  }

  function renderTutorials() {
    const sel = el("tk-tutorial");
    const keep = sel.value;
    const opts = tk.tutorials.map((tut) => {
      const o = document.createElement("option");
      o.value = tut.id;
      o.textContent = tut.title[lang()] || tut.id;
      return o;
    });
    if (!opts.length) {
      const o = document.createElement("option");
      o.value = "";
      o.textContent = t("ta.push.none");
      opts.push(o);
    }
    sel.replaceChildren(...opts);
    if (keep) sel.value = keep;
    el("tk-push-tutorial").disabled = !tk.tutorials.length;
  }

  function onPush(m) {
    tk.pushes.set(m.id, { ...m, state: "sent" });
    renderPushes();
  }

  function onPushState(m) {
    const p = tk.pushes.get(m.id);
    if (!p) return;
    p.state = m.state;
    p.step = m.step;
    renderPushes();
  }

  function renderPushes() {
    const items = [...tk.pushes.values()].reverse().slice(0, 8).map((p) => {
      const li = document.createElement("li");
      li.dataset.testid = "push-item";
      li.dataset.id = p.id;
      li.dataset.kind = p.kind;
      li.dataset.state = p.state;
      const what = document.createElement("strong");
      const tut = p.kind === "tutorial" && tk.tutorials.find((x) => x.id === p.tutorial);
      what.textContent = p.kind === "link" ? p.host : tut ? tut.title[lang()] : p.title || t("ta.push." + p.kind);
      const state = document.createElement("span");
      state.textContent = t("ta.push.state." + p.state) + (p.step ? " · " + t("ta.push.step", { n: p.step }) : "");
      li.append(what, state);
      return li;
    });
    el("tk-pushes").replaceChildren(...items);
  }

  return { pushLink, pushImage, pushTutorial, loadTutorials, renderTutorials, onPush, onPushState, renderPushes };
}
