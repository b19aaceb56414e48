"""Sending the one-time link by SMS, through a small pluggable interface.

`console` logs that a message was sent (phone masked, link never logged); `http` POSTs JSON to
a gateway with an HMAC-SHA256 signature of timestamp and body, so the gateway can reject
forged or replayed requests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import Protocol

import aiohttp

from server.core.phone import mask

log = logging.getLogger(__name__)


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
SMS = aiohttp.web.AppKey("sms", SmsSender)
