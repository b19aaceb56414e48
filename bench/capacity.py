"""Capacity: server CPU, memory and added latency per room, against aiortc's own relay.

A room is the caller's camera (640x480, 30 fps, ~1 Mbps VP8) forwarded to the agent and
recorded, plus the agent's screen (1280x720, 5 fps, ~300 kbps) forwarded to the caller.
The same load runs, in one invocation, through

1. the baseline: aiortc's MediaRelay + MediaRecorder (decode once, re-encode for the
   agent, re-encode for the recording), the way aiortc's examples relay media;
2. the project's media path as shipped (server.media.MediaRoom: RTP-level forwarding,
   and the recorder participant when recorder/ is there);

each in its own server process. Clients are aiortc peers in two other processes
(callers, agents) on loopback, sending a clip encoded once with libvpx in a loop (aiortc
packetizes it; no encoding in the clients) and counting what arrives at the RTP level (no
decoding, except one keyframe per room to read the frame number drawn into the picture).

Measured per path, over a steady window: server CPU (user+system of the server process,
all threads) per room, memory (RSS growth / rooms), delivered frame rate and frame loss
of the camera at the agent, and the latency from the caller's sender handing a frame to
aiortc to the agent receiving its last packet (the two clients' own processing included:
an upper bound of what the server adds). Frames are matched by RTP timestamp, anchored
once per room by the frame number in the picture. Then rooms are added in steps until
fewer than 29 fps or 1% loss arrive (or the client processes, on the same 2 cores, are
the limit): the largest step that held is `max_rooms_per_process`.

    python bench/capacity.py [--quick] [--json] [--skip-baseline] [--max-rooms N]
                             [--soak SECONDS]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fractions
import hashlib
import json
import logging
import os
import random
import statistics
import struct
import sys
import tempfile
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

SELF = Path(__file__).resolve()
ROOT = SELF.parent.parent
sys.path[:0] = [str(ROOT)]

import av  # noqa: E402

log = logging.getLogger("capacity")

CAMERA = {"width": 640, "height": 480, "fps": 30, "bitrate": 1_000_000, "frames": 150}
SCREEN = {"width": 1280, "height": 720, "fps": 5, "bitrate": 300_000, "frames": 15}
CLOCK = 90000
HOLD_FPS = 29.0
HOLD_LOSS = 0.01
BAR_BITS = 10  # frame number drawn as blocks in the top-left corner
BAR_BLOCK = 32
HDR = struct.Struct("!BBHII")
TB = fractions.Fraction(1, CLOCK)


# --- the clips (encoded once, cached) -------------------------------------------------------


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


# --- JSON lines ---------------------------------------------------------------------------


async def send_json(writer: asyncio.StreamWriter, obj: Any) -> None:
    writer.write(json.dumps(obj).encode() + b"\n")
    await writer.drain()


async def read_json(reader: asyncio.StreamReader) -> Any:
    line = await reader.readline()
    if not line:
        raise ConnectionError("peer closed")
    return json.loads(line)


class RpcClient:
    """Requests with ids over one TCP connection (clients -> server: offers)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.task = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while True:
                msg = await read_json(self.reader)
                fut = self.pending.pop(msg["id"], None)
                if fut is not None and not fut.done():
                    if "error" in msg:
                        fut.set_exception(RuntimeError(msg["error"]))
                    else:
                        fut.set_result(msg["result"])

    async def call(self, **req: Any) -> Any:
        self.next_id += 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        await send_json(self.writer, {"id": self.next_id, **req})
        return await fut


async def serve_rpc(handler: Callable[[dict[str, Any]], Any]) -> int:
    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def one(msg: dict[str, Any]) -> None:
            try:
                result = await handler(msg)
                await send_json(writer, {"id": msg["id"], "result": result})
            except Exception as exc:
                log.exception("request failed")
                await send_json(writer, {"id": msg["id"], "error": repr(exc)})

        with contextlib.suppress(ConnectionError):
            while True:
                msg = await read_json(reader)
                asyncio.ensure_future(one(msg))

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    return int(server.sockets[0].getsockname()[1])


# --- server processes ---------------------------------------------------------------------


async def run_server_baseline() -> None:
    """aiortc MediaRelay + MediaRecorder, as aiortc's examples relay media."""
    import aioice.ice
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc import sdp as aiortc_sdp
    from aiortc.contrib.media import MediaRecorder, MediaRelay
    from aiortc.mediastreams import MediaStreamTrack

    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    relay = MediaRelay()
    tmp = Path(tempfile.mkdtemp(prefix="callassist-baseline-"))

    class Slot(MediaStreamTrack):
        """A stable track for a peer that connects before the source exists."""

        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.source: asyncio.Future[MediaStreamTrack] = (
                asyncio.get_running_loop().create_future()
            )
            self.relayed: MediaStreamTrack | None = None

        async def recv(self) -> Any:
            if self.relayed is None:
                self.relayed = relay.subscribe(await self.source)
            return await self.relayed.recv()

    rooms: dict[str, dict[str, Any]] = {}

    def room(name: str) -> dict[str, Any]:
        if name not in rooms:
            rooms[name] = {"camera": Slot(), "screen": Slot(), "pcs": [], "recorder": None}
        return rooms[name]

    async def handle(msg: dict[str, Any]) -> Any:
        if msg["op"] != "offer":
            return {"rooms": len(rooms)}
        r = room(msg["room"])
        role = msg["role"]
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        r["pcs"].append(pc)
        publishes, receives = ("camera", "screen") if role == "caller" else ("screen", "camera")

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if not r[publishes].source.done():
                r[publishes].source.set_result(track)
            if publishes == "camera":
                recorder = MediaRecorder(str(tmp / f"{msg['room']}.webm"))
                recorder.addTrack(relay.subscribe(track))
                r["recorder"] = recorder
                asyncio.ensure_future(recorder.start())

        await pc.setRemoteDescription(RTCSessionDescription(sdp=msg["sdp"], type="offer"))
        # The client's receive-only m-section gets the other side's (relayed) track.
        offer = aiortc_sdp.SessionDescription.parse(msg["sdp"])
        for media, t in zip(offer.media, pc.getTransceivers(), strict=False):
            if media.kind == "video" and media.direction == "recvonly":
                t.sender.replaceTrack(r[receives])
                t.direction = "sendonly"
        await pc.setLocalDescription(await pc.createAnswer())
        return pc.localDescription.sdp

    port = await serve_rpc(handle)
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()


async def run_server_project(with_recorder: bool) -> None:
    """server.media.MediaRoom per room (+ the recorder participant, if it is there)."""
    from server.config import MediaConfig
    from server.media.peers import MediaRoom

    config = MediaConfig(ice_host_addresses=["127.0.0.1"])
    rooms: dict[str, MediaRoom] = {}
    recorders: dict[str, Any] = {}
    recorder_status = "off"
    make_recorder: Callable[[MediaRoom], Any] | None = None
    if with_recorder:
        try:
            from recorder.crypto import new_recording
            from recorder.keys import MasterKeyring
            from recorder.participant import RecorderParticipant
            from recorder.spool import Spool
            from recorder.storage import LocalStorage

            tmp = Path(tempfile.mkdtemp(prefix="callassist-rec-"))
            ring = MasterKeyring.from_directory(tmp / "keys")
            spool = Spool(tmp / "spool", LocalStorage(tmp / "store"))
            await spool.start()

            def make_recorder(room: MediaRoom) -> Any:
                return RecorderParticipant(
                    room.tracks["camera"], new_recording(ring), spool, codec=config.codec
                )

            recorder_status = "included"
        except Exception as exc:  # recorder/ missing or broken: measured without it
            recorder_status = f"unavailable: {type(exc).__name__}: {exc}"

    # Memory diagnosis: CAPACITY_TRACEMALLOC=1 (or "top") in the environment, then the
    # "tracemalloc" request returns (or prints) the largest growth since the last one.
    snapshots: list[Any] = []
    if os.environ.get("CAPACITY_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start(5)

    async def handle(msg: dict[str, Any]) -> Any:
        if msg["op"] == "tracemalloc":  # debugging memory: top growth since the last call
            import tracemalloc

            if not tracemalloc.is_tracing():
                tracemalloc.start(5)
            snap = tracemalloc.take_snapshot()
            top = []
            if os.environ.get("CAPACITY_TRACEMALLOC") == "top":
                for st in snap.statistics("lineno")[:12]:
                    print(st, file=sys.stderr)
            if snapshots:
                stats = snap.compare_to(snapshots[-1], "traceback")[:8]
                top = [[str(s.size_diff), *s.traceback.format()[-6:]] for s in stats]
            snapshots[:] = [snap]
            return top
        if msg["op"] == "summary":
            out: dict[str, Any] = {"recorder": recorder_status}
            if recorders:
                recorded = [r.stats.frames_received for r in recorders.values()]
                out["recorder_frames_received"] = sum(recorded)
                out["recorder_segments"] = sum(r.stats.segments for r in recorders.values())
                out["recorder_frames_lost"] = sum(r.stats.frames_lost for r in recorders.values())
            return out
        name = msg["room"]
        room = rooms.get(name)
        if room is None:
            room = rooms[name] = MediaRoom(name, config, on_event=lambda e: None)
            if make_recorder is not None:
                rec = recorders[name] = make_recorder(room)
                await rec.start()
        return await room.handle_offer(msg["participant"], msg["role"], 1, msg["sdp"])

    port = await serve_rpc(handle)
    print(json.dumps({"port": port}), flush=True)
    await asyncio.Event().wait()


# --- client processes -----------------------------------------------------------------------


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


def clip_track(clip: list[bytes], fps: int, sent: Sent | None) -> Any:
    from aiortc.mediastreams import MediaStreamTrack

    class ClipTrack(MediaStreamTrack):
        """Pre-encoded frames at `fps`; a keyframe request restarts the clip (frame 0 is
        its keyframe)."""

        kind = "video"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.pos = 0
            self.start: float | None = None

        def keyframe(self) -> None:
            self.pos = 0

        async def recv(self) -> av.Packet:
            now = time.monotonic()
            if self.start is None:
                self.start = now
            due = self.start + self.n / fps
            if due > now:
                await asyncio.sleep(due - now)
            elif now - due > 1.0:  # stalled: do not burst to catch up
                self.start = now - self.n / fps
            packet = av.Packet(clip[self.pos])
            packet.pts = self.n * (CLOCK // fps)
            packet.time_base = TB
            if sent is not None:
                sent.add(self.pos, time.monotonic())
            self.n += 1
            self.pos = (self.pos + 1) % len(clip)
            return packet

    return ClipTrack()


class FrameCounter:
    """Counts complete VP8 frames at the RTP level (an rtp_hooks tap: no jitter buffer, no
    decoding); decodes the first keyframe once to read the frame number in the picture."""

    def __init__(self, anchor: bool) -> None:
        self.frames: list[tuple[int, float]] = []  # (rtp timestamp, arrival)
        self.packets = 0
        self.media_pt: int | None = None
        self._ts: int | None = None
        self._first = 0
        self._count = 0
        self._start = False
        self._parts: list[bytes] = []
        self.want_anchor = anchor
        self.anchor: tuple[int, int, float] | None = None  # (rtp ts, clip position, arrival)

    async def __call__(self, data: bytes, arrival_ms: int) -> None:
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
            self._parts = []
        self._count += 1
        if self.want_anchor:
            pos = off + 1
            if d0 & 0x80:
                x = data[pos]
                pos += 1
                if x & 0x80:
                    pos += 2 if data[pos] & 0x80 else 1
                pos += bool(x & 0x40) + bool(x & 0x30)
            self._parts.append(data[pos:end])
        if b1 & 0x80 and self._start and self._count == ((seq - self._first) & 0xFFFF) + 1:
            self.frames.append((ts, t))
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

    def trim(self, before: float) -> None:
        self.frames = [f for f in self.frames if f[1] >= before]


async def run_clients(role: str, port: int) -> None:
    """role "callers" (publish the camera, receive the screen) or "agents" (the reverse).
    Commands on stdin, one JSON object a line; answers on stdout."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    from server.media import aiortc_hooks, rtp_hooks

    aiortc_hooks.install(["127.0.0.1"])
    camera, screen = make_clip(CAMERA), make_clip(SCREEN)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rpc = RpcClient(reader, writer)
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    rooms: dict[str, dict[str, Any]] = {}
    caller = role == "callers"

    async def add(name: str) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        sent = Sent() if caller else None
        track = clip_track(camera if caller else screen, CAMERA["fps"] if caller else 5, sent)
        counter = FrameCounter(anchor=not caller)
        # docs/protocol.md: the caller's send transceiver first, the agent's receive first
        if caller:
            send_t = pc.addTransceiver(track, direction="sendonly")
            recv_t = pc.addTransceiver("video", direction="recvonly")
        else:
            recv_t = pc.addTransceiver("video", direction="recvonly")
            send_t = pc.addTransceiver(track, direction="sendonly")
        for t in (send_t, recv_t):
            prefs = [
                c
                for c in t.sender.getCapabilities("video").codecs
                if c.mimeType in ("video/VP8", "video/rtx")
            ]
            t.setCodecPreferences(prefs)
        aiortc_hooks.on_keyframe_request(send_t.sender, track.keyframe)
        rtp_hooks.tap_rtp(recv_t.receiver, counter)
        await pc.setLocalDescription(await pc.createOffer())
        answer = await rpc.call(
            op="offer",
            room=name,
            participant=role[:-1],
            role=role[:-1],
            sdp=pc.localDescription.sdp,
        )
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
        rooms[name] = {"pc": pc, "sent": sent, "counter": counter, "track": track}

    async def command(msg: dict[str, Any]) -> Any:
        op = msg["op"]
        if op == "add":
            await asyncio.gather(*(add(n) for n in msg["rooms"]))
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if all(r["pc"].connectionState == "connected" for r in rooms.values()):
                    break
                await asyncio.sleep(0.05)
            return {
                "connected": sum(r["pc"].connectionState == "connected" for r in rooms.values())
            }
        if op == "anchors":
            return {n: r["counter"].anchor for n, r in rooms.items() if r["counter"].anchor}
        if op == "sent":
            t0, t1 = msg["since"], msg["until"]
            names = msg.get("rooms") or list(rooms)
            return {n: rooms[n]["sent"].between(t0, t1) for n in names if n in rooms}
        if op == "frames":
            t0, t1 = msg["since"], msg["until"]
            out = {n: r["counter"].between(t0, t1) for n, r in rooms.items()}
            for r in rooms.values():
                r["counter"].trim(t1 - 5)
            return out
        if op == "close":
            await asyncio.gather(*(r["pc"].close() for r in rooms.values()))
            return {}
        raise ValueError(op)

    while True:
        line = await stdin.readline()
        if not line:
            break
        msg = json.loads(line)
        result = await command(msg)
        sys.stdout.write(json.dumps({"id": msg["id"], "result": result}) + "\n")
        sys.stdout.flush()
        if msg["op"] == "close":
            break


# --- the orchestrator -----------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / _TICK, int(fields[12]) / _TICK


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class Proc:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.next_id = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    @classmethod
    async def start(cls, *args: str) -> Proc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(SELF),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        return cls(proc)

    async def line(self) -> Any:
        assert self.proc.stdout is not None
        raw = await self.proc.stdout.readline()
        if not raw:
            raise RuntimeError(f"process {self.pid} exited ({self.proc.returncode})")
        return json.loads(raw)

    async def call(self, **msg: Any) -> Any:
        assert self.proc.stdin is not None
        self.next_id += 1
        self.proc.stdin.write(json.dumps({"id": self.next_id, **msg}).encode() + b"\n")
        await self.proc.stdin.drain()
        reply = await self.line()
        return reply["result"]

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class Run:
    """One server process (one path) with its two client processes."""

    def __init__(self, label: str, server_args: list[str]) -> None:
        self.label = label
        self.server_args = server_args
        self.rooms = 0
        self.offsets: dict[str, int] = {}  # room -> agent rtp ts - 3000 * caller frame
        self.info: dict[str, Any] = {}

    async def __aenter__(self) -> Run:
        self.server = await Proc.start("--role", "server", *self.server_args)
        self.info = await self.server.line()
        port = str(self.info["port"])
        self.callers = await Proc.start("--role", "callers", "--port", port)
        self.agents = await Proc.start("--role", "agents", "--port", port)
        await asyncio.sleep(1.0)
        self.base_rss = rss_mb(self.server.pid)
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for p in (self.callers, self.agents):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.call(op="close"), 10)
        for p in (self.callers, self.agents, self.server):
            await p.stop()

    async def grow(self, rooms: int) -> None:
        names = [f"r{i}" for i in range(self.rooms, rooms)]
        # Agents first, as in the product (the agent waits for the caller's camera).
        for i in range(0, len(names), 10):
            await self.agents.call(op="add", rooms=names[i : i + 10])
            await self.callers.call(op="add", rooms=names[i : i + 10])
        self.rooms = rooms

    async def calibrate(self) -> None:
        anchors = await self.agents.call(op="anchors")
        todo = {n: a for n, a in anchors.items() if n not in self.offsets}
        if not todo:
            return
        t0 = min(a[2] for a in todo.values()) - 5
        sent = await self.callers.call(
            op="sent", since=t0, until=time.monotonic(), rooms=list(todo)
        )
        for name, (ts, pos, arrival) in todo.items():
            cands = [n for n, p, t in sent.get(name, []) if p == pos and t <= arrival]
            if cands:
                self.offsets[name] = (ts - 3000 * max(cands)) & 0xFFFFFFFF

    async def measure(self, warmup: float, window: float) -> dict[str, Any]:
        await asyncio.sleep(warmup)
        await self.calibrate()
        pids = {"server": self.server.pid, "callers": self.callers.pid, "agents": self.agents.pid}
        s0 = cpu_times(self.server.pid)
        c0 = {k: cpu_seconds(p) for k, p in pids.items()}
        t0 = time.monotonic()
        await asyncio.sleep(window)
        t1 = time.monotonic()
        c1 = {k: cpu_seconds(p) for k, p in pids.items()}
        s1 = cpu_times(self.server.pid)
        rss = rss_mb(self.server.pid)
        await asyncio.sleep(0.5)
        frames = await self.agents.call(op="frames", since=t0, until=t1 + 0.5)
        sent = await self.callers.call(op="sent", since=t0 - 2, until=t1)
        cores = {k: (c1[k] - c0[k]) / (t1 - t0) for k in pids}
        latencies: list[float] = []
        fps: list[float] = []
        expected = delivered = 0
        for name, got in frames.items():
            fps.append(sum(1 for _, t in got if t <= t1) / (t1 - t0))
            off = self.offsets.get(name)
            table = {n: t for n, _, t in sent.get(name, [])}
            want = {n for n, t in table.items() if t0 <= t <= t1 - 0.3}
            if off is None:
                continue
            have = set()
            for ts, t in got:
                d = (ts - off) & 0xFFFFFFFF
                # The baseline's frames can be a few ms off: MediaRecorder's encoder rebases
                # the shared VideoFrame's pts to its own time base before the agent's does.
                n = (d + 1500) // 3000
                if abs(d - n * 3000) > 450:
                    continue
                have.add(n)
                if n in table and t0 <= t <= t1:
                    latencies.append((t - table[n]) * 1000)
            expected += len(want)
            delivered += len(want & have)
        loss = 1 - delivered / expected if expected else float("nan")
        return {
            "rooms": self.rooms,
            "window_s": round(t1 - t0, 2),
            "server_cores": round(cores["server"], 4),
            "server_user_system": [round((s1[i] - s0[i]) / (t1 - t0), 4) for i in (0, 1)],
            "cores_per_room": round(cores["server"] / self.rooms, 4),
            "client_cores": {
                "callers": round(cores["callers"], 3),
                "agents": round(cores["agents"], 3),
            },
            "server_rss_mb": round(rss, 1),
            "mem_mb_per_room": round((rss - self.base_rss) / self.rooms, 2),
            "fps_mean": round(statistics.fmean(fps), 2) if fps else 0.0,
            "fps_min": round(min(fps), 2) if fps else 0.0,
            "loss": round(loss, 5),
            "latency_ms": {
                "p50": round(percentile(latencies, 0.5), 2),
                "p95": round(percentile(latencies, 0.95), 2),
                "p99": round(percentile(latencies, 0.99), 2),
                "samples": len(latencies),
            },
            "anchored_rooms": len(self.offsets),
        }


def holds(m: dict[str, Any]) -> bool:
    return m["fps_mean"] >= HOLD_FPS and m["loss"] < HOLD_LOSS


async def run_baseline(quick: bool) -> dict[str, Any]:
    async with Run("baseline", ["--server", "baseline"]) as run:
        await run.grow(1)
        m = await run.measure(warmup=3 if quick else 4, window=5 if quick else 10)
        return {"measure": m}


def project_args(recorder: bool) -> list[str]:
    args = ["--server", "project"]
    if not recorder:
        args.append("--no-recorder")
    return args


async def run_project(
    quick: bool,
    args: list[str],
    max_rooms: int,
    deadline: float,
    profile: str | None,
) -> dict[str, Any]:
    async with Run("project", args) as run:
        first = 4 if quick else 10
        await run.grow(first)
        spy = None
        if profile:
            fmt = {".json": "speedscope", ".txt": "raw"}.get(Path(profile).suffix, "flamegraph")
            exe = Path(sys.executable).with_name("py-spy")
            spy_exe = str(exe) if exe.exists() else "py-spy"
            spy = await asyncio.create_subprocess_exec(
                spy_exe, "record", "--pid", str(run.server.pid), "--duration", "14",
                "--rate", "1000", "--format", fmt,
                "-o", profile, "--nonblocking",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        main = await run.measure(warmup=3 if quick else 4, window=5 if quick else 10)
        if spy is not None:
            await spy.wait()
        steps = [main]
        step = 4 if quick else 10
        limit = "max_rooms"
        while run.rooms + step <= max_rooms:
            if time.monotonic() > deadline:
                limit = "time"
                break
            last = steps[-1]
            if not holds(last):
                limit = "fps/loss"
                break
            if max(last["client_cores"].values()) > 0.9:
                limit = "client processes"
                break
            if last["server_cores"] > 0.95:
                limit = "server process (one core)"
                break
            await run.grow(run.rooms + step)
            steps.append(await run.measure(warmup=2, window=4 if quick else 6))
        held = [s["rooms"] for s in steps if holds(s)]
        reader, writer = await asyncio.open_connection("127.0.0.1", run.info["port"])
        rpc = RpcClient(reader, writer)
        info = await rpc.call(op="summary")
        writer.close()
        return {
            "measure": main,
            "steps": steps,
            "max_rooms_per_process": max(held) if held else 0,
            "stopped_by": limit if held and max(held) == steps[-1]["rooms"] else "fps/loss",
            "server": info,
        }


async def run_soak(args: list[str], seconds: float, rooms: int) -> dict[str, Any]:
    async with Run("soak", args) as run:
        await run.grow(rooms)
        samples = []
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            await asyncio.sleep(min(30.0, seconds / 10))
            samples.append((round(time.monotonic() - start, 1), round(rss_mb(run.server.pid), 1)))
        m = await run.measure(warmup=0, window=5)
        first, last = samples[len(samples) // 4], samples[-1]
        growth = (last[1] - first[1]) / max(1e-9, (last[0] - first[0]) / 60) / rooms
        return {
            "rooms": rooms,
            "seconds": seconds,
            "rss_mb": samples,
            "base_rss_mb": round(run.base_rss, 1),
            "mem_mb_per_room": round((samples[-1][1] - run.base_rss) / rooms, 2),
            "growth_mb_per_room_per_min": round(growth, 4),
            "final": m,
        }


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


async def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    camera, screen = make_clip(CAMERA), make_clip(SCREEN)  # before the clocks start
    out: dict[str, Any] = {
        "load_before": loadavg(),
        "clips": {
            "camera_kbps": round(clip_bitrate(camera, CAMERA["fps"]) / 1000),
            "screen_kbps": round(clip_bitrate(screen, SCREEN["fps"]) / 1000),
        },
    }
    if args.soak:
        out["soak"] = await run_soak(project_args(not args.no_recorder), args.soak, args.soak_rooms)
        out["load_after"] = loadavg()
        return out
    if not args.skip_baseline:
        out["baseline"] = await run_baseline(args.quick)
    budget = 75 if args.quick else 170
    out["project"] = await run_project(
        args.quick,
        project_args(not args.no_recorder),
        args.max_rooms,
        started + budget - 20,
        args.profile,
    )
    out["load_after"] = loadavg()
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    return out


def summary_json(result: dict[str, Any]) -> dict[str, Any]:
    p = result["project"]
    pm = p["measure"]
    obj: dict[str, Any] = {
        "baseline": None,
        "project": {
            "cores_per_room": pm["cores_per_room"],
            "mem_mb_per_room": pm["mem_mb_per_room"],
            "p95_added_latency_ms": pm["latency_ms"]["p95"],
            "max_rooms_per_process": p["max_rooms_per_process"],
            "rooms_per_core": round(1 / max(pm["cores_per_room"], 1e-9), 1),
            "rooms_measured": pm["rooms"],
            "fps": pm["fps_mean"],
            "loss": pm["loss"],
            "recorder": p["server"].get("recorder"),
            "stopped_by": p["stopped_by"],
        },
        "ratio": None,
        "load": {"before": result["load_before"], "after": result["load_after"]},
        "elapsed_s": result.get("elapsed_s"),
    }
    if "baseline" in result:
        bm = result["baseline"]["measure"]
        obj["baseline"] = {
            "cores_per_room": bm["cores_per_room"],
            "mem_mb_per_room": bm["mem_mb_per_room"],
            "p95_added_latency_ms": bm["latency_ms"]["p95"],
            "fps": bm["fps_mean"],
            "loss": bm["loss"],
            "rooms_measured": bm["rooms"],
        }
        obj["ratio"] = round(bm["cores_per_room"] / max(pm["cores_per_room"], 1e-9), 1)
    return obj


def table(result: dict[str, Any]) -> str:
    rows = [("path", "rooms", "cores/room", "MB/room", "fps", "loss %", "p50 ms", "p95 ms")]

    def row(label: str, m: dict[str, Any]) -> None:
        rows.append(
            (
                label,
                str(m["rooms"]),
                f"{m['cores_per_room']:.4f}",
                f"{m['mem_mb_per_room']:.2f}",
                f"{m['fps_mean']:.1f}",
                f"{m['loss'] * 100:.2f}",
                f"{m['latency_ms']['p50']:.1f}",
                f"{m['latency_ms']['p95']:.1f}",
            )
        )

    if "baseline" in result:
        row("baseline (MediaRelay+MediaRecorder)", result["baseline"]["measure"])
    p = result["project"]
    for i, m in enumerate(p["steps"]):
        row(
            f"project (recorder {p['server'].get('recorder', '?')[:8]})" if i == 0 else "  ramp",
            m,
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    s = summary_json(result)
    lines.append("")
    if s["ratio"] is not None:
        lines.append(f"baseline/project CPU per room: {s['ratio']}x")
    lines.append(
        f"max rooms in one server process at >= {HOLD_FPS:.0f} fps and < 1% loss: "
        f"{p['max_rooms_per_process']} (stopped by: {p['stopped_by']})"
    )
    lines.append(f"load average before/after: {result['load_before']} / {result['load_after']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rooms, shorter windows")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--full", action="store_true", help="with --json: every measurement")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--max-rooms", type=int, default=120)
    parser.add_argument("--soak", type=float, default=0, help="memory soak for SECONDS")
    parser.add_argument("--soak-rooms", type=int, default=10)
    parser.add_argument("--profile", help="py-spy record the project server into this file")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-recorder", action="store_true", help="project room without it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
    if args.role == "server":
        if args.server == "baseline":
            asyncio.run(run_server_baseline())
        else:
            asyncio.run(run_server_project(not args.no_recorder))
        return
    if args.role in ("callers", "agents"):
        asyncio.run(run_clients(args.role, args.port))
        return
    result = asyncio.run(orchestrate(args))
    if args.json:
        obj = summary_json(result) if "soak" not in result else result
        if args.full:
            obj = {"summary": obj, "detail": result} if "soak" not in result else result
        print(json.dumps(obj))
    elif "soak" in result:
        print(json.dumps(result, indent=1))
    else:
        print(table(result))


if __name__ == "__main__":
    main()
