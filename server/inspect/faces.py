"""Find faces in a still and blur them (privacy.redact_faces).

The detector is OpenCV's frontal-face Haar cascade, which ships inside the
opencv-python-headless wheel (cv2.data): no model is downloaded. It is old and misses
profiles and small faces (bench/inspect.py measures found/missed), but it runs in ~50 ms
on a 1280x720 still on one core and needs no extra runtime. Each face's box is widened
(hair, chin) and pixelated then blurred, so nothing of it can be recovered by sharpening.
"""

from __future__ import annotations

import threading

import cv2
import numpy as np
from PIL import Image, ImageFilter

# One thread per detection: the inspect and image pools decide how many run at once, and
# OpenCV's own thread pool would multiply that by the cores.
cv2.setNumThreads(1)
_CASCADE_FILE = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
# A CascadeClassifier is not safe to share between threads: one per worker thread.
_local = threading.local()
# Faces smaller than this share of the still's shorter side are not looked for (noise).
MIN_FACE_SHARE = 0.06
# How far the blurred box reaches past the detector's box, as a share of its size.
MARGIN = 0.25


def _cascade() -> cv2.CascadeClassifier:
    c = getattr(_local, "cascade", None)
    if c is None:
        c = cv2.CascadeClassifier(_CASCADE_FILE)
        if c.empty():
            raise RuntimeError(f"the face model {_CASCADE_FILE} cannot be loaded")
        _local.cascade = c
    return c


def find_faces(rgb: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (x, y, w, h) of the faces in an RGB array."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # Detect on at most ~960 px: the cascade's time grows with the pixels, faces stay big.
    scale = min(1.0, 960 / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    side = max(24, int(min(gray.shape) * MIN_FACE_SHARE))
    found = _cascade().detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                        minSize=(side, side))  # fmt: skip
    return [tuple(int(round(v / scale)) for v in box) for box in found]  # type: ignore[misc]


def blur_faces(im: Image.Image) -> tuple[Image.Image, int]:
    """`im` with every face found pixelated and blurred, and how many there were. The
    image is returned unchanged (the same object) when there is none."""
    boxes = find_faces(np.asarray(im if im.mode == "RGB" else im.convert("RGB")))
    if not boxes:
        return im, 0
    out = im.copy()
    for x, y, w, h in boxes:
        mx, my = int(w * MARGIN), int(h * MARGIN)
        obscure(out, (x - mx, y - my, x + w + mx, y + h + my))
    return out, len(boxes)


def obscure(im: Image.Image, box: tuple[int, int, int, int]) -> None:
    """Pixelate then blur `box` (x0, y0, x1, y1; clipped to the image) of `im` in place:
    coarse blocks first, so no sharpening brings the detail back."""
    x0, y0 = max(0, box[0]), max(0, box[1])
    x1, y1 = min(im.width, box[2]), min(im.height, box[3])
    if x1 <= x0 or y1 <= y0:
        return
    region = im.crop((x0, y0, x1, y1))
    rw, rh = region.size
    small = region.resize((max(1, rw // 16), max(1, rh // 16)), Image.Resampling.BILINEAR)
    region = small.resize((rw, rh), Image.Resampling.NEAREST)
    region = region.filter(ImageFilter.GaussianBlur(max(2, rw // 20)))
    im.paste(region, (x0, y0))
