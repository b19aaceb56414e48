"""Read one still: its barcodes/QR codes (zxing-cpp) and its text lines (tesseract), each
with its box in the still's pixels, labelled by `classify`; faces found (server/inspect/
faces.py) are counted, not read.

Blocking (runs in the inspect pool, never on the event loop). Tesseract is Debian's
`tesseract-ocr` with its English data (scripts/test.sh installs them), run as a process
on one core with a timeout: no model is downloaded, and a stuck read is killed, not waited
for; without it (missing, failed, too slow) the codes are still answered, with the note
`text_unavailable`. It was picked over rapidocr-onnxruntime after measuring both on 36
label stills (docs/protocol.md, "OCR engines measured"; bench/inspect_still.py --ocr-set):
RapidOCR reads tilted labels that tesseract cannot, but costs 4.4x the CPU (1.65 s a still),
drops the spaces between words, and its wheel requires the GUI build of OpenCV
(`opencv-python`, the same `cv2` package as the headless one used for faces) and
onnxruntime: it does not install beside the project's dependencies.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import zxingcpp
from PIL import Image

from server.inspect.classify import classify, shown_text
from server.inspect.faces import find_faces

log = logging.getLogger(__name__)

# The default `inspect.tesseract`: a name looked up on PATH when the read runs, or a path.
TESSERACT = "tesseract"
# The share of a read's time limit the OCR may use: when tesseract is stopped the codes
# already read are still answered (note `text_unavailable`) before the pool's own limit.
TEXT_SHARE = 0.75
# Words below this confidence (0-100) are noise: a texture read as letters.
MIN_WORD_CONFIDENCE = 40.0
# Tesseract reads best when letters are ~30 px high: a small still is scaled up first.
MIN_OCR_SIDE = 1600


class InspectError(Exception):
    """A still cannot be read; `code` goes to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class Finding:
    source: str  # "code" | "text"
    format: str  # "QRCode", "EAN13", ... for codes; "line" for text
    text: str  # what may be shown (a Wi-Fi payload is its SSID only)
    box: list[int]  # x, y, width, height in the still's pixels
    labels: list[dict[str, str]] = field(default_factory=list)  # {"label", "value"}


@dataclass
class Reading:
    width: int
    height: int
    findings: list[Finding]
    faces: int
    timings_ms: dict[str, float]
    # "text_unavailable": the OCR could not run, failed or took too long; the codes and
    # faces are still there. Empty when everything was read.
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "width": self.width, "height": self.height, "faces": self.faces,
            "findings": [asdict(f) for f in self.findings], "notes": self.notes,
            "timings_ms": self.timings_ms,
        }  # fmt: skip


def decode(data: bytes) -> Image.Image:
    try:
        im = Image.open(io.BytesIO(data))
        im.load()
        return im.convert("RGB")
    except Exception:  # Pillow raises many kinds for a bad file: all are "not an image"
        raise InspectError("not_an_image", "the still is not a readable image") from None


def _labels(text: str) -> list[dict[str, str]]:
    return [{"label": m.label, "value": m.value} for m in classify(text)]


def read_codes(rgb: np.ndarray) -> list[Finding]:
    out = []
    for code in zxingcpp.read_barcodes(rgb[:, :, ::-1].copy()):  # zxing wants BGR
        if not code.valid:
            continue
        p = code.position
        xs = [p.top_left.x, p.top_right.x, p.bottom_left.x, p.bottom_right.x]
        ys = [p.top_left.y, p.top_right.y, p.bottom_left.y, p.bottom_right.y]
        # A 1-D code's position is a line across it: give its box some height to click.
        x0, y0, x1, y1 = min(xs), min(ys), max(xs), max(ys)
        if y1 - y0 < 8:
            y0, y1 = y0 - 10, y1 + 10
        raw = code.text
        labels = _labels(raw)
        fmt = str(code.format).split(".")[-1]
        out.append(Finding("code", fmt, shown_text(raw), [x0, y0, x1 - x0, y1 - y0], labels))
    return out


def read_text(im: Image.Image, timeout_s: float, tesseract: str = TESSERACT) -> list[Finding]:
    scale = 1.0
    if max(im.size) < MIN_OCR_SIDE:
        scale = MIN_OCR_SIDE / max(im.size)
        im = im.resize((round(im.width * scale), round(im.height * scale)),
                       Image.Resampling.LANCZOS)  # fmt: skip
    png = io.BytesIO()
    im.convert("L").save(png, "PNG")
    # One core: the pool decides how many reads run, not tesseract's OpenMP threads.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    binary = shutil.which(tesseract)
    if binary is None:
        raise InspectError("ocr_unavailable", f"tesseract ({tesseract}) is not installed")
    try:
        done = subprocess.run(
            [binary, "-", "-", "-l", "eng", "--psm", "11", "tsv"], input=png.getvalue(),
            capture_output=True, timeout=timeout_s, env=env, check=False,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise InspectError("inspect_timeout", "reading the text took too long") from None
    except OSError as exc:
        raise InspectError("ocr_unavailable", f"tesseract cannot run: {exc}") from None
    if done.returncode != 0:
        raise InspectError("ocr_failed", done.stderr.decode(errors="replace")[-200:])
    lines: dict[tuple[str, str, str], list[tuple[int, int, int, int, str]]] = {}
    rows = csv.DictReader(io.StringIO(done.stdout.decode(errors="replace")), delimiter="\t",
                          quoting=csv.QUOTE_NONE)  # fmt: skip
    for row in rows:
        word = (row.get("text") or "").strip()
        try:
            conf = float(row.get("conf") or -1)
        except ValueError:
            continue
        if row.get("level") != "5" or not word or conf < MIN_WORD_CONFIDENCE:
            continue
        key = (row["block_num"], row["par_num"], row["line_num"])
        box = (int(row["left"]), int(row["top"]), int(row["width"]), int(row["height"]))
        lines.setdefault(key, []).append((*box, word))
    out = []
    for words in lines.values():
        text = " ".join(w[4] for w in words)
        x0 = min(w[0] for w in words)
        y0 = min(w[1] for w in words)
        x1 = max(w[0] + w[2] for w in words)
        y1 = max(w[1] + w[3] for w in words)
        box = [round(v / scale) for v in (x0, y0, x1 - x0, y1 - y0)]
        out.append(Finding("text", "line", shown_text(text), box, _labels(text)))
    out.sort(key=lambda f: (f.box[1], f.box[0]))
    return out


def _inside(box: list[int], outer: list[int]) -> bool:
    cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
    return outer[0] <= cx <= outer[0] + outer[2] and outer[1] <= cy <= outer[1] + outer[3]


def keep_text(line: Finding, codes: list[Finding]) -> bool:
    """A line is shown unless it is noise: under 3 letters/digits, the OCR of a code's
    own modules (its centre inside a code's box), or the digits printed under a barcode
    (the same text as a code found: the agent would see it twice)."""
    if sum(ch.isalnum() for ch in line.text) < 3:
        return False
    if any(line.text.replace(" ", "") == c.text.replace(" ", "") for c in codes):
        return False
    return not any(_inside(line.box, c.box) for c in codes)


def read_still(data: bytes, timeout_s: float = 20.0, tesseract: str = TESSERACT) -> Reading:
    """Codes, text lines and the number of faces of one still (JPEG/PNG/WebP bytes). When
    the OCR cannot give the text (not installed, failed, too slow) the rest is answered
    with the note `text_unavailable`: a missing text reader loses the codes of no read."""
    t0 = time.perf_counter()
    im = decode(data)
    rgb = np.asarray(im)
    t1 = time.perf_counter()
    codes = read_codes(rgb)
    t2 = time.perf_counter()
    notes: list[str] = []
    try:
        left = max(1.0, timeout_s * TEXT_SHARE - (t2 - t0))
        text = [t for t in read_text(im, left, tesseract) if keep_text(t, codes)]
    except InspectError as exc:
        log.warning("text not read: %s: %s", exc.code, exc.message)
        text, notes = [], ["text_unavailable"]
    t3 = time.perf_counter()
    faces = len(find_faces(rgb))
    t4 = time.perf_counter()
    ms = {"decode": t1 - t0, "codes": t2 - t1, "text": t3 - t2, "faces": t4 - t3,
          "total": t4 - t0}  # fmt: skip
    return Reading(im.width, im.height, codes + text, faces,
                   {k: round(v * 1000, 1) for k, v in ms.items()}, notes)  # fmt: skip
