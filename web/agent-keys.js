// Agent console: keyboard shortcuts (F freeze, S snapshot, E end with its confirmation,
// ? the list, Esc closes). A shortcut only clicks the page's own button, and only while
// that button is shown and enabled, so a key can never do what the mouse could not.
// Letter keys are matched by their physical position (KeyboardEvent.code): the same key
// works with a Latvian or Russian layout.

const el = (id) => document.getElementById(id);

function usable(node) {
  return !!node && !node.disabled && node.getClientRects().length > 0;
}

function typing(target) {
  if (!(target instanceof Element)) return false;
  return target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName);
}

let returnFocus = null;

function helpOpen() {
  return !el("shortcuts").hidden;
}

function openHelp() {
  returnFocus = document.activeElement;
  el("shortcuts").hidden = false;
  el("shortcuts-close").focus();
}

function closeHelp() {
  el("shortcuts").hidden = true;
  const back = returnFocus && returnFocus.isConnected ? returnFocus : el("shortcuts-open");
  if (back && back.focus) back.focus();
  returnFocus = null;
}

function snapshot() {
  // Frozen: save the still with its marks; live: ask the caller's camera for one.
  const save = el("tk-snapshot");
  if (usable(save)) return save.click();
  const take = el("take-snapshot");
  if (usable(take)) take.click();
}

function onKey(ev) {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  if (ev.key === "Escape") {
    if (helpOpen()) {
      ev.preventDefault();
      return closeHelp();
    }
    if (!el("end-confirm-box").hidden) {
      ev.preventDefault();
      el("end-session-cancel").click();
      return el("end-session").focus();
    }
    return;
  }
  if (typing(ev.target)) return;
  if (helpOpen()) {
    // The dialog holds the focus: Tab stays on its one button.
    if (ev.key === "Tab") {
      ev.preventDefault();
      el("shortcuts-close").focus();
    }
    return;
  }
  if (ev.key === "?") {
    ev.preventDefault();
    return openHelp();
  }
  if (ev.shiftKey) return;
  const action = { KeyF: () => usable(el("tk-freeze-btn")) && el("tk-freeze-btn").click(), KeyS: snapshot,
    KeyE: () => usable(el("end-session")) && el("end-session").click() }[ev.code];
  if (!action) return;
  ev.preventDefault();
  action();
}

document.addEventListener("keydown", onKey);
el("shortcuts-open").addEventListener("click", openHelp);
el("shortcuts-close").addEventListener("click", closeHelp);
el("shortcuts").addEventListener("click", (ev) => {
  if (ev.target === el("shortcuts")) closeHelp(); // a click beside the card
});
