// The link page (web/link-open.html) works without this script. It keeps a second tap from
// sending the form again while the first is on its way, and in an in-app browser (Facebook,
// Instagram, ...: web/inapp.js) it first offers the phone's own browser: the link still
// works there, because only the tap on "Continue" uses it up.
import { inAppBrowser, intentUrl } from "./inapp.js";

const form = document.querySelector('[data-testid="link-open-form"]');
const button = document.querySelector('[data-testid="link-open"]');
form?.addEventListener("submit", (event) => {
  if (form.dataset.sent) {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
  // Disabled after this tick, so the click that submits still counts.
  setTimeout(() => { if (button) button.disabled = true; }, 0);
});

// The page shows all three languages at once, so these texts do too ({app}: the app).
const TEXT = {
  lv: {
    lead: "Jūs skatāties šo lapu {app} iekšējā pārlūkā. Tas bieži neļauj izmantot kameru.",
    android: "Pieskarieties “Atvērt pārlūkā”. Ja nekas nenotiek: izvēlne ⋮ → “Atvērt pārlūkā”.",
    ios: "Pieskarieties “Kopēt saiti”, atveriet Safari un ielīmējiet saiti adreses joslā. Vai: izvēlne … → “Atvērt Safari”.",
    other: "Atveriet izvēlni un izvēlieties “Atvērt pārlūkā”.",
    here: "Vai pieskarieties “Turpināt” zemāk, lai mēģinātu šeit.",
  },
  en: {
    lead: "You are viewing this page in {app}'s built-in browser. It often cannot use the camera.",
    android: "Tap “Open in browser”. If nothing happens: menu ⋮ → “Open in browser”.",
    ios: "Tap “Copy link”, open Safari and paste the link into the address bar. Or: menu … → “Open in Safari”.",
    other: "Open the app's menu and choose “Open in browser”.",
    here: "Or tap “Continue” below to try here.",
  },
  ru: {
    lead: "Эта страница открыта во встроенном браузере {app}. Он часто не даёт доступ к камере.",
    android: "Нажмите «Открыть в браузере». Если ничего не происходит: меню ⋮ → «Открыть в браузере».",
    ios: "Нажмите «Копировать ссылку», откройте Safari и вставьте ссылку в адресную строку. Или: меню … → «Открыть в Safari».",
    other: "Откройте меню приложения и выберите «Открыть в браузере».",
    here: "Или нажмите «Продолжить» ниже, чтобы попробовать здесь.",
  },
};
// "{app}" in each language: the app's name, or for an unnamed app's WebView, "this app".
const APP_WORD = {
  lv: (name) => (name ? `lietotnes ${name}` : "šīs lietotnes"),
  en: (name) => name || "this app",
  ru: (name) => (name ? `приложения ${name}` : "этого приложения"),
};

function showInApp(found) {
  const box = document.querySelector('[data-testid="inapp-notice"]');
  if (!box) return;
  const $ = (id) => box.querySelector(`[data-testid="${id}"]`);
  box.dataset.app = found.app;
  box.dataset.os = found.os;
  const text = $("inapp-text");
  for (const [lang, tx] of Object.entries(TEXT)) {
    const p = document.createElement("p");
    p.lang = lang;
    const app = APP_WORD[lang](found.name);
    p.textContent = `${tx.lead.replace("{app}", app)} ${tx[found.os]} ${tx.here}`;
    text.append(p);
  }
  if (found.os === "android") {
    const open = $("inapp-open");
    open.href = intentUrl(location.href);
    open.textContent = "Atvērt pārlūkā · Open in browser · Открыть в браузере";
    open.hidden = false;
  } else if (found.os === "ios") {
    const copy = $("inapp-copy");
    const link = $("inapp-link");
    copy.textContent = "Kopēt saiti · Copy link · Копировать ссылку";
    copy.hidden = false;
    link.value = location.href;
    copy.addEventListener("click", async () => {
      const done = $("inapp-copied");
      try {
        await navigator.clipboard.writeText(location.href);
        done.textContent = "Saite nokopēta · Link copied · Ссылка скопирована";
      } catch {
        // No clipboard access in this view: show the link selected for a long-press copy.
        link.hidden = false;
        link.select();
        done.textContent = "Nokopējiet saiti · Copy the link · Скопируйте ссылку";
      }
      done.hidden = false;
    });
  }
  box.hidden = false;
}

const found = inAppBrowser(navigator.userAgent);
if (found) showInApp(found);
