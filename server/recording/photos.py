"""Photos from the caller (agent snapshots and gallery uploads): check, clean, re-encode.

Pure functions, no I/O. The content decides, never the file name or Content-Type: the bytes
must decode as a JPEG, PNG or WebP image (a full decode, so a truncated or forged file is
refused). What is stored is a NEW image built from the pixels alone, re-encoded as JPEG:
EXIF (GPS position, camera serial numbers, time), XMP, IPTC, ICC profiles and comments are
all gone. The EXIF orientation is applied first, so the picture still shows upright.
"""

from __future__ import annotations

import io
import warnings
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


def _flatten(im: Image.Image) -> Image.Image:
    """RGB on white (transparency has no meaning in a JPEG)."""
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        base = Image.new("RGB", rgba.size, (255, 255, 255))
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return im.convert("RGB")


def clean_photo(data: bytes, *, max_pixels: int, max_side: int, quality: int = 85) -> CleanPhoto:
    """Decode `data`, refuse what is not a reasonable image, return a clean JPEG."""
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
            im.load()  # the full decode: a truncated or corrupt file fails here
            im = ImageOps.exif_transpose(im) or im
            im = _flatten(im)
        except PhotoRejected:
            raise
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise PhotoRejected(413, "image_too_large", "the image has too many pixels") from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
            raise PhotoRejected(415, "not_an_image",
                                "the file is not a photo (or it is damaged): send a JPEG, PNG "
                                "or WebP image") from None  # fmt: skip
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    # A fresh image: only pixels are copied, no metadata of the original can follow.
    clean = Image.new("RGB", im.size)
    clean.paste(im)
    out = io.BytesIO()
    clean.save(out, "JPEG", quality=quality, optimize=True)
    return CleanPhoto(out.getvalue(), clean.width, clean.height, fmt, len(data))
