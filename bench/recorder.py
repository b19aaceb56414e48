"""Recording cost: our recorder (mux + encrypt + store) next to aiortc's MediaRecorder.

Same input, same run: a VP8 stream (640x480, 30 fps, ~0.5 Mbit/s, a panning texture so
every frame changes) is encoded once up front. Then, each measured by the process CPU time
(all threads) it costs divided by the seconds of video it handles:

- ours: recorder.participant.RecorderParticipant takes the *encoded* frames (as the relay
  hands them to it), muxes them into WebM in memory, encrypts each segment (STREAM
  AES-256-GCM), writes it to the spool (fsync) and the uploader links it into a
  LocalStorage directory on the same filesystem (a copy across filesystems) and deletes
  the spool's name. Everything a real recording
  does except the network.
- aiortc's MediaRecorder: it only takes decoded frames and always re-encodes (libvpx for
  WebM). "with decode" feeds it the same packets decoded by a VP8 decoder, as aiortc's
  receiver would; "encode only" feeds it frames decoded beforehand.

Both run as fast as they can; cores per stream = CPU seconds / media seconds, i.e. what one
real-time stream costs. Encryption throughput: SegmentWriter against raw AES-GCM over the
same 64 KiB chunks (bench/encrypt.py), best of 3.

    python bench/recorder.py [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import av  # noqa: E402
from aiortc.contrib.media import MediaRecorder  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402

from bench.encrypt import raw_aesgcm_seconds, segment_writer_seconds  # noqa: E402
from bench.lib import cli  # noqa: E402
from bench.lib.recording import local_spool, memory_keyring  # noqa: E402
from bench.lib.stats import ratio  # noqa: E402
from bench.lib.usage import spent  # noqa: E402
from recorder.crypto import DEFAULT_CHUNK_SIZE, new_recording  # noqa: E402
from recorder.participant import RecorderParticipant  # noqa: E402

WIDTH, HEIGHT, FPS = 640, 480, 30
CLOCK = 90000
Packet = tuple[bytes, int, bool]  # data, pts (1/90000), keyframe


def make_input(seconds: float, keyframe_every_s: float) -> list[Packet]:
    """Encode a camera-like scene: a blocky random texture (8x8 px cells) panning 3 px per
    frame, so every frame changes but the encoder can still predict it (~0.5 Mbit/s)."""
    enc: Any = av.CodecContext.create("libvpx", "w")
    enc.width, enc.height, enc.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    enc.time_base = fractions.Fraction(1, FPS)
    enc.bit_rate = 1_000_000
    enc.options = {"deadline": "realtime", "cpu-used": "8", "kf-max-dist": "100000"}
    cell, big_w = 8, WIDTH * 2
    cells = os.urandom((big_w // cell) * (HEIGHT // cell))
    texture = [bytes(v for v in cells[r * (big_w // cell) : (r + 1) * (big_w // cell)]
                     for _ in range(cell))  # fmt: skip
               for r in range(HEIGHT // cell)]
    luma = b"".join(row for row in texture for _ in range(cell))
    out: list[Packet] = []
    count = int(seconds * FPS)
    kf_every = max(1, int(keyframe_every_s * FPS))
    for i in range(count):
        frame = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        shift = (i * 3) % WIDTH
        y = frame.planes[0]
        y.update(b"".join(luma[r * big_w + shift : r * big_w + shift + WIDTH] +
                          b"\0" * (y.line_size - WIDTH) for r in range(HEIGHT)))  # fmt: skip
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * (plane.line_size * (HEIGHT // 2)))
        frame.pts = i
        frame.pict_type = av.video.frame.PictureType.I if i % kf_every == 0 else (
            av.video.frame.PictureType.NONE)  # fmt: skip
        for p in enc.encode(frame):
            out.append((bytes(p), i * (CLOCK // FPS), bool(p.is_keyframe)))
    for p in enc.encode(None):
        out.append((bytes(p), len(out) * (CLOCK // FPS), bool(p.is_keyframe)))
    return out


class PacketTrack:
    """The relay's subscriber for the recorder: hands out the prepared packets."""

    def __init__(self, packets: list[Packet]) -> None:
        self._packets = iter(packets)
        self.frames_dropped = 0
        self.queued = 0
        self.readyState = "live"

    async def recv(self) -> av.Packet:
        try:
            data, pts, _ = next(self._packets)
        except StopIteration:
            raise MediaStreamError from None
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = fractions.Fraction(1, CLOCK)
        return packet

    def stop(self) -> None:
        self.readyState = "ended"


class Source:
    def __init__(self, packets: list[Packet]) -> None:
        self.packets = packets

    def subscribe(self) -> PacketTrack:
        return PacketTrack(self.packets)

    def request_keyframe(self) -> None:
        pass  # the input already has a keyframe at every segment boundary


async def run_ours(packets: list[Packet], segment_s: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-rec-") as tmp:
        ring = memory_keyring()
        spool = await local_spool(Path(tmp))
        with spent() as cost:
            recorder = RecorderParticipant(Source(packets), new_recording(ring), spool,
                                           segment_s=segment_s)  # fmt: skip
            await recorder.start()
            summary = await recorder.wait()
            await spool.drain()
        await spool.stop()
        stored = sum(p.stat().st_size for p in (Path(tmp) / "store").rglob("*") if p.is_file())
    assert summary.complete and summary.frames == len(packets), summary
    return {
        "cpu_s": cost.cpu_s,
        "wall_s": cost.wall_s,
        "segments": summary.segments,
        "stored_bytes": stored,
    }


class FrameTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, packets: list[Packet] | None, frames: list[av.VideoFrame] | None) -> None:
        super().__init__()
        self._packets = iter(packets or [])
        self._frames = iter(frames) if frames is not None else None
        self._decoder: Any = av.CodecContext.create("vp8", "r")
        self._pending: list[av.VideoFrame] = []
        self.count = 0
        self.done = asyncio.Event()

    async def recv(self) -> av.VideoFrame:
        if self._frames is not None:
            frame = next(self._frames, None)
        else:
            while not self._pending:
                item = next(self._packets, None)
                if item is None:
                    break
                self._pending = list(self._decoder.decode(av.Packet(item[0])))
            frame = self._pending.pop(0) if self._pending else None
        if frame is None:
            self.done.set()
            raise MediaStreamError
        frame.pts = self.count
        frame.time_base = fractions.Fraction(1, FPS)
        self.count += 1
        return frame


async def run_mediarecorder(
    packets: list[Packet], frames: list[av.VideoFrame] | None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-mr-") as tmp:
        track = FrameTrack(None if frames is not None else packets, frames)
        rec = MediaRecorder(str(Path(tmp) / "out.webm"))
        rec.addTrack(track)
        with spent() as cost:
            await rec.start()
            await track.done.wait()
            await rec.stop()
        size = (Path(tmp) / "out.webm").stat().st_size
    return {"cpu_s": cost.cpu_s, "wall_s": cost.wall_s, "frames": track.count,
            "stored_bytes": size}  # fmt: skip


def encryption(mb: int) -> tuple[float, float]:
    data = os.urandom(mb * 1024 * 1024)
    writer = min(segment_writer_seconds(data, 16384) for _ in range(3))
    raw = min(raw_aesgcm_seconds(data, DEFAULT_CHUNK_SIZE) for _ in range(3))
    return len(data) / 1e6 / writer, len(data) / 1e6 / raw


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    packets = make_input(args.seconds, args.segment_s)
    media_s = len(packets) / FPS
    kbps = sum(len(p[0]) for p in packets) * 8 / media_s / 1000
    ours = [await run_ours(packets, args.segment_s) for _ in range(args.rounds)]
    ours_cpu = statistics.median(r["cpu_s"] for r in ours)
    mr = await run_mediarecorder(packets, None)
    decoder: Any = av.CodecContext.create("vp8", "r")
    decoded = [f for p in packets for f in decoder.decode(av.Packet(p[0]))]
    mr_enc = await run_mediarecorder(packets, decoded)
    del decoded
    enc_mb_s, raw_mb_s = encryption(args.encrypt_mb)
    ours_cores = ours_cpu / media_s
    mr_cores = mr["cpu_s"] / media_s
    mr_enc_cores = mr_enc["cpu_s"] / media_s
    return {
        "recorder_cores_per_stream": round(ours_cores, 5),
        "mediarecorder_cores_per_stream": round(mr_cores, 4),
        "ratio": ratio(mr_cores, ours_cores),
        "mediarecorder_encode_only_cores_per_stream": round(mr_enc_cores, 4),
        "ratio_encode_only": ratio(mr_enc_cores, ours_cores),
        "recorder_us_per_frame": round(ours_cpu / len(packets) * 1e6, 1),
        "encrypt_mb_s": round(enc_mb_s, 1),
        "raw_aesgcm_mb_s": round(raw_mb_s, 1),
        "input": {"seconds": round(media_s, 2), "frames": len(packets), "width": WIDTH,
                  "height": HEIGHT, "fps": FPS, "kbps": round(kbps)},  # fmt: skip
        "recorder": {"segments": ours[0]["segments"], "stored_bytes": ours[0]["stored_bytes"],
                     "cpu_s_rounds": [round(r["cpu_s"], 4) for r in ours]},  # fmt: skip
        "mediarecorder": {"cpu_s": round(mr["cpu_s"], 3), "frames": mr["frames"],
                          "stored_bytes": mr["stored_bytes"]},  # fmt: skip
    }


def summary(result: dict[str, Any]) -> str:
    i = result["input"]
    return "\n".join([
        f"input: {i['seconds']} s of VP8 {i['width']}x{i['height']} @ {i['fps']} fps, "
        f"{i['kbps']} kbit/s ({i['frames']} frames)",
        f"  ours (mux + encrypt + spool + store):  {result['recorder_cores_per_stream']:.5f} "
        f"cores/stream ({result['recorder_us_per_frame']} µs CPU per frame)",
        f"  aiortc MediaRecorder (decode+encode): {result['mediarecorder_cores_per_stream']:.4f}"
        f" cores/stream -> ratio {result['ratio']}x",
        f"  aiortc MediaRecorder (encode only):   "
        f"{result['mediarecorder_encode_only_cores_per_stream']:.4f} cores/stream -> ratio "
        f"{result['ratio_encode_only']}x",
        f"  encryption: SegmentWriter {result['encrypt_mb_s']} MB/s, raw AES-256-GCM "
        f"{result['raw_aesgcm_mb_s']} MB/s (one core)",
    ])  # fmt: skip


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of video")
    parser.add_argument("--segment-s", type=float, default=10.0, help="recorder segment length")
    parser.add_argument("--rounds", type=int, default=3, help="runs of ours (median)")
    parser.add_argument("--encrypt-mb", type=int, default=32, help="MiB for the AES-GCM part")
    args = parser.parse_args()
    cli.emit(asyncio.run(main_async(args)), args.json, summary)


if __name__ == "__main__":
    main()
