"""Phone numbers: normalise to E.164, and mask for logs and views."""

from __future__ import annotations

import phonenumbers


class BadPhone(ValueError):
    pass


def normalise(raw: str, default_country_code: str) -> str:
    """Return E.164 for `raw`, adding the default country code to a local number."""
    text = raw.strip()
    if not text or len(text) > 32:
        raise BadPhone("enter the caller's phone number")
    if not text.startswith(("+", "00")):
        text = default_country_code + text
    elif text.startswith("00"):
        text = "+" + text[2:]
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        raise BadPhone(f"'{raw}' is not a phone number") from None
    if not phonenumbers.is_valid_number(number):
        raise BadPhone(f"'{raw}' is not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def mask(e164: str) -> str:
    """+37120000012 -> +371 ••••••12: enough to tell calls apart, not to dial."""
    if not e164:
        return ""
    try:
        number = phonenumbers.parse(e164, None)
        cc = f"+{number.country_code}"
    except phonenumbers.NumberParseException:
        cc = e164[:4]
    rest = e164[len(cc) :]
    return f"{cc} {'•' * max(len(rest) - 2, 0)}{rest[-2:]}"
