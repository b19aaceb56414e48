"""Real-looking labels for the OCR comparison (bench/inspect_still.py --ocr-set): a router label
(MAC, serial), a SIM card carrier (ICCID), a phone box (IMEI, EAN-13), drawn with Debian's
DejaVu fonts at three text sizes, straight and tilted, clean and degraded (JPEG quality 35
plus a slight blur, as a phone camera gives them). Each still comes with the fields it
holds, so a read can be scored "field read exactly" (what the classifier labels)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONTS = "/usr/share/fonts/truetype/dejavu/"
MAC, SERIAL = "00:1A:2B:3C:4D:5E", "RT7X4K92B1"
ICCID = "89371234567890123453"  # Luhn-valid, starts 89
IMEI = "352099001761481"  # Luhn-valid
EAN = "5901234123457"

# name: (font file, [(line text, (label, value) or None)])
LABELS: dict[str, tuple[str, list[tuple[str, tuple[str, str] | None]]]] = {
    "router": ("DejaVuSans.ttf", [
        ("Wireless Router AX1800", None),
        (f"MAC: {MAC}", ("mac", MAC)),
        (f"S/N: {SERIAL}", ("serial", SERIAL)),
        ("Input: 12V 1.5A", None),
    ]),
    "sim": ("DejaVuSansCondensed-Bold.ttf", [
        ("Example Telecom SIM", None),
        ("ICCID 8937 1234 5678 9012 3453", ("iccid", ICCID)),
        ("PIN 1234  PUK 56789012", None),
    ]),
    "phonebox": ("DejaVuSansMono.ttf", [
        ("Model XP-40 128GB", None),
        (f"IMEI {IMEI}", ("imei", IMEI)),
    ]),
}
SIZES = (20, 28, 40)  # text height in px on a 1280x720 still
ANGLES = (0, 7)  # degrees: a label held a little crooked


@dataclass
class Still:
    name: str
    jpeg: bytes
    fields: list[tuple[str, str]]  # (label, value) an exact read must give
    code: str | None  # the EAN-13 the still carries (read by zxing, not OCR)


def _draw(kind: str, size: int) -> Image.Image:
    font_file, lines = LABELS[kind]
    font = ImageFont.truetype(FONTS + font_file, size)
    im = Image.new("RGB", (1280, 720), (228, 226, 218))
    d = ImageDraw.Draw(im)
    d.rectangle((40, 40, 1240, 680), fill=(250, 250, 246), outline=(120, 120, 120), width=3)
    y = 80
    for text, _ in lines:
        d.text((80, y), text, font=font, fill=(25, 25, 30))
        y += int(size * 1.9)
    if kind == "phonebox":
        import barcode
        from barcode.writer import ImageWriter

        out = io.BytesIO()
        barcode.get("ean13", EAN[:12], writer=ImageWriter()).write(out)
        im.paste(Image.open(out).convert("RGB"), (80, max(y + 20, 360)))
    return im


def stills() -> Iterator[Still]:
    for kind, (_, lines) in LABELS.items():
        fields = [f for _, f in lines if f]
        for size in SIZES:
            base = _draw(kind, size)
            for angle in ANGLES:
                im = base.rotate(angle, Image.Resampling.BICUBIC, fillcolor=(228, 226, 218))
                for degraded in (False, True):
                    shot = im.filter(ImageFilter.GaussianBlur(0.9)) if degraded else im
                    out = io.BytesIO()
                    shot.save(out, "JPEG", quality=35 if degraded else 92)
                    name = f"{kind}-{size}px-{angle}deg-{'noisy' if degraded else 'clean'}"
                    yield Still(name, out.getvalue(), fields,
                                EAN if kind == "phonebox" else None)  # fmt: skip


def score(lines: list[str], fields: list[tuple[str, str]]) -> tuple[int, int]:
    """(fields labelled exactly by the classifier, as the agent gets them; fields whose
    value is in the text at all, spaces ignored) for one still's text lines."""
    from server.inspect.classify import classify

    labelled = {(m.label, m.value) for line in lines for m in classify(line)}
    compact = "".join("".join(line.split()) for line in lines).upper()
    exact = sum(1 for f in fields if f in labelled)
    present = sum(1 for _, v in fields if v.upper() in compact)
    return exact, present


def read_tesseract(s: Still) -> tuple[list[str], float]:
    """Text lines and CPU seconds (this thread + the tesseract child) of one still."""
    import resource
    import time

    from server.inspect.read import decode, read_text

    c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.thread_time()
    lines = [f.text for f in read_text(decode(s.jpeg), 60.0)]
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.thread_time() - t0 + (c1.ru_utime + c1.ru_stime) - (c0.ru_utime + c0.ru_stime)
    return lines, cpu


def read_rapidocr(all_stills: list[Still], python: str) -> list[tuple[list[str], float]]:
    """Text lines and CPU seconds of each still, read by bench/lib/rapidocr_lines.py in
    `python` (a venv with rapidocr-onnxruntime)."""
    import json
    import subprocess
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for s in all_stills:
            p = Path(tmp) / f"{s.name}.jpg"
            p.write_bytes(s.jpeg)
            paths.append(str(p))
        helper = str(Path(__file__).with_name("rapidocr_lines.py"))
        done = subprocess.run([python, helper, *paths], capture_output=True, text=True,
                              check=True, env={"OMP_NUM_THREADS": "1"})  # fmt: skip
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    return [(r["lines"], r["cpu_s"]) for r in rows]
