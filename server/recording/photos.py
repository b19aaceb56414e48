"""Photos from the caller (agent snapshots and gallery uploads): check, clean, re-encode.

Pure functions, no I/O. The content decides, never the file name or Content-Type: the bytes
must decode as a JPEG, PNG or WebP image (a full decode, so a truncated or forged file is
refused). What is stored is a NEW image built from the pixels alone, re-encoded as JPEG:
EXIF (GPS position, camera serial numbers, time), XMP, IPTC, ICC profiles and comments are
all gone. The EXIF orientation is applied first, so the picture still shows upright.
With `redact_faces` the faces found are blurred before the encode (server/inspect/faces.py):
what is stored, shown and exported never held them; `redact_documents`, a function the
caller gives (server/inspect/documents.py runs the OCR, which is I/O), does the same to
ID documents' machine-readable zones.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

# Pillow's format names. MPO is the multi-picture JPEG many Android phones write.
ACCEPTED_FORMATS = ("JPEG", "MPO", "PNG", "WEBP")


class PhotoRejected(Exception):
    """The upload is not accepted; `code` and `message` go to the client as they are."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class CleanPhoto:
    jpeg: bytes
    width: int
    height: int
    original_format: str
    original_bytes: int
    faces_blurred: int = 0
    documents_blurred: int = 0  # machine-readable zones (privacy.redact_documents)


# Bytes per pixel of Pillow's in-memory modes (RGB and 2-band modes are stored 4 bytes a
# pixel); what is not listed counts 4.
_BYTES_PER_PIXEL = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# What the steps after the decode hold at their peak, in 4-byte pixels of the stored size:
# the fresh RGB image and libjpeg's optimising encoder (1.6); a mode conversion to RGB(A)
# (+0.6); scaling an image with alpha down (Pillow premultiplies it into a copy of the
# decoded size, and its two-pass resize keeps an intermediate: +0.7 and the copy).
# Measured peaks (VmHWM) of clean_photo:
# 12 MP RGB JPEG 116 MB, 4300x4300 RGBA PNG 273 MB, 5000x5000 L PNG 156 MB.
_AFTER_DECODE = 1.6
_CONVERTED = 0.6
_ALPHA_SCALED = 0.7
# Face redaction (redact_faces) holds, besides the image, its pixels as a numpy RGB array
# and a grey copy (0.75 + 0.25), then the blurred copy (1) while the original is dropped:
# 0.5 over what the encoder alone holds.
_REDACTED = 0.5


def decode_cost(
    mode: str, width: int, height: int, max_side: int, redact: bool = False
) -> int:
    """Bytes `clean_photo` needs at its peak for a `mode` image of width x height (as it
    will be decoded) stored at most `max_side` wide or high: an estimate, on the safe side."""
    decoded = width * height * _BYTES_PER_PIXEL.get(mode, 4)
    scale = min(1.0, max_side / max(width, height, 1))
    stored = int(width * scale) * int(height * scale) * 4
    factor = _AFTER_DECODE + (_REDACTED if redact else 0.0)
    if mode not in ("RGB", "RGBA"):
        factor += _CONVERTED
    if scale < 1.0 and mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        factor += _ALPHA_SCALED
        decoded *= 2
    return int(decoded + stored * factor)


def _fresh_rgb(im: Image.Image) -> Image.Image:
    """A NEW RGB image holding only `im`'s pixels, on white where it is transparent (no
    metadata of the original can follow). One full-size copy at most besides `im`."""
    base = Image.new("RGB", im.size, (255, 255, 255))
    if im.mode in ("RGBA", "RGB"):
        base.paste(im, mask=im if im.mode == "RGBA" else None)  # the alpha band as mask
    elif im.mode == "LA" or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        base.paste(rgba, mask=rgba)
    else:
        base.paste(im.convert("RGB"))
    return base


def clean_photo(
    data: bytes,
    *,
    max_pixels: int,
    max_side: int,
    quality: int = 85,
    max_decode_bytes: int | None = None,
    redact_faces: bool = False,
    redact_documents: Callable[[Image.Image], tuple[Image.Image, int]] | None = None,
) -> CleanPhoto:
    """Decode `data`, refuse what is not a reasonable image, return a clean JPEG.

    The decode stays within `max_decode_bytes`: a JPEG is decoded already scaled down
    (DCT scaling, `draft`) to about `max_side`; any other image whose decoded pixels would
    need more is refused (413 image_too_large) before a byte of it is decoded."""
    if not data:
        raise PhotoRejected(400, "empty_upload", "the upload is empty: choose a photo")
    with warnings.catch_warnings():
        # Pillow warns (and only at twice its own limit raises) about decompression bombs.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(io.BytesIO(data))
            fmt = im.format or "?"
            if fmt not in ACCEPTED_FORMATS:
                raise PhotoRejected(415, "unsupported_image",
                                    f"{fmt} images are not accepted: send a JPEG, PNG or WebP "
                                    "photo")  # fmt: skip
            width, height = im.size
            if width * height > max_pixels:
                mp = max_pixels // 1_000_000
                raise PhotoRejected(413, "image_too_large", f"the image has {width}x{height} "
                                    f"pixels; at most {mp} megapixels are accepted")  # fmt: skip
            if fmt in ("JPEG", "MPO"):
                # Decode at 1/2, 1/4 or 1/8 scale straight from the DCT data: a fraction
                # of the memory. Not smaller than what is stored (max_side) unless the
                # budget needs it.
                scale = 1
                while scale < 8 and max(width, height) // (scale * 2) >= max_side:
                    scale *= 2
                while (scale < 8 and max_decode_bytes is not None
                       and decode_cost("RGB", width // scale, height // scale, max_side,
                                       redact_faces)
                       > max_decode_bytes):  # fmt: skip
                    scale *= 2
                if scale > 1:
                    im.draft("RGB", (max(1, width // scale), max(1, height // scale)))
            if max_decode_bytes is not None:
                need = decode_cost(im.mode, *im.size, max_side, redact_faces)
                if need > max_decode_bytes:
                    mp = max_decode_bytes / (4 * (1 + _AFTER_DECODE)) / 1_000_000
                    raise PhotoRejected(413, "image_too_large", f"the image has {width}x{height} "
                                        f"pixels: decoding it would need {need >> 20} MB, over "
                                        f"the {max_decode_bytes >> 20} MB allowed (about {mp:.0f} "
                                        "megapixels for a photo)")  # fmt: skip
            im.load()  # the full decode: a truncated or corrupt file fails here
            if max(im.size) > max_side:
                # Scaled down before anything else copies it: every later step is small.
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            ImageOps.exif_transpose(im, in_place=True)  # a copy otherwise
            im = _fresh_rgb(im)
        except PhotoRejected:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise PhotoRejected(413, "image_too_large", "the image has too many pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            raise PhotoRejected(415, "not_an_image",
                                "the file is not a photo (or it is damaged): send a JPEG, PNG "
                                "or WebP image") from None  # fmt: skip
    faces = 0
    if redact_faces:
        from server.inspect.faces import blur_faces  # OpenCV only where redaction is on

        im, faces = blur_faces(im)
    documents = 0
    if redact_documents is not None:
        im, documents = redact_documents(im)
    clean = im
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=quality, optimize=True)
    return CleanPhoto(out.getvalue(), clean.width, clean.height, fmt, len(data), faces,
                      documents)  # fmt: skip
