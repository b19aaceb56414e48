"""One path measured: a server process with its two client processes (callers, agents),
rooms added in batches, then server CPU, memory, frame rate, loss and latency over a
window. Frames are matched by RTP timestamp, anchored once per room by the frame number
drawn into the picture."""

from __future__ import annotations

import asyncio
import contextlib
import functools
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
    restarts: the server asks when a subscriber joins, the recorder at every 10 s segment)
    and every clip cycle, so every send of it before the anchor's arrival is a candidate
    and the window's frames pick (match_frames). A wrong pick shifts every frame by a
    multiple of the frame interval: the latency figure is wrong, the loss hardly."""
    ts, pos, arrival = anchor
    ns = sorted((n for n, p, t in sent if p == pos and t <= arrival), reverse=True)
    return [(ts - 3000 * n) & 0xFFFFFFFF for n in ns]


def match_frames(
    frames: dict[str, list[tuple[int, float]]],
    sent: dict[str, list[Sent]],
    offsets: dict[str, list[int]],
    t0: float,
    t1: float,
    keys: dict[str, list[int]] | None = None,
    key_positions: frozenset[int] = frozenset({0}),
) -> tuple[int, int, list[float], dict[str, dict[str, Any]]]:
    """Frames the callers sent in [t0, t1 - 0.3] (expected) and how many of them each
    room's agent got (delivered), by RTP timestamp with the room's best candidate offset
    (`choose`); the latencies (ms); per room, why frames did not count (not anchored, off
    the 3000-tick grid of its anchor, or on the grid but not a frame its caller sent) and
    the choice: the chosen candidate's shift from the latest send (frames), its p50, and
    every candidate's score. `keys`: the RTP timestamps of the keyframes each agent got,
    when the server forwards the caller's frames as they are (not the baseline's
    re-encoding), and the clip positions that are keyframes."""
    expected = delivered = 0
    latencies: list[float] = []
    per_room: dict[str, dict[str, Any]] = {}
    for name, got in frames.items():
        off = offsets.get(name)
        rows = sent.get(name, [])
        table = {n: t for n, _, t in rows}
        positions = {n: p for n, p, _ in rows}
        want = {n for n, t in table.items() if t0 <= t <= t1 - 0.3}
        room = per_room[name] = {"frames": len(got), "anchored": bool(off)}
        if not off:
            continue
        room_keys = None if keys is None else keys.get(name, [])
        scored = [_score(_match(got, o, table, t0, t1), want, positions, o, room_keys,
                         key_positions)
                  for o in off]  # fmt: skip
        best = choose(scored)
        # what the tie-break before it chose (evidence in the detail: its p50)
        old = max(range(len(off)), key=lambda i: (scored[i]["matched"],
                                                  len(scored[i]["match"][0] & table.keys())))
        have, off_grid, lat = scored[best]["match"]
        latencies += lat
        expected += len(want)
        delivered += len(want & have)
        room.update(expected=len(want), matched=len(want & have), off_grid=off_grid,
                    candidates=len(off), chosen=best, old_choice=old,
                    p50=round(percentile(lat, 0.5), 2),
                    # [shift from the latest send in frames, window frames matched,
                    #  keyframes off clip position 0, negative latencies, p50 ms]
                    scores=[[((o - off[0]) & 0xFFFFFFFF) // 3000, c["matched"],
                             c["bad_keys"], c["negative"], round(c["p50"], 1)]
                            for o, c in zip(off, scored, strict=True)])  # fmt: skip
        if want and have and not want & have:  # how far off: frame numbers
            room.update(want=[min(want), max(want)], have=[min(have), max(have)])
    return expected, delivered, latencies, per_room


def _score(
    match: tuple[set[int], int, list[float]],
    want: set[int],
    positions: dict[int, int],
    off: int,
    keys: list[int] | None,
    key_positions: frozenset[int],
) -> dict[str, Any]:
    have, _, lat = match
    bad_keys = 0
    for ts in keys or ():
        # The clip's keyframes are at fixed positions (0, and where libvpx put one): a
        # candidate that maps a keyframe the agent got onto a caller's frame at any other
        # position is the wrong one.
        n = (((ts - off) & 0xFFFFFFFF) + 1500) // 3000
        if n in positions and positions[n] not in key_positions:
            bad_keys += 1
    return {
        "match": match,
        "matched": len(have & want),
        "bad_keys": bad_keys,
        # A frame cannot arrive before it was sent (one clock: CLOCK_MONOTONIC is the
        # machine's, shared by the client processes).
        "negative": sum(1 for x in lat if x < 0),
        "p50": percentile(lat, 0.5) if lat else float("inf"),
    }


def choose(scored: list[dict[str, Any]]) -> int:
    """The candidate that matches most of the window's frames; among those (a restart a
    few frames apart matches as many), the one whose keyframes fall on the clip's
    keyframe, then one without impossible (negative) latencies, then the lowest latency:
    the later of two sends of a position that both explain the frames. Comparing how many
    frames are any sent frame instead (the old tie-break) preferred the earlier send: the
    frames that arrive after the window map onto sent frames only when shifted back, so a
    restart 6 frames after the anchor's send added 200 ms to every frame of the room."""
    top = max(c["matched"] for c in scored)
    # a frame or two at the window's edges is no difference
    near = [i for i, c in enumerate(scored) if c["matched"] >= top - 3]
    return min(near, key=lambda i: (scored[i]["bad_keys"], scored[i]["negative"] > 0,
                                    scored[i]["p50"]))  # fmt: skip


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



@functools.cache
def clip_keyframes() -> frozenset[int]:
    """The camera clip's keyframe positions (the clip is cached on disk: no encoding)."""
    from bench.capacity_parts.room import CAMERA
    from bench.lib.clips import make_clip

    return frozenset(i for i, f in enumerate(make_clip(CAMERA)) if not f[0] & 1)


class Run:
    """One server process (one path) with its two client processes."""

    # for every client process of the run (orchestrate: `--client-loop`)
    client_args: list[str] = []
    # (warmup, window) for every measurement instead of its own (orchestrate: `--warmup`,
    # `--window`; None: the measurement's)
    timing: tuple[float | None, float | None] = (None, None)

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
        extra = self.client_args
        self.callers = await Child.start(SCRIPT, "--role", "callers", "--port", port, *extra)
        self.agents = await Child.start(SCRIPT, "--role", "agents", "--port", port, *extra)
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
        warmup = warmup if self.timing[0] is None else self.timing[0]
        window = window if self.timing[1] is None else self.timing[1]
        await asyncio.sleep(warmup)
        await self.calibrate()
        servers = self.server_pids()
        pids = {"callers": self.callers.pid, "agents": self.agents.pid}

        def server_times() -> tuple[float, float]:
            times = [cpu_times(p) for p in servers]
            return sum(t[0] for t in times), sum(t[1] for t in times)

        k0 = (await self.callers.call(op="states"))["keyframe_requests"]
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
        k1 = (await self.callers.call(op="states"))["keyframe_requests"]
        await asyncio.sleep(0.5)
        # the baseline re-encodes: its keyframes are its encoder's, not the clip's
        keys = None
        if self.label != "baseline":  # before "frames", which trims what came before
            keys = await self.agents.call(op="keyframes", since=t0, until=t1 + 0.5)
        frames = await self.agents.call(op="frames", since=t0, until=t1 + 0.5)
        sent = await self.callers.call(op="sent", since=t0 - 2, until=t1)
        # the other end: the agent's screen (5 fps) as its caller gets it, counted
        screen = await self.callers.call(op="frames", since=t0, until=t1)
        screen_fps = [len(got) / (t1 - t0) for got in screen.values()]
        cores = {k: (c1[k] - c0[k]) / (t1 - t0) for k in c0}
        fps = [sum(1 for _, t in got if t <= t1) / (t1 - t0) for got in frames.values()]
        expected, delivered, latencies, per_room = match_frames(
            frames, sent, self.offsets, t0, t1, keys, clip_keyframes()
        )
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
            # keyframe requests the callers' clips got (each restarts a clip at its
            # keyframe, several times a delta frame's bytes), per room and second
            "keyframe_requests_per_room_s": round((k1 - k0) / self.rooms / (t1 - t0), 3),
            "anchored_rooms": len(self.offsets),
            "per_room": per_room,
        }
