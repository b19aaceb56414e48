"""Recorder memory: RSS per room of N recorders in one process, over a soak (issue 18).

The recorder's part of a room without the network: N RoomTracks (server.media.relay), each
fed in real time with bench/capacity.py's camera clip (640x480, 30 fps, ~1 Mbps VP8,
encoded once; a keyframe request restarts the clip at its keyframe, as the capacity
clients do), each recorded by a RecorderParticipant into a spool that uploads into a
LocalStorage directory (10 s segments, as shipped). RSS of this process is sampled every
`--every` seconds; MB per room = (RSS - base) / rooms, the base being the RSS after one
warm-up recorder ran 15 s and stopped (what any first recorder loads once: FFmpeg's
muxer, the thread pool); `mem_mb_per_room_cold` counts from before that one.

Separate from `bench/capacity.py --soak` because that needs every room's ICE to last the
whole soak: on a loaded machine (load 20 on 2 cores) the clients' media stopped after
40 s to 3.5 min, and RSS is then flat because nothing is recorded. Here nothing can stall
but the recorder itself, and the run checks that every room kept recording (segments).

glibc's malloc can be tuned from the environment (`MALLOC_MMAP_THRESHOLD_=131072`): the
JSON records the value it ran with.

    python bench/recorder_memory.py [--rooms 10] [--seconds 600] [--every 30] [--json]
"""

from __future__ import annotations

import asyncio
import fractions
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

import av  # noqa: E402

from bench.capacity_parts.room import CAMERA  # noqa: E402
from bench.lib import cli  # noqa: E402
from bench.lib.clips import make_clip  # noqa: E402
from bench.lib.media import RoomTrack  # noqa: E402
from bench.lib.recording import local_spool, memory_keyring  # noqa: E402
from bench.lib.usage import loadavg, rss_mb  # noqa: E402
from recorder.crypto import new_recording  # noqa: E402
from recorder.participant import RecorderParticipant  # noqa: E402

TB = fractions.Fraction(1, 90000)


class Camera:
    """One room's caller: the clip in a loop at its frame rate, frame 0 when asked."""

    def __init__(self, track: RoomTrack, clip: list[bytes], offset: int) -> None:
        self.clip, self.pos, self.n = clip, offset % len(clip), 0
        self.restart = False
        self.upstream = track.attach_upstream(self._restart)

    def _restart(self) -> None:
        # Noted, done at the next frame: the recorder takes frames synchronously and asks
        # for a keyframe from inside push() (a segment cut); a restart done there would be
        # undone as push() moves on to the next position.
        self.restart = True

    def push(self) -> None:
        if self.restart:
            self.restart, self.pos = False, 0
        packet = av.Packet(self.clip[self.pos])
        packet.pts, packet.time_base = self.n * (90000 // CAMERA["fps"]), TB
        self.upstream.push(packet, self.pos == 0)
        self.n += 1
        self.pos = (self.pos + 1) % len(self.clip)


async def _run_one(clip: list[bytes], ring: Any, spool: Any, seconds: float,
                   segment_s: float) -> None:  # fmt: skip
    track = RoomTrack("camera", keyframe_min_interval_s=0.5)
    rec = RecorderParticipant(track, new_recording(ring), spool, segment_s=segment_s)
    await rec.start()
    cam = Camera(track, clip, 0)
    for n in range(int(seconds * CAMERA["fps"])):
        cam.push()
        await asyncio.sleep(1 / CAMERA["fps"] if n % 10 else 0.05)  # not paced exactly
    await rec.stop()


async def soak(rooms: int, seconds: float, every: float, segment_s: float) -> dict[str, Any]:
    clip = make_clip(CAMERA)
    pid = os.getpid()
    with tempfile.TemporaryDirectory(prefix="bench-recmem-") as tmp:
        ring = memory_keyring()
        spool = await local_spool(Path(tmp))
        await asyncio.sleep(0.5)
        cold = rss_mb(pid)
        # What the first recorder loads once (FFmpeg's muxer, the thread pool, caches) is
        # not per room: one warm-up recorder runs a segment and a half, then the base.
        await _run_one(clip, ring, spool, segment_s * 1.5, segment_s)
        await spool.drain(30)
        base = rss_mb(pid)
        recorders, cameras = [], []
        for i in range(rooms):
            track = RoomTrack("camera", keyframe_min_interval_s=0.5)
            rec = RecorderParticipant(track, new_recording(ring), spool, segment_s=segment_s)
            await rec.start()
            recorders.append(rec)
            cameras.append(Camera(track, clip, i * 7))
        start = time.monotonic()
        samples: list[tuple[float, float]] = []
        next_sample = start + every
        n = 0
        period = 1 / CAMERA["fps"]
        while (now := time.monotonic()) - start < seconds:
            for cam in cameras:
                cam.push()
            n += 1
            if now >= next_sample:
                samples.append((round(now - start, 1), round(rss_mb(pid), 1)))
                next_sample += every
            await asyncio.sleep(max(0.0, start + n * period - time.monotonic()))
        samples.append((round(time.monotonic() - start, 1), round(rss_mb(pid), 1)))
        summaries = [await r.stop() for r in recorders]
        await spool.drain(60)
        await spool.stop()
    quarter, last = samples[len(samples) // 4], samples[-1]
    minutes = max(1e-9, (last[0] - quarter[0]) / 60)
    return {
        "rooms": rooms,
        "seconds": seconds,
        "segment_s": segment_s,
        "malloc_mmap_threshold": os.environ.get("MALLOC_MMAP_THRESHOLD_"),
        "cold_rss_mb": round(cold, 1),
        "base_rss_mb": round(base, 1),
        "rss_mb": samples,
        "mem_mb_per_room": round((last[1] - base) / rooms, 2),
        "mem_mb_per_room_cold": round((last[1] - cold) / rooms, 2),
        "growth_mb_per_room_per_min": round((last[1] - quarter[1]) / minutes / rooms, 4),
        # every room kept recording: segments per room, frames lost (all rooms)
        "segments_per_room": sorted({s.segments for s in summaries}),
        "frames_per_room_min": min(s.frames for s in summaries),
        "frames_lost": sum(s.frames_lost for s in summaries),
        "frames_pushed_per_room": n,
    }


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=600)
    parser.add_argument("--every", type=float, default=30)
    parser.add_argument("--segment-s", type=float, default=10.0)
    args = parser.parse_args()
    cli.quiet_logs()
    load_before = loadavg()
    out = asyncio.run(soak(args.rooms, args.seconds, args.every, args.segment_s))
    out = {"load_before": load_before, **out, "load_after": loadavg()}
    if args.json:
        import json

        print(json.dumps(out))
    else:
        base = out["base_rss_mb"]
        for t, mb in out["rss_mb"]:
            print(f"{t:7.1f} s  {mb:7.1f} MB  {(mb - base) / args.rooms:6.2f} MB/room")
        print(f"{out['mem_mb_per_room']} MB per room "
              f"({out['mem_mb_per_room_cold']} counting the first room's one-time cost), "
              f"{out['growth_mb_per_room_per_min']} MB/room/min after the first quarter; "
              f"segments per room {out['segments_per_room']}, lost {out['frames_lost']}")


if __name__ == "__main__":
    main()
