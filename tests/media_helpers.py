"""aiortc clients that behave like the browser pages, for media tests and the bench.

A client is an ordinary aiortc RTCPeerConnection (its receivers decode normally, its
senders encode with aiortc's own encoders) with the transceiver layout docs/protocol.md
asks browsers for: a sendonly video transceiver carrying the published track and a
recvonly one for the track it receives. SDP goes to a MediaRoom in-process.
"""

from __future__ import annotations

import asyncio
import fractions
import random
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError

from server.core.config import MediaConfig
from server.media.peers import MediaEvent, MediaRoom

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
WIDTH, HEIGHT = 320, 240


def loopback_config(**overrides: Any) -> MediaConfig:
    # Loopback candidates are refused by default (a real deployment): tests run on loopback.
    overrides.setdefault("allow_loopback_candidates", True)
    return MediaConfig(ice_host_addresses=["127.0.0.1"], **overrides)


def solid_frame(
    rgb: tuple[int, int, int], width: int = WIDTH, height: int = HEIGHT
) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    row = bytes(rgb) * width
    pad = b"\x00" * (plane.line_size - len(row))
    plane.update((row + pad) * height)
    return frame.reformat(format="yuv420p")


def center_rgb(frame: av.VideoFrame) -> tuple[int, int, int]:
    rgb = frame.reformat(format="rgb24")
    plane = rgb.planes[0]
    data = bytes(plane)
    y, x = rgb.height // 2, rgb.width // 2
    off = y * plane.line_size + x * 3
    return data[off], data[off + 1], data[off + 2]


def close_to(a: tuple[int, int, int], b: tuple[int, int, int], tolerance: int = 40) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


class SolidTrack(VideoStreamTrack):
    """A camera that films one colour at 30 fps; remembers when it started."""

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        self.rgb = rgb
        self.started_at: float | None = None
        self.frames = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        if self.started_at is None:
            self.started_at = time.monotonic()
        self.frames += 1
        # A new frame every time: aiortc's encoder marks a frame it was asked to make a
        # keyframe (pict_type I), so a reused frame would make every later one a keyframe.
        frame = solid_frame(self.rgb)
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


class PatternTrack(SolidTrack):
    """A camera filming a solid centre with moving stripes around it: frames of several
    packets that change every frame (SolidTrack's are one small packet)."""

    def __init__(self, rgb: tuple[int, int, int], width: int = 320, height: int = 240) -> None:
        super().__init__(rgb)
        self.width, self.height = width, height
        self._row = bytes(rgb) * width
        self._noise = random.Random(7).randbytes(width * 3 * height * 2)

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        if self.started_at is None:
            self.started_at = time.monotonic()
        self.frames += 1
        w, h, n = self.width, self.height, self.frames
        band, stride = h // 4, w * 3
        rows = []
        for y in range(h):
            if band <= y < h - band:
                rows.append(self._row)
            else:
                off = ((y + n * 3) % h) * stride + (n * 5) % stride
                rows.append(self._noise[off : off + stride])
        frame = av.VideoFrame(w, h, "rgb24")
        plane = frame.planes[0]
        pad = b"\x00" * (plane.line_size - w * 3)
        plane.update(b"".join(r + pad for r in rows))
        frame = frame.reformat(format="yuv420p")
        frame.pts = pts
        frame.time_base = fractions.Fraction(time_base.numerator, time_base.denominator)
        return frame


def inject_send_loss(pc: RTCPeerConnection, rate: float, seed: int = 1) -> list[int]:
    """Drop `rate` of the RTP packets (media and retransmissions, not RTCP) `pc` sends,
    at random; returns a one-item list counting the drops."""
    rng = random.Random(seed)
    transport = pc.getTransceivers()[0].sender.transport
    original = transport._send_rtp
    dropped = [0]

    async def lossy(data: bytes) -> None:
        if not 192 <= data[1] <= 223 and rng.random() < rate:
            dropped[0] += 1
            return
        await original(data)

    transport._send_rtp = lossy
    return dropped


class Client:
    """A caller or agent page: sendonly (its track) + recvonly (the other track)."""

    def __init__(
        self,
        role: str,
        rgb: tuple[int, int, int] | None,
        *,
        send: bool = True,
        recv: bool = True,
    ) -> None:
        self.role = role
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = SolidTrack(rgb) if rgb is not None else None
        self.frames = 0
        self.first_frame_at: float | None = None
        self.last_rgb: tuple[int, int, int] | None = None
        self.remote_tracks: list[MediaStreamTrack] = []
        self._tasks: list[asyncio.Task[None]] = []
        if send:
            self.pc.addTransceiver(self.track or "video", direction="sendonly")
        if recv:
            self.pc.addTransceiver("video", direction="recvonly")
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        self.remote_tracks.append(track)
        self._tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        # Keep reading: aiortc's remote track queue is unbounded.
        try:
            while True:
                frame = await track.recv()
                assert isinstance(frame, av.VideoFrame)
                if self.first_frame_at is None:
                    self.first_frame_at = time.monotonic()
                self.frames += 1
                if self.frames % 5 == 1:
                    self.last_rgb = center_rgb(frame)
        except MediaStreamError:
            pass

    async def connect(self, room: MediaRoom, participant_id: str, pc_id: int) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        answer = await room.handle_offer(
            participant_id, self.role, pc_id, self.pc.localDescription.sdp
        )
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def wait_frames(self, count: int, limit_s: float) -> float:
        """Wait for `count` more decoded frames; returns the seconds it took."""
        start = time.monotonic()
        target = self.frames + count
        await wait_for(lambda: self.frames >= target, limit_s, f"{count} frames at {self.role}")
        return time.monotonic() - start

    async def close(self) -> None:
        await self.pc.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wait_for(cond: Callable[[], bool], limit_s: float, what: str) -> None:
    deadline = time.monotonic() + limit_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.01)


class EventLog:
    def __init__(self) -> None:
        self.events: list[MediaEvent] = []

    def __call__(self, event: MediaEvent) -> None:
        self.events.append(event)

    def has(self, participant_id: str, kind: str, value: str) -> bool:
        return MediaEvent(participant_id, kind, value) in self.events
