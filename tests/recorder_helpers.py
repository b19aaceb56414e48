"""Helpers for recorder tests: a synthetic encoded camera feeding a real RoomTrack.

`SyntheticCamera` encodes red/green/blue/white quadrant frames with libvpx (or libx264)
through PyAV and pushes the packets into `server.media.relay.RoomTrack` the way the
server's receive hook does; a keyframe request (PLI) makes the next frame a keyframe.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import Any

import av

from server.media.relay import RoomTrack

QUADRANTS = {  # (x, y) as fractions of the frame -> expected RGB
    (0.25, 0.25): (255, 0, 0),
    (0.75, 0.25): (0, 255, 0),
    (0.25, 0.75): (0, 0, 255),
    (0.75, 0.75): (255, 255, 255),
}


def quadrant_frame(width: int = 320, height: int = 240) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    half = width // 2
    top = bytes((255, 0, 0)) * half + bytes((0, 255, 0)) * (width - half)
    bottom = bytes((0, 0, 255)) * half + bytes((255, 255, 255)) * (width - half)
    pad = b"\0" * (plane.line_size - width * 3)
    plane.update((top + pad) * (height // 2) + (bottom + pad) * (height - height // 2))
    return frame.reformat(format="yuv420p")


def rgb_at(frame: av.VideoFrame, fx: float, fy: float) -> tuple[int, int, int]:
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    data = bytes(plane)
    off = int(fy * rgb.height) * plane.line_size + int(fx * rgb.width) * 3
    return data[off], data[off + 1], data[off + 2]


def quadrants_ok(frame: av.VideoFrame, tolerance: int = 40) -> bool:
    return all(
        all(abs(a - b) <= tolerance for a, b in zip(rgb_at(frame, x, y), want, strict=True))
        for (x, y), want in QUADRANTS.items()
    )


class SyntheticCamera:
    """Encodes quadrant frames at `fps` and pushes them into a RoomTrack."""

    def __init__(
        self, track: RoomTrack, codec: str = "VP8", fps: int = 30,
        size: tuple[int, int] = (320, 240),
    ) -> None:  # fmt: skip
        self.track = track
        self.fps = fps
        name = "libvpx" if codec.upper() == "VP8" else "libx264"
        enc: Any = av.CodecContext.create(name, "w")
        enc.width, enc.height = size
        enc.pix_fmt = "yuv420p"
        enc.time_base = fractions.Fraction(1, fps)
        enc.bit_rate = 500_000
        if name == "libvpx":
            enc.options = {"deadline": "realtime", "cpu-used": "8", "kf-max-dist": "100000"}
        else:
            enc.options = {"preset": "ultrafast", "tune": "zerolatency", "keyint": "100000"}
        self.encoder = enc
        self.frame = quadrant_frame(*size)
        self.want_keyframe = True
        self.sent = 0
        self.keyframes = 0
        self.upstream = track.attach_upstream(self._on_keyframe_request)
        self.n = 0

    def _on_keyframe_request(self) -> None:
        self.want_keyframe = True

    def push_one(self) -> None:
        frame = self.frame
        frame.pts = self.n
        frame.pict_type = av.video.frame.PictureType.I if self.want_keyframe else (
            av.video.frame.PictureType.NONE)
        self.want_keyframe = False
        for packet in self.encoder.encode(frame):
            out = av.Packet(bytes(packet))
            out.pts = self.n * (90000 // self.fps)
            out.time_base = fractions.Fraction(1, 90000)
            key = bool(packet.is_keyframe)
            self.keyframes += key
            self.upstream.push(out, key)
            self.sent += 1
        self.n += 1

    async def run(self, seconds: float, realtime: bool = True) -> None:
        """Push `seconds` worth of frames, paced at `fps` (or as fast as the loop allows)."""
        start = time.monotonic()
        count = int(seconds * self.fps)
        for i in range(count):
            self.push_one()
            if realtime:
                delay = start + (i + 1) / self.fps - time.monotonic()
                await asyncio.sleep(max(0.0, delay))
            else:
                await asyncio.sleep(0)
