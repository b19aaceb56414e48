"""One path measured: a server process with its two client processes (callers, agents),
rooms added in batches, then server CPU, memory, frame rate, loss and latency over a
window. Frames are matched by RTP timestamp, anchored once per room by the frame number
drawn into the picture."""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from pathlib import Path
from typing import Any

from bench.lib.rpc import Child
from bench.lib.stats import percentile
from bench.lib.usage import cpu_seconds, cpu_times, rss_mb

Anchor = tuple[int, int, float]  # the agent's first keyframe: (rtp ts, clip position, arrival)
Sent = tuple[int, int, float]  # a caller's frame: (frame number, clip position, time taken)

SCRIPT = Path(__file__).resolve().parent.parent / "capacity.py"  # every role is a process of it


def candidates(anchor: Anchor, sent: list[Sent]) -> list[int]:
    """The offsets (agent rtp ts - 3000 * caller frame) the anchor frame allows, latest
    send first. Its clip position is sent again at every keyframe request (the clip
    restarts) and every clip cycle: under load the latest send before its arrival need not
    be the one that arrived (a restart within the latency), so every send of it is a
    candidate and the window's frames pick (match_frames). A wrong pick shifts every frame
    by less than the latency: the latency figure is wrong, the loss hardly."""
    ts, pos, arrival = anchor
    ns = sorted((n for n, p, t in sent if p == pos and t <= arrival), reverse=True)
    return [(ts - 3000 * n) & 0xFFFFFFFF for n in ns]


def match_frames(
    frames: dict[str, list[tuple[int, float]]],
    sent: dict[str, list[Sent]],
    offsets: dict[str, list[int]],
    t0: float,
    t1: float,
) -> tuple[int, int, list[float], dict[str, dict[str, Any]]]:
    """Frames the callers sent in [t0, t1 - 0.3] (expected) and how many of them each
    room's agent got (delivered), by RTP timestamp with the room's best candidate offset;
    the latencies (ms); per room, why frames did not count (not anchored, off the
    3000-tick grid of its anchor, or on the grid but not a frame its caller sent)."""
    expected = delivered = 0
    latencies: list[float] = []
    per_room: dict[str, dict[str, Any]] = {}
    for name, got in frames.items():
        off = offsets.get(name)
        table = {n: t for n, _, t in sent.get(name, [])}
        want = {n for n, t in table.items() if t0 <= t <= t1 - 0.3}
        sent_n = table.keys()
        room = per_room[name] = {"frames": len(got), "anchored": bool(off)}
        if not off:
            continue
        matches = (_match(got, o, table, t0, t1) for o in off)
        # Most of the window's frames, then most frames that are any sent frame: a wrong
        # candidate shifted by less than the latency still covers the window.
        have, off_grid, lat = max(matches, key=lambda m: (len(m[0] & want), len(m[0] & sent_n)))
        latencies += lat
        expected += len(want)
        delivered += len(want & have)
        room.update(expected=len(want), matched=len(want & have), off_grid=off_grid,
                    candidates=len(off))  # fmt: skip
        if want and have and not want & have:  # how far off: frame numbers
            room.update(want=[min(want), max(want)], have=[min(have), max(have)])
    return expected, delivered, latencies, per_room


def _match(
    got: list[tuple[int, float]], off: int, table: dict[int, float], t0: float, t1: float
) -> tuple[set[int], int, list[float]]:
    """The caller's frame numbers of the agent's frames `got` for one anchor offset `off`,
    how many were off its 3000-tick grid, and the latencies (ms) of those in the window."""
    have: set[int] = set()
    off_grid = 0
    latencies: list[float] = []
    for ts, t in got:
        d = (ts - off) & 0xFFFFFFFF
        # The baseline's frames can be a few ms off: MediaRecorder's encoder rebases
        # the shared VideoFrame's pts to its own time base before the agent's does.
        n = (d + 1500) // 3000
        if abs(d - n * 3000) > 450:
            off_grid += 1
            continue
        have.add(n)
        if n in table and t0 <= t <= t1:
            latencies.append((t - table[n]) * 1000)
    return have, off_grid, latencies


class Run:
    """One server process (one path) with its two client processes."""

    def __init__(self, label: str, server_args: list[str]) -> None:
        self.label = label
        self.server_args = server_args
        self.rooms = 0
        # room -> candidates for (agent rtp ts - 3000 * caller frame), latest first
        self.offsets: dict[str, list[int]] = {}
        self.info: dict[str, Any] = {}

    async def __aenter__(self) -> Run:
        self.server = await Child.start(SCRIPT, "--role", "server", *self.server_args)
        self.info = await self.server.line()
        port = str(self.info["port"])
        self.callers = await Child.start(SCRIPT, "--role", "callers", "--port", port)
        self.agents = await Child.start(SCRIPT, "--role", "agents", "--port", port)
        await asyncio.sleep(1.0)
        self.base_rss = rss_mb(self.server.pid)
        return self

    def server_pids(self) -> list[int]:
        """The server's processes (bench/cluster.py: every node and worker)."""
        return [self.server.pid]

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
            cands = candidates((ts, pos, arrival), sent.get(name, []))
            if cands:
                self.offsets[name] = cands

    async def measure(self, warmup: float, window: float) -> dict[str, Any]:
        await asyncio.sleep(warmup)
        await self.calibrate()
        servers = self.server_pids()
        pids = {"callers": self.callers.pid, "agents": self.agents.pid}

        def server_times() -> tuple[float, float]:
            times = [cpu_times(p) for p in servers]
            return sum(t[0] for t in times), sum(t[1] for t in times)

        s0 = server_times()
        c0 = {k: cpu_seconds(p) for k, p in pids.items()}
        c0["server"] = sum(s0)
        t0 = time.monotonic()
        await asyncio.sleep(window)
        t1 = time.monotonic()
        c1 = {k: cpu_seconds(p) for k, p in pids.items()}
        s1 = server_times()
        c1["server"] = sum(s1)
        rss = sum(rss_mb(p) for p in servers)
        await asyncio.sleep(0.5)
        frames = await self.agents.call(op="frames", since=t0, until=t1 + 0.5)
        sent = await self.callers.call(op="sent", since=t0 - 2, until=t1)
        # the other end: the agent's screen (5 fps) as its caller gets it, counted
        screen = await self.callers.call(op="frames", since=t0, until=t1)
        screen_fps = [len(got) / (t1 - t0) for got in screen.values()]
        cores = {k: (c1[k] - c0[k]) / (t1 - t0) for k in c0}
        fps = [sum(1 for _, t in got if t <= t1) / (t1 - t0) for got in frames.values()]
        expected, delivered, latencies, per_room = match_frames(frames, sent, self.offsets, t0, t1)
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
            "screen_fps": round(statistics.fmean(screen_fps), 2) if screen_fps else 0.0,
            "latency_ms": {
                "p50": round(percentile(latencies, 0.5), 2),
                "p95": round(percentile(latencies, 0.95), 2),
                "p99": round(percentile(latencies, 0.99), 2),
                "samples": len(latencies),
            },
            "anchored_rooms": len(self.offsets),
            "per_room": per_room,
        }
