"""Blur what looks like an ID document in a still before it is stored
(privacy.redact_documents, off by default).

What is recognised is the machine-readable zone (MRZ, ICAO 9303) of passports and ID
cards: two or three stacked lines of 30 (TD1 card), 36 (TD2) or 44 (TD3 passport)
characters of A-Z, 0-9 and the filler `<`. The zone holds the name, the document number
and the birth date, so blurring it hides the document's identity even when the printed
fields beside it stay readable to the eye; a card-shaped region with a photo is not looked
for (a face on it is blurred by privacy.redact_faces). The check is pure (`mrz_lines`, on
OCR lines); `blur_documents` runs the OCR (tesseract, server/inspect/read.py) and blurs.
"""

from __future__ import annotations

import re

from PIL import Image

from server.inspect.faces import obscure
from server.inspect.read import Finding, read_text

MRZ_LENGTHS = (30, 36, 44)
# OCR drops or adds a character now and then (a filler merged, a split): allowed off-by.
LENGTH_SLACK = 2
# What OCR makes of the filler `<` besides itself.
_FILLER_READS = str.maketrans({"«": "<<", "‹": "<", "(": "<", "{": "<"})
_MRZ_CHARS = re.compile(r"[A-Z0-9<]+")


def mrz_like(text: str) -> bool:
    """One OCR line that may be an MRZ line: MRZ length (give or take LENGTH_SLACK), only
    A-Z, 0-9 and `<` once spaces are gone, and at least one filler (every MRZ line has one
    unless its fields fill it exactly, which a name line never does)."""
    compact = "".join(text.split()).upper().translate(_FILLER_READS)
    if not any(abs(len(compact) - n) <= LENGTH_SLACK for n in MRZ_LENGTHS):
        return False
    return bool(_MRZ_CHARS.fullmatch(compact)) and "<" in compact


def _stacked(upper: Finding, lower: Finding) -> bool:
    """`lower` is the next line of the same zone: just below, starting near the same x."""
    _, uy, uw, uh = upper.box
    gap = lower.box[1] - (uy + uh)
    return -uh / 2 <= gap <= 2.5 * uh and abs(lower.box[0] - upper.box[0]) <= max(uw // 10, 8)


def mrz_lines(lines: list[Finding]) -> list[list[Finding]]:
    """The machine-readable zones among OCR lines: runs of 2-3 stacked MRZ-like lines (one
    alone is a code or a serial, not a document)."""
    candidates = sorted((f for f in lines if mrz_like(f.text)), key=lambda f: f.box[1])
    zones: list[list[Finding]] = []
    for line in candidates:
        if zones and len(zones[-1]) < 3 and _stacked(zones[-1][-1], line):
            zones[-1].append(line)
        else:
            zones.append([line])
    return [z for z in zones if len(z) >= 2]


def zone_box(zone: list[Finding]) -> tuple[int, int, int, int]:
    """x0, y0, x1, y1 around a zone, widened by a line's height each way: a third line the
    OCR missed, and the edges of the letters, are covered too."""
    h = max(f.box[3] for f in zone)
    x0 = min(f.box[0] for f in zone)
    y0 = min(f.box[1] for f in zone)
    x1 = max(f.box[0] + f.box[2] for f in zone)
    y1 = max(f.box[1] + f.box[3] for f in zone)
    return x0 - h, y0 - 2 * h if len(zone) == 2 else y0 - h, x1 + h, y1 + (
        2 * h if len(zone) == 2 else h)  # fmt: skip


def blur_documents(im: Image.Image, tesseract: str, timeout_s: float) -> tuple[Image.Image, int]:
    """`im` with every MRZ found blurred, and how many zones there were; `im` itself (the
    same object) when there is none. Raises InspectError when the OCR cannot run."""
    zones = mrz_lines(read_text(im, timeout_s, tesseract))
    if not zones:
        return im, 0
    out = im.copy()
    for zone in zones:
        obscure(out, zone_box(zone))
    return out, len(zones)
