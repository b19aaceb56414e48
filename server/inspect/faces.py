"""Find faces in a still and blur them (privacy.redact_faces).

The detectors are OpenCV's frontal-face and profile-face Haar cascades, which ship inside
the opencv-python-headless wheel (cv2.data): no model is downloaded. They are old and miss
small faces (bench/inspect_still.py measures found/missed), but they run in ~150-300 ms on a
1280x720 still on one core and need no extra runtime. Each face's box is widened
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
_CASCADE_FILES = {"frontal": cv2.data.haarcascades + "haarcascade_frontalface_default.xml",
                  "profile": cv2.data.haarcascades + "haarcascade_profileface.xml"}  # fmt: skip
# A CascadeClassifier is not safe to share between threads: one per worker thread.
_local = threading.local()
# Faces smaller than this share of the still's shorter side are not looked for (noise).
MIN_FACE_SHARE = 0.06
# How far the blurred box reaches past the detector's box, as a share of its size.
MARGIN = 0.25


def _cascade(kind: str) -> cv2.CascadeClassifier:
    cascades = getattr(_local, "cascades", None)
    if cascades is None:
        cascades = _local.cascades = {}
    c = cascades.get(kind)
    if c is None:
        c = cv2.CascadeClassifier(_CASCADE_FILES[kind])
        if c.empty():
            raise RuntimeError(f"the face model {_CASCADE_FILES[kind]} cannot be loaded")
        cascades[kind] = c
    return c


Box = tuple[int, int, int, int]


def _prepared(gray: np.ndarray, side_px: int) -> tuple[np.ndarray, float, int]:
    """`gray` scaled down to at most `side_px` (the cascade's time grows with the pixels;
    faces stay big enough), equalised; its scale and the smallest face side to look for."""
    scale = min(1.0, side_px / max(gray.shape))
    if scale < 1.0:
        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    gray = cv2.equalizeHist(gray)
    return gray, scale, max(24, int(min(gray.shape) * MIN_FACE_SHARE))


def _overlaps(a: Box, b: Box) -> bool:
    """Most of the smaller box is inside the other: the same face found twice."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy > 0.3 * min(a[2] * a[3], b[2] * b[3])


def find_faces(rgb: np.ndarray) -> list[Box]:
    """Boxes (x, y, w, h) of the faces in an RGB array: frontal faces on at most 960 px,
    then profiles (the profile cascade, on the image and its mirror: it knows one side
    only) on at most 640 px with coarser steps. bench/inspect_still.py measured on its set: the
    profile pass finds the side face the frontal one misses, no new false positive, for
    ~2.5x the CPU (130 -> 330 ms a 1280x720 still under load); an upscaled pass for small
    faces found none more and added false positives, so there is none."""
    gray0 = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gray, scale, side = _prepared(gray0, 960)
    found = _cascade("frontal").detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5,
                                                 minSize=(side, side))  # fmt: skip
    boxes: list[Box] = [tuple(int(round(v / scale)) for v in b) for b in found]  # type: ignore[misc]
    gray, scale, side = _prepared(gray0, 640)
    width = gray.shape[1]
    profile = _cascade("profile")
    sides = list(profile.detectMultiScale(gray, 1.2, 5, minSize=(side, side)))
    mirrored = profile.detectMultiScale(cv2.flip(gray, 1), 1.2, 5, minSize=(side, side))
    sides += [(width - x - w, y, w, h) for x, y, w, h in mirrored]
    for b in sides:
        box: Box = tuple(int(round(v / scale)) for v in b)  # type: ignore[assignment]
        if not any(_overlaps(box, o) for o in boxes):
            boxes.append(box)
    return boxes


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
