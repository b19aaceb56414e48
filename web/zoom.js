// Pinch-to-zoom and pan for the agent's shared screen on a phone: a desktop screen
// shrunk to 360 px is unreadable without it. Two fingers zoom around their midpoint,
// one finger pans when zoomed, a double tap toggles 2x / 1x. Ctrl+wheel on desktop.

const MAX_SCALE = 5;

export function setupZoom(wrap, target) {
  const pts = new Map();
  let scale = 1;
  let tx = 0;
  let ty = 0;
  let start = null; // gesture start: {scale, tx, ty, mid, dist}
  let lastTap = 0;

  const center = () => {
    const r = wrap.getBoundingClientRect();
    return { x: r.left + r.width / 2, y: r.top + r.height / 2, w: r.width, h: r.height };
  };

  function clampAndApply() {
    scale = Math.min(MAX_SCALE, Math.max(1, scale));
    const c = center();
    const mx = ((scale - 1) * c.w) / 2;
    const my = ((scale - 1) * c.h) / 2;
    tx = Math.min(mx, Math.max(-mx, tx));
    ty = Math.min(my, Math.max(-my, ty));
    target.style.transform = scale === 1 ? "" : `translate(${tx}px, ${ty}px) scale(${scale})`;
    wrap.classList.toggle("zoomed", scale > 1);
  }

  // Zoom to newScale keeping the content point under (px, py) where it is.
  function zoomAt(newScale, px, py) {
    const c = center();
    const mx = px - c.x;
    const my = py - c.y;
    const qx = (mx - tx) / scale;
    const qy = (my - ty) / scale;
    scale = Math.min(MAX_SCALE, Math.max(1, newScale));
    tx = mx - scale * qx;
    ty = my - scale * qy;
    clampAndApply();
  }

  function snapshot() {
    const list = [...pts.values()];
    if (list.length >= 2) {
      const [a, b] = list;
      start = {
        scale, tx, ty,
        mid: { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 },
        dist: Math.hypot(a.x - b.x, a.y - b.y) || 1,
      };
    } else if (list.length === 1) {
      start = { scale, tx, ty, mid: { ...list[0] }, dist: 0 };
    } else {
      start = null;
    }
  }

  wrap.addEventListener("pointerdown", (ev) => {
    if (ev.target.closest("button")) return;
    wrap.setPointerCapture(ev.pointerId);
    pts.set(ev.pointerId, { x: ev.clientX, y: ev.clientY });
    if (pts.size === 1 && ev.pointerType !== "mouse") {
      const now = Date.now();
      if (now - lastTap < 300) {
        if (scale > 1) {
          scale = 1;
          tx = ty = 0;
          clampAndApply();
        } else {
          zoomAt(2, ev.clientX, ev.clientY);
        }
        lastTap = 0;
      } else {
        lastTap = now;
      }
    }
    snapshot();
  });

  wrap.addEventListener("pointermove", (ev) => {
    if (!pts.has(ev.pointerId) || !start) return;
    pts.set(ev.pointerId, { x: ev.clientX, y: ev.clientY });
    const list = [...pts.values()];
    if (list.length >= 2 && start.dist) {
      const [a, b] = list;
      const mid = { x: (a.x + b.x) / 2, y: (a.y + b.y) / 2 };
      const dist = Math.hypot(a.x - b.x, a.y - b.y);
      const c = center();
      // Keep the content point under the starting midpoint under the current one.
      const s1 = Math.min(MAX_SCALE, Math.max(1, (start.scale * dist) / start.dist));
      const m0x = start.mid.x - c.x;
      const m0y = start.mid.y - c.y;
      scale = s1;
      tx = mid.x - c.x - (s1 * (m0x - start.tx)) / start.scale;
      ty = mid.y - c.y - (s1 * (m0y - start.ty)) / start.scale;
      clampAndApply();
    } else if (list.length === 1 && scale > 1) {
      tx = start.tx + (list[0].x - start.mid.x);
      ty = start.ty + (list[0].y - start.mid.y);
      clampAndApply();
    }
  });

  const end = (ev) => {
    pts.delete(ev.pointerId);
    snapshot();
  };
  wrap.addEventListener("pointerup", end);
  wrap.addEventListener("pointercancel", end);

  wrap.addEventListener(
    "wheel",
    (ev) => {
      if (!ev.ctrlKey && scale === 1) return; // let the page scroll
      ev.preventDefault();
      zoomAt(scale * Math.exp(-ev.deltaY / 300), ev.clientX, ev.clientY);
    },
    { passive: false },
  );

  return {
    reset() {
      scale = 1;
      tx = ty = 0;
      clampAndApply();
    },
  };
}
