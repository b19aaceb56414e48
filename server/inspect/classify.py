"""What a string read from a still is: MAC, IMEI, ICCID, Wi-Fi QR, URL, serial-like.

Pure functions, no I/O. `classify(text)` returns every recognised value in the text, each
with its label and a normalised value; a Wi-Fi QR code's password never comes out of here
(`wifi_ssid` drops it), so it cannot reach a response, a log or the reference.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LABELS = ("mac", "imei", "iccid", "wifi", "url", "serial")


@dataclass(frozen=True)
class Match:
    label: str
    value: str


def luhn_ok(digits: str) -> bool:
    """The Luhn check (IMEI, ICCID): the last digit checks the others."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


# Six hex pairs with one separator kind (":" or "-"), or twelve hex digits in a row after a
# "MAC" word (a bare 12-hex token is too often something else).
_MAC_SEP = re.compile(r"(?<![0-9A-Fa-f])[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}"
                      r"[0-9A-Fa-f]{2}(?![0-9A-Fa-f])")  # fmt: skip
_MAC_BARE = re.compile(r"\bMAC\b\W{0,3}([0-9A-Fa-f]{12})\b", re.IGNORECASE)
# Digit runs that may be printed in groups ("35 209900 176148 1", "8937-1234-..."):
# digits joined by single spaces or dashes.
_DIGIT_RUN = re.compile(r"(?<![\w])\d(?:[ -]?\d){13,21}(?![\w])")
_URL = re.compile(r"\b(?:https?://|www\.)[^\s<>\"']+", re.IGNORECASE)
# "S/N: X", "SN X", "Serial No. X": what follows is the serial whatever its shape.
_SERIAL_PREFIXED = re.compile(r"\b(?:S/?N|SERIAL(?:\s*(?:NO|NUMBER))?)\b\.?\s*[:#]?\s*"
                              r"([A-Z0-9][A-Z0-9-]{3,31})", re.IGNORECASE)  # fmt: skip
# A bare token with letters and digits, 6-24 long: what serials look like.
_TOKEN = re.compile(r"(?<![\w-])[A-Z0-9][A-Z0-9-]{4,22}[A-Z0-9](?![\w-])")


def normalise_mac(pairs: str) -> str:
    hexes = re.sub(r"[^0-9A-Fa-f]", "", pairs).upper()
    return ":".join(hexes[i : i + 2] for i in range(0, 12, 2))


def wifi_ssid(text: str) -> str | None:
    """The SSID of a `WIFI:T:WPA;S:name;P:secret;;` payload (backslash escapes undone), or
    None when `text` is not one. The password is read past and dropped."""
    if not text.upper().startswith("WIFI:"):
        return None
    fields: dict[str, str] = {}
    key, buf, escaped, in_key = "", "", False, True
    for ch in text[5:]:
        if escaped:
            buf += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif in_key and ch == ":":
            key, buf, in_key = buf.upper(), "", False
        elif ch == ";":
            if key:
                fields.setdefault(key, buf)
            key, buf, in_key = "", "", True
        else:
            buf += ch
    return fields.get("S", "")


def _digit_matches(text: str) -> list[Match]:
    out = []
    for m in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", m.group(0))
        if len(digits) == 15 and luhn_ok(digits):
            out.append(Match("imei", digits))
        elif len(digits) in (19, 20) and digits.startswith("89") and luhn_ok(digits):
            out.append(Match("iccid", digits))
    return out


def classify(text: str) -> list[Match]:
    """Every recognised value in `text`, in a stable order (MACs, IMEI/ICCID, URLs, then
    serials), none twice. A Wi-Fi payload yields only its SSID."""
    ssid = wifi_ssid(text)
    if ssid is not None:
        return [Match("wifi", ssid)]
    found: list[Match] = []
    for m in _MAC_SEP.finditer(text):
        found.append(Match("mac", normalise_mac(m.group(0))))
    for m in _MAC_BARE.finditer(text):
        found.append(Match("mac", normalise_mac(m.group(1))))
    found += _digit_matches(text)
    for m in _URL.finditer(text):
        found.append(Match("url", m.group(0).rstrip(".,;)")))
    taken = {f.value for f in found}
    taken_hex = {f.value.replace(":", "") for f in found if f.label == "mac"}
    serials = [m.group(1).upper() for m in _SERIAL_PREFIXED.finditer(text)]
    if not serials and not found:
        serials = [t for t in _TOKEN.findall(text.upper())
                   if re.search(r"\d", t) and re.search(r"[A-Z]", t)]  # fmt: skip
    for s in serials:
        if s not in taken and s.replace("-", "") not in taken_hex:
            found.append(Match("serial", s))
    seen: set[tuple[str, str]] = set()
    unique = []
    for f in found:
        if (f.label, f.value) not in seen:
            seen.add((f.label, f.value))
            unique.append(f)
    return unique


def shown_text(text: str) -> str:
    """What may be shown of a code's or line's raw text: a Wi-Fi payload becomes its SSID
    (the password must never leave the server)."""
    ssid = wifi_ssid(text)
    return f"Wi-Fi: {ssid}" if ssid is not None else text
