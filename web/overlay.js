// Marks over a picture (docs/protocol.md, "Toolkit"). Points are fractions of the
// picture's intrinsic frame (videoWidth x videoHeight, or an image's natural size) and
// are mapped through the element's displayed rectangle (object-fit contain/cover), so a
// mark lands on the same spot of the picture on every screen, at every size.

export const COLORS = { red: "#ff3b30", yellow: "#ffd60a", green: "#30d158", blue: "#0a84ff", white: "#ffffff", black: "#111111" };
const FADE_OUT_MS = 600;
const POINTER_MS = 1500;

export function frameSize(m) {
  return m.videoWidth ? [m.videoWidth, m.videoHeight] : [m.naturalWidth || 0, m.naturalHeight || 0];
}

// Where the element draws its frame, in viewport (client) pixels.
export function frameRect(m) {
  const [w, h] = frameSize(m);
  const b = m.getBoundingClientRect();
  if (!w || !h || !b.width || !b.height) return null;
  const fit = getComputedStyle(m).objectFit;
  let sx = b.width / w;
  let sy = b.height / h;
  if (fit === "cover") sx = sy = Math.max(sx, sy);
  else if (fit !== "fill") sx = sy = Math.min(sx, sy);
  const dw = w * sx;
  const dh = h * sy;
  return { x: b.left + (b.width - dw) / 2, y: b.top + (b.height - dh) / 2, w: dw, h: dh, ar: w / h };
}

// Draw one mark; r is the frame's rectangle in the context's coordinates.
export function drawMark(g, m, r, alpha = 1) {
  const s = Math.min(r.w, r.h);
  const pts = m.pts.map(([x, y]) => [r.x + x * r.w, r.y + y * r.h]);
  const color = COLORS[m.color] || COLORS.red;
  const lw = Math.max(4, s * 0.014);
  g.save();
  g.globalAlpha = alpha;
  g.lineCap = g.lineJoin = "round";
  g.shadowColor = "rgba(0,0,0,0.55)";
  g.shadowBlur = 4;
  g.strokeStyle = g.fillStyle = color;
  g.lineWidth = lw;
  const [a, b] = pts;
  if (m.shape === "dot") {
    const rad = Math.max(9, s * 0.032);
    g.beginPath();
    g.arc(a[0], a[1], rad, 0, 2 * Math.PI);
    g.fill();
    g.lineWidth = Math.max(2, rad * 0.3);
    g.strokeStyle = "#fff";
    g.stroke();
  } else if (m.shape === "text") {
    const size = Math.max(14, s * 0.06);
    g.font = `700 ${size}px system-ui, sans-serif`;
    g.textBaseline = "middle";
    g.shadowBlur = 0;
    g.lineWidth = Math.max(3, size * 0.18);
    g.strokeStyle = m.color === "black" ? "#fff" : "#000";
    g.strokeText(m.text || "", a[0], a[1]);
    g.fillText(m.text || "", a[0], a[1]);
  } else if (m.shape === "circle") {
    g.beginPath();
    g.arc(a[0], a[1], Math.max(4, Math.hypot(b[0] - a[0], b[1] - a[1])), 0, 2 * Math.PI);
    g.stroke();
  } else {
    g.beginPath();
    g.moveTo(a[0], a[1]);
    for (const p of pts.slice(1)) g.lineTo(p[0], p[1]);
    if (pts.length === 1) g.lineTo(a[0] + 0.1, a[1]);
    g.stroke();
    if (m.shape === "arrow") {
      const ang = Math.atan2(b[1] - a[1], b[0] - a[0]);
      const head = lw * 4;
      g.beginPath();
      g.moveTo(b[0], b[1]);
      g.lineTo(b[0] - head * Math.cos(ang - 0.45), b[1] - head * Math.sin(ang - 0.45));
      g.lineTo(b[0] - head * Math.cos(ang + 0.45), b[1] - head * Math.sin(ang + 0.45));
      g.closePath();
      g.fill();
    }
  }
  g.restore();
}

// A canvas laid over a <video> or <img> (same box), redrawn when anything changes.
export class Overlay {
  constructor(canvas, media, fadeMs = 4000) {
    this.canvas = canvas;
    this.media = media;
    this.fadeMs = fadeMs;
    this.marks = new Map();
    this.pointer = null;
    this.drawn = []; // for tests: [{id, shape, pts: [[clientX, clientY], ...]}]
    this.frame = null; // the frame's rectangle at the last draw
    this.raf = 0;
    this.timer = 0;
    const kick = () => this.kick();
    new ResizeObserver(kick).observe(canvas);
    for (const ev of ["resize", "loadedmetadata", "load"]) media.addEventListener(ev, kick);
    addEventListener("resize", kick);
  }

  add(m) {
    this.marks.set(m.id, { ...m, t: performance.now() });
    this.kick();
  }

  remove(id) {
    if (id == null) this.marks.clear();
    else this.marks.delete(id);
    this.kick();
  }

  point(x, y) {
    this.pointer = x == null ? null : { id: "pointer", shape: "dot", pts: [[x, y]], t: performance.now() };
    this.kick();
  }

  // Client pixels → [x, y] of the frame (clamped), or null when outside the picture.
  toFrame(cx, cy, clamp = false) {
    const r = frameRect(this.media);
    if (!r) return null;
    let x = (cx - r.x) / r.w;
    let y = (cy - r.y) / r.h;
    if (clamp) {
      x = Math.min(1, Math.max(0, x));
      y = Math.min(1, Math.max(0, y));
    } else if (x < 0 || x > 1 || y < 0 || y > 1) {
      return null;
    }
    return [Math.round(x * 10000) / 10000, Math.round(y * 10000) / 10000];
  }

  kick() {
    if (!this.raf) this.raf = requestAnimationFrame(() => this.draw());
  }

  // Visibility of a mark now (1 … 0) and ms until that starts to change (0: changing).
  life(m, now) {
    const keep = m === this.pointer ? POINTER_MS : m.pin ? Infinity : this.fadeMs;
    const age = now - m.t;
    if (age < keep) return [1, keep - age];
    return [1 - (age - keep) / FADE_OUT_MS, 0];
  }

  draw() {
    this.raf = 0;
    clearTimeout(this.timer);
    const c = this.canvas;
    const box = c.getBoundingClientRect();
    const dpr = devicePixelRatio || 1;
    const w = Math.round(box.width * dpr);
    const h = Math.round(box.height * dpr);
    if (c.width !== w || c.height !== h) {
      c.width = w;
      c.height = h;
    }
    const g = c.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, box.width, box.height);
    this.drawn = [];
    const r = (this.frame = frameRect(this.media));
    if (!r || !box.width) return;
    const local = { x: r.x - box.left, y: r.y - box.top, w: r.w, h: r.h };
    const now = performance.now();
    let next = Infinity;
    const all = [...this.marks.values()];
    if (this.pointer) all.push(this.pointer);
    for (const m of all) {
      const [alpha, wait] = this.life(m, now);
      if (alpha <= 0) {
        if (m === this.pointer) this.pointer = null;
        else this.marks.delete(m.id);
        continue;
      }
      next = Math.min(next, wait);
      // Drawn on a frame of another orientation (the phone was turned): not here.
      if (m.ar && Math.abs(Math.log(m.ar / r.ar)) > 0.15) continue;
      drawMark(g, m, local, alpha);
      this.drawn.push({ id: m.id, shape: m.shape, pts: m.pts.map(([x, y]) => [r.x + x * r.w, r.y + y * r.h]) });
    }
    if (next === 0) this.kick();
    else if (next < Infinity) this.timer = setTimeout(() => this.kick(), next);
  }
}
