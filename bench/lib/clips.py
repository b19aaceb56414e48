"""VP8 clips encoded once with libvpx (cached in the temp directory), each picture with
its frame number drawn as blocks in the top-left corner so a receiver can tell which
frame of the clip it got (`read_index`) after one decode.

A spec is {"width", "height", "fps", "bitrate", "frames"}; below 10 fps it is a screen (a
still page with a moving block), else a camera (a scrolling texture).
"""

from __future__ import annotations

import fractions
import hashlib
import json
import random
import struct
import tempfile
from pathlib import Path

import av

CLOCK = 90000  # RTP video clock
TB = fractions.Fraction(1, CLOCK)
BAR_BITS = 10  # frame number drawn as blocks in the top-left corner
BAR_BLOCK = 32

def _texture(width: int, height: int, seed: int) -> bytes:
    """A smooth-ish random luma texture twice the frame's size (scrolled for motion)."""
    rng = random.Random(seed)
    cells_w, cells_h, cell = (width * 2) // 8, (height * 2) // 8, 8
    rows = []
    for _ in range(cells_h):
        vals = bytes(rng.randrange(40, 216) for _ in range(cells_w))
        row = b"".join(bytes([v]) * cell for v in vals)
        rows.extend([row] * cell)
    return b"".join(rows)


def _frame(spec: dict[str, int], index: int, texture: bytes) -> av.VideoFrame:
    w, h = spec["width"], spec["height"]
    tw = w * 2
    dx, dy = (index * 7) % w, (index * 3) % h
    if spec["fps"] < 10:  # a screen: a still page with a moving block
        dx = dy = 0
    y_rows = [texture[(y + dy) * tw + dx : (y + dy) * tw + dx + w] for y in range(h)]
    if spec["fps"] < 10:
        bx, by = 200 + (index * 40) % (w - 400), 200
        for y in range(by, by + 120):
            row = bytearray(y_rows[y])
            row[bx : bx + 160] = b"\xeb" * 160
            y_rows[y] = bytes(row)
    for bit in range(BAR_BITS):
        value = 235 if index >> bit & 1 else 16
        x0 = bit * BAR_BLOCK
        for y in range(BAR_BLOCK):
            row = bytearray(y_rows[y])
            row[x0 : x0 + BAR_BLOCK] = bytes([value]) * BAR_BLOCK
            y_rows[y] = bytes(row)
    frame = av.VideoFrame(w, h, "yuv420p")
    for plane, data in (
        (frame.planes[0], y_rows),
        (frame.planes[1], [bytes([128 + (index % 20)]) * (w // 2)] * (h // 2)),
        (frame.planes[2], [bytes([128 - (index % 20)]) * (w // 2)] * (h // 2)),
    ):
        pad = b"\x00" * (plane.line_size - len(data[0]))
        plane.update(b"".join(r + pad for r in data))
    return frame


def read_index(frame: av.VideoFrame) -> int | None:
    """The frame number drawn by _frame() (None if a block is unclear)."""
    plane = frame.planes[0]
    data = bytes(plane)
    stride = plane.line_size
    value = 0
    for bit in range(BAR_BITS):
        x0 = bit * BAR_BLOCK + 8
        total = sum(sum(data[y * stride + x0 : y * stride + x0 + 16]) for y in range(8, 24))
        mean = total / 256
        if 60 < mean < 190:
            return None
        if mean >= 190:
            value |= 1 << bit
    return value


def make_clip(spec: dict[str, int]) -> list[bytes]:
    """Encode spec["frames"] frames with libvpx once; frame 0 is the only keyframe."""
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode() + b"v2").hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / f"callassist-clip-{key}.bin"
    if cache.exists():
        raw = cache.read_bytes()
        frames, pos = [], 0
        while pos < len(raw):
            (n,) = struct.unpack_from("!I", raw, pos)
            frames.append(raw[pos + 4 : pos + 4 + n])
            pos += 4 + n
        return frames
    w, h, fps = spec["width"], spec["height"], spec["fps"]
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = w, h, "yuv420p"
    codec.time_base = fractions.Fraction(1, fps)
    codec.framerate = fractions.Fraction(fps, 1)
    codec.bit_rate = spec["bitrate"]
    codec.gop_size = 100000
    codec.options = {
        "deadline": "good",
        "cpu-used": "4",
        "lag-in-frames": "0",
        "auto-alt-ref": "0",
        "rc_lookahead": "0",
        "error-resilient": "0",
        "max-intra-rate": "300",
        "undershoot-pct": "95",
        "overshoot-pct": "5",
        "static-thresh": "0",
    }
    texture = _texture(w, h, 7 if fps > 10 else 8)
    frames: list[bytes] = []
    # Two passes over the clip so the rate control has settled; keep the second.
    total = spec["frames"]
    for i in range(total * 2):
        vf = _frame(spec, i % total, texture)
        vf.pts = i
        if i == total:
            vf.pict_type = av.video.frame.PictureType.I
        for packet in codec.encode(vf):
            if i >= total:
                frames.append(bytes(packet))
    for packet in codec.encode(None):
        frames.append(bytes(packet))
    frames = frames[:total]
    assert not frames[0][0] & 1, "the clip must start with a keyframe"
    cache.write_bytes(b"".join(struct.pack("!I", len(f)) + f for f in frames))
    return frames


def clip_bitrate(clip: list[bytes], fps: int) -> float:
    return sum(len(f) for f in clip) * 8 * fps / len(clip)
