"""aiortc client peers for load benches: a publisher sends a pre-encoded clip (nothing is
encoded in the client: bench/lib/wire_sender.py writes its RTP packets, or with
`sender="aiortc"` aiortc's RTCRtpSender packetizes it) and remembers when each frame left; a
subscriber counts complete VP8 frames at the RTP level (no jitter buffer, no decoding,
except one keyframe to read the frame number the clip draws into its pictures).

`client_peer` lays the peer out as docs/protocol.md asks of browsers, so the server under
test negotiates with it exactly as with a phone or the agent's console.
"""

from __future__ import annotations

import asyncio
import struct
import time
from array import array
from collections.abc import Awaitable, Callable

import av
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtptransceiver import RTCRtpTransceiver

from bench.lib.clips import CLOCK, TB, read_index
from bench.lib.media import aiortc_hooks, rtp_hooks
from bench.lib.wire_sender import WirePublisher

HDR = struct.Struct("!BBHII")  # RTP: V/P/X/CC, M/PT, sequence, timestamp, SSRC
# How a client sends its clip: "wire" (WirePublisher: packetized once, a buffer rewritten
# per packet) or "aiortc" (its RTCRtpSender, ~2x the client CPU: bench/capacity.py
# `--client-sender`). The server receives the same packets either way.
SENDERS = ("wire", "aiortc")


class Sent:
    """When the caller's sender took frame n (clip position pos)."""

    def __init__(self) -> None:
        self.times = array("d")
        self.positions = array("H")

    def add(self, pos: int, t: float) -> None:
        self.times.append(t)
        self.positions.append(pos)

    def between(self, t0: float, t1: float) -> list[tuple[int, int, float]]:
        return [(n, self.positions[n], t) for n, t in enumerate(self.times) if t0 <= t <= t1]


class ClipTrack(MediaStreamTrack):
    """Pre-encoded frames at `fps`; a keyframe request restarts the clip (frame 0 is its
    keyframe)."""

    kind = "video"

    def __init__(self, clip: list[bytes], fps: int, sent: Sent | None) -> None:
        super().__init__()
        self.clip, self.fps, self.sent = clip, fps, sent
        self.n = 0
        self.pos = 0
        self.keyframes = 0  # keyframe requests (each restarts the clip at its keyframe)
        self.start: float | None = None
        self.wire: WirePublisher | None = None  # when it is sent by one (add_clip_sender)

    def keyframe(self) -> None:
        self.pos = 0
        self.keyframes += 1

    async def recv(self) -> av.Packet:
        now = time.monotonic()
        if self.start is None:
            self.start = now
        due = self.start + self.n / self.fps
        if now - due > 1.0:  # stalled: do not burst to catch up
            self.start = now - self.n / self.fps
        # Always yield, as aiortc's own tracks do (`asyncio.sleep` of a negative wait): a
        # sender that is behind would otherwise packetize frame after frame in one task
        # step, and under CPU starvation (load ~20 on 2 cores) never give the event loop
        # back: no socket was read, the server's ICE consent checks went unanswered and
        # after 30 s it closed the callers' connections (the soak's media stopped, #18).
        await asyncio.sleep(max(0.0, due - now))
        packet = av.Packet(self.clip[self.pos])
        packet.pts = self.n * (CLOCK // self.fps)
        packet.time_base = TB
        if self.sent is not None:
            self.sent.add(self.pos, time.monotonic())
        self.n += 1
        self.pos = (self.pos + 1) % len(self.clip)
        return packet


class FrameCounter:
    """Counts complete VP8 frames at the RTP level (an rtp_hooks tap: no jitter buffer, no
    decoding); decodes the first keyframe once to read the frame number in the picture."""

    def __init__(self, anchor: bool) -> None:
        self.frames: list[tuple[int, float]] = []  # (rtp timestamp, arrival)
        self.keyframes: list[tuple[int, float]] = []  # the frames that are keyframes
        self.packets = 0
        self.media_pt: int | None = None
        self._ts: int | None = None
        self._first = 0
        self._count = 0
        self._start = False
        self._key = False
        self._parts: list[bytes] = []
        self.want_anchor = anchor
        self.anchor: tuple[int, int, float] | None = None  # (rtp ts, clip position, arrival)

    def __call__(self, data: bytes, arrival_ms: int) -> None:
        # Sync: rtp_hooks hands a sync tap each datagram straight from the socket (its
        # fast path), where an async one costs a queue, a task wake-up and a coroutine
        # per packet in the client process. The arrival time is read here (arrival_ms
        # is 0 on that path), as soon as the datagram is read.
        t = time.monotonic()
        b0, b1, seq, ts, _ = HDR.unpack_from(data)
        pt = b1 & 0x7F
        if self.media_pt is None:
            self.media_pt = pt
        if pt != self.media_pt:
            return  # retransmissions (not asked for here)
        self.packets += 1
        off = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            off += 4 + 4 * ((data[off + 2] << 8) | data[off + 3])
        end = len(data) - data[-1] if b0 & 0x20 else len(data)
        if off >= end:
            return
        d0 = data[off]
        if ts != self._ts:
            self._ts, self._first, self._count = ts, seq, 0
            self._start = d0 & 0x17 == 0x10
            self._key = False
            self._parts = []
        self._count += 1
        start = d0 & 0x17 == 0x10
        if self.want_anchor or start:  # the VP8 payload: past the payload descriptor
            pos = off + 1
            if d0 & 0x80:
                x = data[pos]
                pos += 1
                if x & 0x80:
                    pos += 2 if data[pos] & 0x80 else 1
                pos += bool(x & 0x40) + bool(x & 0x30)
            if start and pos < end:
                self._key = not data[pos] & 1  # the P bit of the frame tag: 0 = keyframe
            if self.want_anchor:
                self._parts.append(data[pos:end])
        if b1 & 0x80 and self._start and self._count == ((seq - self._first) & 0xFFFF) + 1:
            self.frames.append((ts, t))
            if self._key:
                self.keyframes.append((ts, t))
            if self.want_anchor and self._parts and not self._parts[0][0] & 1:
                self._read_anchor(ts, t)

    def _read_anchor(self, ts: int, t: float) -> None:
        try:
            decoder = av.CodecContext.create("libvpx", "r")
            frames = decoder.decode(av.Packet(b"".join(self._parts)))
        except av.FFmpegError:
            return
        for frame in frames:
            pos = read_index(frame)
            if pos is not None:
                self.anchor = (ts, pos, t)
                self.want_anchor = False
                self._parts = []

    def between(self, t0: float, t1: float) -> list[tuple[int, float]]:
        return [(ts, t) for ts, t in self.frames if t0 <= t <= t1]

    def keyframes_between(self, t0: float, t1: float) -> list[int]:
        return [ts for ts, t in self.keyframes if t0 <= t <= t1]

    def trim(self, before: float) -> None:
        self.frames = [f for f in self.frames if f[1] >= before]
        self.keyframes = [f for f in self.keyframes if f[1] >= before]


Tap = Callable[[bytes, int], Awaitable[None] | None]


def vp8_only(t: RTCRtpTransceiver) -> None:
    prefs = [
        c
        for c in t.sender.getCapabilities("video").codecs
        if c.mimeType in ("video/VP8", "video/rtx")
    ]
    t.setCodecPreferences(prefs)


def add_clip_sender(pc: RTCPeerConnection, track: ClipTrack, sender: str) -> RTCRtpTransceiver:
    """A sendonly VP8 transceiver sending `track`'s clip (`sender`: one of SENDERS); a
    keyframe request (PLI/FIR) restarts the clip at its keyframe either way."""
    if sender not in SENDERS:
        raise ValueError(f"sender must be one of {SENDERS}, not {sender!r}")
    if sender == "wire":
        wire = WirePublisher(track)
        t = pc.addTransceiver(wire.carrier, direction="sendonly")
        wire.bind(t)
        track.wire = wire
    else:
        t = pc.addTransceiver(track, direction="sendonly")
        aiortc_hooks.on_keyframe_request(t.sender, track.keyframe)
    vp8_only(t)
    return t


def client_peer(
    publisher: bool, track: ClipTrack, counter: Tap, sender: str = "wire"
) -> RTCPeerConnection:
    """A caller (`publisher`: sends the camera, receives the screen) or an agent (receives
    the camera first, sends the screen), VP8 only, counting what it receives with
    `counter`; the track restarts its clip when the server asks for a keyframe."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    # docs/protocol.md: the caller's send transceiver first, the agent's receive first
    if publisher:
        add_clip_sender(pc, track, sender)
        recv_t = pc.addTransceiver("video", direction="recvonly")
    else:
        recv_t = pc.addTransceiver("video", direction="recvonly")
        add_clip_sender(pc, track, sender)
    vp8_only(recv_t)
    rtp_hooks.tap_rtp(recv_t.receiver, counter)
    return pc
