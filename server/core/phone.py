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


def region_for(default_country_code: str) -> str | None:
    """"+371" -> "LV": the region the matcher reads local numbers ("20000099") in."""
    try:
        region = phonenumbers.region_code_for_country_code(int(default_country_code.lstrip("+")))
    except ValueError:
        return None
    return None if region == phonenumbers.UNKNOWN_REGION else region


# Fewer digits than this cannot be a phone number: the (slow) matcher is not run at all.
_MIN_DIGITS = 7


def mask_text(text: str, region: str | None) -> str:
    """Mask every phone number in free text, written in any usual way ("+371 2000 0099",
    "371-2000-0099", "0037120000099", a local "20000099" read in `region`).

    libphonenumber's matcher finds candidates; a number counts when it is valid, or when it
    is written internationally (+/00) and merely possible: premium-rate and new ranges are
    not always "valid" in the metadata, and masking too much is the safe side."""
    if sum(c.isdigit() for c in text) < _MIN_DIGITS:
        return text
    out, last = [], 0
    matcher = phonenumbers.PhoneNumberMatcher(
        text, region, leniency=phonenumbers.Leniency.POSSIBLE, max_tries=1000
    )
    for match in matcher:
        raw = match.raw_string.lstrip("(")
        if not (
            phonenumbers.is_valid_number(match.number) or raw.startswith(("+", "00"))
        ):
            continue
        e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        out += [text[last : match.start], mask(e164)]
        last = match.end
    out.append(text[last:])
    return "".join(out)
