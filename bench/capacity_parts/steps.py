"""What a capacity run does, in order: the baseline (one room: it cannot hold more), the
project's path ramped up until a step no longer holds (or the clients, the server's one
core, the room limit or the time budget stop it), or instead a memory soak."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.capacity_parts.measure import Run
from bench.capacity_parts.room import CAMERA, SCREEN, holds
from bench.lib import janus_server
from bench.lib.clips import clip_bitrate, make_clip
from bench.lib.rpc import RpcClient
from bench.lib.usage import loadavg, rss_mb, udp_errors


async def run_baseline(quick: bool) -> dict[str, Any]:
    async with Run("baseline", ["--server", "baseline"]) as run:
        await run.grow(1)
        m = await run.measure(warmup=3 if quick else 4, window=5 if quick else 10)
        return {"measure": m}


def project_args(
    forwarding: str | None, recorder: bool, event_loop: str | None = None,
    send_batching: bool = True,
) -> list[str]:  # fmt: skip
    args = ["--server", "project"]
    if not send_batching:
        args.append("--no-send-batching")
    if forwarding:
        args += ["--forwarding", forwarding]
    if event_loop:
        args += ["--event-loop", event_loop]
    if not recorder:
        args.append("--no-recorder")
    return args


# The full run's ramp after its first 10 rooms: 10 more, then 20 at a time, so that it
# reaches 80 rooms (issue 18's latency goal) and the limit beyond in its time budget.
RAMP_ROOMS = [20, 40, 60, 80, 100, 120, 140, 160]
RAMP_AT = 80  # the summary's p95_added_latency_ms_at_80


def next_rooms(rooms: int, step: int | list[int]) -> int | None:
    """The next step's room count: `step` more, or the next of a list of room counts."""
    if isinstance(step, int):
        return rooms + step
    return next((r for r in step if r > rooms), None)


async def ramp(
    run: Run,
    steps: list[dict[str, Any]],
    step: int | list[int],
    max_rooms: int,
    deadline: float,
    measure: Callable[[], Awaitable[dict[str, Any]]],
    server_core_limit: float | None = None,
) -> tuple[int, str]:
    """Rooms added after the measured `steps` (appended to), `step` at a time or up to
    each room count of a list in turn, while the last step holds (>= 29 fps, < 1% loss),
    until the client processes (on the same cores), the server's core
    (`server_core_limit`), `max_rooms` or `deadline` stop it. Returns the most rooms a
    step held and what stopped the ramp ("fps/loss" when the last step did not hold).
    bench/capacity.py and bench/cluster.py both ramp with it."""
    limit = "max_rooms"
    while (rooms := next_rooms(run.rooms, step)) is not None and rooms <= max_rooms:
        last = steps[-1]
        if time.monotonic() > deadline:
            limit = "time"
            break
        if not holds(last):
            limit = "fps/loss"
            break
        if max(last["client_cores"].values()) > 0.9:
            limit = "client processes"
            break
        if server_core_limit is not None and last["server_cores"] > server_core_limit:
            limit = "server process (one core)"
            break
        await run.grow(rooms)
        steps.append(await measure())
    held = [s["rooms"] for s in steps if holds(s)]
    if not held or steps[-1]["rooms"] != max(held):
        limit = "fps/loss"
    return (max(held) if held else 0), limit


async def run_project(
    quick: bool,
    args: list[str],
    max_rooms: int,
    deadline: float,
    profile: str | None,
) -> dict[str, Any]:
    async with Run("project", args) as run:
        first = min(4 if quick else 10, max_rooms)
        await run.grow(first)
        spy = None
        if profile and Path(profile).suffix == ".perf":
            # perf's software clock: CPU time only (py-spy also samples a thread waiting
            # in fsync), split into kernel, uvloop, libav, libsrtp and the interpreter
            spy = await asyncio.create_subprocess_exec(
                "perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p",
                str(run.server.pid), "-o", profile, "--", "sleep", "14",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
        elif profile:
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
        # 3 s for the new rooms' first keyframes and anchors; 6 s of 30 fps from 80 rooms
        # is 14,000 latency samples for the p95
        held, limit = await ramp(run, steps, 4 if quick else RAMP_ROOMS, max_rooms, deadline,
                                 lambda: run.measure(warmup=3, window=4 if quick else 6),
                                 server_core_limit=0.95)  # fmt: skip
        rpc = await RpcClient.connect(run.info["port"])
        info = await rpc.call(op="summary")
        rpc.close()
        return {
            "measure": main,
            "steps": steps,
            "max_rooms_per_process": held,
            "stopped_by": limit,
            "server": info,
        }


async def run_soak(args: list[str], seconds: float, rooms: int) -> dict[str, Any]:
    """RSS sampled every 30 s (or a tenth of `seconds`) with the frames each agent
    received since the sample before: a flat RSS only counts while media flows, so every
    sample says whether it did and, if not, why (`samples`: t, RSS, camera fps at the
    agents (mean, min over the rooms), screen fps at the callers, the recorder's frames,
    peer connection states, consent expiries, loop lag, keyframe requests, UDP receive
    errors; bench/capacity.py's docstring)."""
    async with Run("soak", args) as run:
        await run.grow(rooms)
        samples: list[dict[str, Any]] = []
        start = time.monotonic()
        rpc = await RpcClient.connect(run.info["port"])
        clients = {"callers": run.callers, "agents": run.agents}
        prev = time.monotonic()
        while time.monotonic() - start < seconds:
            await asyncio.sleep(min(30.0, seconds / 10))
            now = time.monotonic()
            rss = rss_mb(run.server.pid)
            frames = await run.agents.call(op="frames", since=prev, until=now)
            screen = await run.callers.call(op="frames", since=prev, until=now)
            info = await rpc.call(op="summary")
            peers = {k: await c.call(op="states") for k, c in clients.items()}
            fps = [len(got) / (now - prev) for got in frames.values()] or [0.0]
            samples.append({
                "t": round(now - start, 1),
                "rss_mb": round(rss, 1),
                "fps_mean": round(sum(fps) / len(fps), 2),
                "fps_min": round(min(fps), 2),
                "screen_fps": round(sum(len(g) for g in screen.values())
                                    / max(1, len(screen)) / (now - prev), 2),
                "recorder_frames": info.get("recorder_frames_received"),
                # peer connections by state at each end, and how many ICE connections
                # lost consent so far (RFC 7675) in the server and each client process
                "peer_states": {k: p["states"] for k, p in peers.items()},
                "consent_expired": {"server": len(info.get("consent_expired", [])),
                                    **{k: len(p["consent_expired"]) for k, p in peers.items()}},
                # the clips' keyframe requests (each restarts a clip at its keyframe)
                # and frames sent so far, all rooms of each client process
                "keyframe_requests": {k: p["keyframe_requests"] for k, p in peers.items()},
                "frames_sent": {k: p["frames_sent"] for k, p in peers.items()},
                # UDP datagrams the kernel dropped so far (full socket buffers): a lost
                # consent answer need not be a late one
                "udp_errors": udp_errors(),
                # each process's longest event-loop lag since the sample before (s)
                "loop_lag_max_s": {"server": info.get("loop_lag_max_s"),
                                   **{k: p["loop_lag_max_s"] for k, p in peers.items()}},
            })  # fmt: skip
            prev = now
        info = await rpc.call(op="summary")
        rpc.close()
        m = await run.measure(warmup=0, window=5)
        first, last = samples[len(samples) // 4], samples[-1]
        minutes = max(1e-9, (last["t"] - first["t"]) / 60)
        growth = (last["rss_mb"] - first["rss_mb"]) / minutes / rooms
        return {
            "rooms": rooms,
            "seconds": seconds,
            "rss_mb": [(s["t"], s["rss_mb"]) for s in samples],
            "samples": samples,
            "base_rss_mb": round(run.base_rss, 1),
            "mem_mb_per_room": round((last["rss_mb"] - run.base_rss) / rooms, 2),
            "growth_mb_per_room_per_min": round(growth, 4),
            "final": m,
            # the server's peer connections that ended: [s after the rooms, room,
            # participant, state]
            "server_pc_ended": [[round(t - start, 1), *rest] for t, *rest in info["pc_ended"]],
        }


async def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    # Janus when installed (scripts/test.sh installs it); --peer janus insists, up front.
    with_janus = args.peer == "janus" or (args.peer == "auto" and janus_server.available())
    if with_janus and not janus_server.available():
        raise SystemExit("--peer janus: janus is not installed (apt-get install janus)")
    sender = getattr(args, "client_sender", "wire")
    Run.client_args = ["--client-loop", getattr(args, "client_loop", "uvloop"),
                       "--client-sender", sender]  # fmt: skip
    Run.timing = (getattr(args, "warmup", None), getattr(args, "window", None))
    camera, screen = make_clip(CAMERA), make_clip(SCREEN)  # before the clocks start
    out: dict[str, Any] = {
        "load_before": loadavg(),
        "client_sender": sender,
        "clips": {
            "camera_kbps": round(clip_bitrate(camera, CAMERA["fps"]) / 1000),
            "screen_kbps": round(clip_bitrate(screen, SCREEN["fps"]) / 1000),
        },
    }
    batching = not args.no_send_batching  # media.send_batching of the project's server
    if args.soak:
        out["soak"] = await run_soak(
            project_args(args.forwarding, not args.no_recorder, args.event_loop, batching),
            args.soak,
            args.soak_rooms,
        )
        out["load_after"] = loadavg()
        return out
    if not args.skip_baseline:
        out["baseline"] = await run_baseline(args.quick)
    # the full run: the baseline (~20 s), 10 rooms, then the ramp to 80 and beyond
    budget = 75 if args.quick else 300
    out["project"] = await run_project(
        args.quick,
        project_args(args.forwarding, not args.no_recorder, args.event_loop, batching),
        args.max_rooms,
        started + budget - 20,
        args.profile,
    )
    if with_janus:
        from bench.capacity_parts.janus import compare

        out["janus"] = await compare(
            args.quick,
            {
                "recorded": project_args(args.forwarding, True, args.event_loop, batching),
                "forwarding": project_args(args.forwarding, False, args.event_loop, batching),
            },
            args.max_rooms,
        )
    out["load_after"] = loadavg()
    out["elapsed_s"] = round(time.monotonic() - started, 1)
    return out
