// Ops console: numbers, rates, shares, durations and sizes in the page's language.

import * as i18n from "./i18n.js";

const t = i18n.t;

export function num(value, digits = 0) {
  return new Intl.NumberFormat(i18n.lang(), {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  }).format(value);
}

export function rate(kbps) {
  if (kbps >= 1000) return `${num(kbps / 1000, 1)} ${t("unit.mbps")}`;
  return `${num(kbps, 0)} ${t("unit.kbps")}`;
}

export function pct(share) {
  return `${num(share * 100, share > 0 && share < 0.1 ? 1 : 0)} %`;
}

export function duration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s} ${t("unit.s")}`;
  if (s < 3600) return `${Math.floor(s / 60)} ${t("unit.min")} ${s % 60} ${t("unit.s")}`;
  return `${Math.floor(s / 3600)} ${t("unit.h")} ${Math.floor((s % 3600) / 60)} ${t("unit.min")}`;
}

export function mb(bytes) {
  return `${num(bytes / 1048576, 0)} ${t("unit.mb")}`;
}
