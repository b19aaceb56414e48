// Which in-app browser (a messenger's or social app's own web view) a user agent is, from
// its user agent string: those views often cannot use the camera or WebRTC, so the link
// page offers to open the link in the phone's real browser (docs/testing.md, "In-app
// browsers", has the table). Pure: no DOM, so link-open.js and the caller page share it.
// WhatsApp is not here on purpose: it opens links in the real browser.

// Order matters: Messenger's and Instagram's agents also carry Facebook's FBAN/FBAV.
const APPS = [
  ["messenger", "Messenger", /FBAN\/Messenger|FB_IAB\/(MESSENGER|Orca-Android)|MessengerForiOS/i],
  ["instagram", "Instagram", /Instagram/i],
  ["facebook", "Facebook", /FBAN|FBAV|FB_IAB|FBIOS/],
  ["line", "LINE", /\bLine\/\d/i],
  ["wechat", "WeChat", /MicroMessenger/i],
  ["snapchat", "Snapchat", /Snapchat/i],
  ["tiktok", "TikTok", /musical_ly|BytedanceWebview|TikTok|\btrill_/i],
  ["linkedin", "LinkedIn", /LinkedInApp/i],
  ["twitter", "X (Twitter)", /TwitterAndroid|Twitter for iPhone|Twitter for iPad/i],
  // Any other Android app's WebView marks itself "; wv)".
  ["webview", "", /; wv\)/],
];

export function osOf(ua) {
  if (/iPhone|iPad|iPod/.test(ua)) return "ios";
  if (/Android/.test(ua)) return "android";
  return "other";
}

// { app, name, os } for a known in-app browser, else null.
export function inAppBrowser(ua) {
  for (const [app, name, re] of APPS) {
    if (re.test(ua || "")) return { app, name, os: osOf(ua || "") };
  }
  return null;
}

// Android: an intent:// link opens the same URL in the default browser (no package named,
// so the caller's own choice of browser, e.g. Samsung Internet, is kept).
export function intentUrl(href) {
  const u = new URL(href);
  return `intent://${u.host}${u.pathname}${u.search}#Intent;scheme=${u.protocol.replace(":", "")};action=android.intent.action.VIEW;end`;
}
