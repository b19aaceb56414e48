"""Sending the one-time link by SMS, through a small pluggable interface, and its text.

The text comes from `server/templates/sms.<lang>.json` (lv, en, ru: the languages of the
pages; Latvian by default), filled with the operator's name and the link. A template may
carry a `gsm7` variant (Latvian without diacritics): it is used when the proper text would
need more than one SMS segment and the variant fits in one. `segments()` counts like a
handset: GSM-7 (160 characters, 153 per part; extension characters count twice) or
UCS-2 (70 UTF-16 units, 67 per part).

`console` logs that a message was sent (phone masked, link never logged); `http` POSTs JSON to
a gateway with an HMAC-SHA256 signature of timestamp and body, so the gateway can reject
forged or replayed requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

import aiohttp
from aiohttp import web

from server.core.phone import mask
from server.paths import TEMPLATES

log = logging.getLogger(__name__)


LANGS = ("lv", "en", "ru")
DEFAULT_LANG = "lv"

# The GSM 03.38 default alphabet and its extension table (each extension character takes
# two septets: an escape and the character).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€\f")


@dataclass(frozen=True)
class SmsText:
    lang: str
    text: str
    encoding: str  # "GSM-7" or "UCS-2"
    characters: int  # septets (GSM-7) or UTF-16 units (UCS-2)
    segments: int
    per_segment: int  # room in one segment of this encoding: 160 or 70

    def view(self) -> dict[str, Any]:
        return {
            "lang": self.lang,
            "encoding": self.encoding,
            "characters": self.characters,
            "segments": self.segments,
            "per_segment": self.per_segment,
        }


def gsm7_length(text: str) -> int | None:
    """Septets `text` takes in GSM-7, or None when it needs UCS-2."""
    n = 0
    for ch in text:
        if ch in GSM7_BASIC:
            n += 1
        elif ch in GSM7_EXTENSION:
            n += 2
        else:
            return None
    return n


def segments(text: str) -> tuple[str, int, int]:
    """(encoding, length in that encoding's units, number of SMS segments)."""
    septets = gsm7_length(text)
    if septets is not None:
        return "GSM-7", septets, 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(text.encode("utf-16-le")) // 2
    return "UCS-2", units, 1 if units <= 70 else math.ceil(units / 67)


@lru_cache(maxsize=8)
def _template(lang: str) -> dict[str, str]:
    return json.loads((TEMPLATES / f"sms.{lang}.json").read_text(encoding="utf-8"))


def _measure(lang: str, text: str) -> SmsText:
    encoding, length, count = segments(text)
    return SmsText(lang, text, encoding, length, count, 160 if encoding == "GSM-7" else 70)


def compose(lang: str, operator: str, link: str) -> SmsText:
    """The SMS for `link` in `lang`: one segment when any variant of the template fits."""
    if lang not in LANGS:
        raise ValueError(f"unknown SMS language {lang!r}: use one of {', '.join(LANGS)}")
    template = _template(lang)
    # The link last, substituted last: an operator name can never inject into it.
    texts = [
        template[key].replace("{operator}", operator).replace("{link}", link)
        for key in ("text", "gsm7")
        if key in template
    ]
    measured = [_measure(lang, t) for t in texts]
    return next((m for m in measured if m.segments == 1), measured[0])


def previews(operator: str, link: str) -> dict[str, dict[str, Any]]:
    """What the agent is shown before sending: encoding and segments, per language."""
    return {lang: compose(lang, operator, link).view() for lang in LANGS}


class SmsError(Exception):
    """Sending failed; the message says why in words an agent understands."""


class SmsSender(Protocol):
    async def send(self, phone: str, text: str) -> None: ...
    async def close(self) -> None: ...


class ConsoleSender:
    async def send(self, phone: str, text: str) -> None:
        log.info("SMS to %s (%d characters) handed to the console sender", mask(phone), len(text))

    async def close(self) -> None:
        pass


def sign(key: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class HttpSender:
    def __init__(self, url: str, key: bytes, timeout_s: float) -> None:
        self.url = url
        self.key = key
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s))

    async def send(self, phone: str, text: str) -> None:
        body = json.dumps({"to": phone, "text": text}).encode()
        ts = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "X-Callassist-Timestamp": ts,
            "X-Callassist-Signature": "sha256=" + sign(self.key, ts, body),
        }
        try:
            async with self._session.post(self.url, data=body, headers=headers) as resp:
                if resp.status >= 300:
                    raise SmsError(f"the SMS gateway refused the message (HTTP {resp.status})")
        except TimeoutError:
            raise SmsError("the SMS gateway did not answer in time; try again") from None
        except aiohttp.ClientError as exc:
            raise SmsError(f"the SMS gateway cannot be reached ({type(exc).__name__})") from None
        log.info("SMS to %s accepted by the gateway", mask(phone))

    async def close(self) -> None:
        await self._session.close()


# This feature's application key (docs/architecture.md).
SMS = web.AppKey("sms", SmsSender)
