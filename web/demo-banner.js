// In demo mode (`callassist demo`, server/startup/demo.py) the server answers /api/demo, and every
// page that loads this script says so at the top: the caller is a built-in test pattern.

import { extend, t, onLangChange } from "./i18n.js";

extend({
  lv: { "demo.banner": "DEMO — zvanītājs ir iebūvēts testa attēls; nekas netiek nosūtīts." },
  en: { "demo.banner": "DEMO — the caller is a built-in test pattern; nothing is sent anywhere." },
  ru: { "demo.banner": "ДЕМО — звонящий — встроенный тестовый сигнал; ничего никуда не отправляется." },
});

async function check() {
  let r;
  try {
    r = await fetch("/api/demo", { credentials: "same-origin" });
  } catch {
    return;
  }
  if (!r.ok) return; // 404: not a demo
  const banner = document.createElement("div");
  banner.className = "banner demo-banner";
  banner.dataset.testid = "demo-banner";
  banner.dataset.state = "paused";
  banner.setAttribute("role", "status");
  const render = () => { banner.textContent = t("demo.banner"); };
  render();
  onLangChange(render);
  document.body.prepend(banner);
  document.body.dataset.demo = "true";
}

check();
