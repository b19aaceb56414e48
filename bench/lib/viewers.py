"""The forwarding cost of one more viewer (issue #19: supervisors and experts who join):
one room, the caller's camera (bench/capacity_parts/room.py CAMERA) forwarded to the agent
and to N extra receive-only legs (role `staff`, as a joined supervisor's camera leg), for
N = 0..viewers. The room (server.media.MediaRoom, the project's media path) runs in a
child process whose CPU alone is measured; the aiortc clients run here. Each extra
viewer is one more subscriber leg of the camera: the per-viewer cost is the slope of the
server's CPU over N, and every viewer's delivered frame rate is checked.

`bench/capacity.py --viewers N [--json]` runs it (one JSON object with --json).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from multiprocessing.connection import Connection
from typing import Any

from aiortc import RTCSessionDescription

from bench.lib.clips import make_clip
from bench.lib.media import MediaRoom, loopback, loopback_ice
from bench.lib.peers import ClipTrack, FrameCounter, client_peer
from bench.lib.usage import cpu_seconds, loadavg

WINDOW_S = 6.0


def _server(conn: Connection) -> None:
    """The child: one MediaRoom; offers come in on `conn`, answers go back."""

    async def main() -> None:
        loopback_ice()
        room = MediaRoom("viewers", loopback(), on_event=lambda ev: None)
        loop = asyncio.get_running_loop()
        while True:
            msg = await loop.run_in_executor(None, conn.recv)
            if msg is None:
                break
            pid, role, sdp = msg
            conn.send(await room.handle_offer(pid, role, 1, sdp))
        await room.close()

    asyncio.run(main())


async def _connect(conn: Connection, pid: str, role: str, pc: Any) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    loop = asyncio.get_running_loop()
    conn.send((pid, role, pc.localDescription.sdp))
    answer = await loop.run_in_executor(None, conn.recv)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


async def measure(
    viewers: int, camera: dict[str, int], window_s: float = WINDOW_S
) -> dict[str, Any]:
    loopback_ice()
    parent, child = mp.Pipe()
    proc = mp.get_context("spawn").Process(target=_server, args=(child,), daemon=True)
    proc.start()
    clip = make_clip(camera)
    peers: list[Any] = []
    try:
        caller = client_peer(True, ClipTrack(clip, camera["fps"], None), FrameCounter(False))
        peers.append(caller)
        await _connect(parent, "caller", "caller", caller)
        counters: list[FrameCounter] = []
        steps = []
        for n in range(viewers + 1):
            # Step n: the agent plus n extra viewers receive the camera.
            role, pid = ("agent", "agent") if n == 0 else ("staff", f"staff-supervisor-{n}-0")
            counter = FrameCounter(False)
            pc = client_peer(False, ClipTrack(clip[:1], 1, None), counter)
            peers.append(pc)
            await _connect(parent, pid, role, pc)
            counters.append(counter)
            await asyncio.sleep(2.0)  # connected, first keyframe through
            cpu0, t0 = cpu_seconds(proc.pid or 0), time.monotonic()
            frames0 = [len(c.frames) for c in counters]
            await asyncio.sleep(window_s)
            cpu1, t1 = cpu_seconds(proc.pid or 0), time.monotonic()
            fps = [
                round((len(c.frames) - f0) / (t1 - t0), 1)
                for c, f0 in zip(counters, frames0, strict=True)
            ]
            cpu = round(100 * (cpu1 - cpu0) / (t1 - t0), 2)
            steps.append({"viewers": n, "server_cpu_percent": cpu, "fps_each": fps})
            for c in counters:
                c.trim(time.monotonic() - 1)
        base = steps[0]["server_cpu_percent"]
        per = (steps[-1]["server_cpu_percent"] - base) / viewers if viewers else 0.0
        return {
            "bench": "viewers",
            "camera": {k: camera[k] for k in ("width", "height", "fps", "bitrate")},
            "viewers": viewers,
            "steps": steps,
            "server_cpu_percent_per_extra_viewer": round(per, 2),
            "min_fps": min(min(s["fps_each"]) for s in steps),
            "loadavg": loadavg(),
        }
    finally:
        for pc in peers:
            await pc.close()
        parent.send(None)
        proc.join(5)
        if proc.is_alive():
            proc.kill()
