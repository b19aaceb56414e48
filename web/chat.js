// Chat between the caller and the agent (docs/protocol.md, "chat"). Text is only ever
// set with textContent: whatever a message holds, it is shown, never interpreted.
// Own messages carry data-state: sending → sent (the server's echo) → delivered → read.

import { t, lang } from "./i18n.js";

const TICKS = { failed: "!", sending: "…", sent: "✓", delivered: "✓✓", read: "✓✓" };

export class Chat {
  // root holds [data-testid=chat-list], a <form>, and an <input>.
  // send(msg) → bool; isOpen() → the list is on screen; onChange() after anything new.
  constructor(root, { role, send, isOpen, onChange }) {
    this.root = root;
    this.list = root.querySelector("[data-testid=chat-list]");
    this.input = root.querySelector("input");
    this.role = role;
    this.sendFn = send;
    this.isOpen = isOpen;
    this.onChange = onChange || (() => {});
    this.reset();
    root.querySelector("form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      this.sendText(this.input.value);
    });
    document.addEventListener("visibilitychange", () => this.seen());
    new ResizeObserver(() => this.scroll()).observe(this.list);
  }

  reset() {
    this.items = new Map(); // n → li
    this.pending = new Map(); // cid → li
    this.last = 0; // highest n from the other side
    this.told = { delivered: 0, read: 0 }; // what we reported
    this.peer = { delivered: 0, read: 0 }; // what the other side reported
    this.cid = 0;
    this.list.replaceChildren();
  }

  get unread() {
    let n = 0;
    for (const [num, li] of this.items) if (num > this.told.read && li.dataset.from !== this.role) n += 1;
    return n;
  }

  sendText(text) {
    text = text.trim();
    if (!text) return false;
    const cid = "c" + ++this.cid + Math.random().toString(36).slice(2, 6);
    const li = this.item(this.role, text, null);
    const ok = this.sendFn({ type: "chat", text: text.slice(0, 1000), cid });
    li.dataset.state = ok ? "sending" : "failed";
    this.tick(li);
    if (ok) {
      this.pending.set(cid, li);
      this.input.value = "";
    }
    this.list.append(li);
    this.scroll();
    return ok;
  }

  item(from, text, at) {
    const li = document.createElement("li");
    li.dataset.testid = "chat-msg";
    li.dataset.from = from;
    li.className = "tk-msg " + (from === this.role ? "mine" : "theirs");
    const p = document.createElement("p");
    p.className = "tk-msg-text";
    p.textContent = text;
    const meta = document.createElement("span");
    meta.className = "tk-msg-meta";
    const time = document.createElement("time");
    const d = at ? new Date(at) : new Date();
    time.textContent = new Intl.DateTimeFormat(lang(), { hour: "2-digit", minute: "2-digit" }).format(d);
    meta.append(time);
    if (from === this.role) {
      const mark = document.createElement("span");
      mark.className = "tk-tick";
      mark.dataset.testid = "chat-mark";
      meta.append(mark);
    }
    li.append(p, meta);
    return li;
  }

  tick(li) {
    const mark = li.querySelector(".tk-tick");
    if (!mark) return;
    const state = li.dataset.state;
    mark.textContent = TICKS[state] || "";
    mark.title = t("tk.chat." + state);
    mark.dataset.state = state;
  }

  // A `chat` from the server: ours (the echo) or theirs. Replays are ignored.
  onMessage(m) {
    if (this.items.has(m.n)) return;
    let li = m.cid && m.from === this.role ? this.pending.get(m.cid) : null;
    if (li) this.pending.delete(m.cid);
    else {
      li = this.item(m.from, m.text, m.at);
      this.list.append(li);
    }
    li.dataset.n = String(m.n);
    this.items.set(m.n, li);
    if (m.from === this.role) {
      li.dataset.state = "sent";
      this.refresh();
    } else {
      this.last = Math.max(this.last, m.n);
      this.report("delivered", this.last);
      this.seen();
    }
    this.scroll();
    this.onChange();
  }

  onReceipt(r) {
    if (r.by === this.role) return;
    for (const s of r.state === "read" ? ["delivered", "read"] : ["delivered"]) this.peer[s] = Math.max(this.peer[s], r.n);
    this.refresh();
  }

  refresh() {
    for (const [n, li] of this.items) {
      if (li.dataset.from !== this.role) continue;
      li.dataset.state = n <= this.peer.read ? "read" : n <= this.peer.delivered ? "delivered" : "sent";
      this.tick(li);
    }
  }

  report(state, n) {
    if (n > this.told[state] && this.sendFn({ type: "chat_receipt", n, state })) this.told[state] = n;
  }

  // Call when the chat may have come into view.
  seen() {
    if (this.last && this.isOpen() && document.visibilityState === "visible") {
      this.report("read", this.last);
      this.onChange();
    }
  }

  scroll() {
    this.list.scrollTop = this.list.scrollHeight;
  }
}
