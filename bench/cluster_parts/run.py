"""A measured run against a running cluster: the capacity bench's `Run` (same clips,
same frame matching, same window), with the server being every node process (and their
workers) and the clients reaching the service through its public address."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.capacity_parts.measure import Run
from bench.capacity_parts.steps import ramp as ramp_steps
from bench.lib.procs import Cluster
from bench.lib.rpc import Child
from bench.lib.usage import rss_mb

SCRIPT = Path(__file__).resolve().parent.parent / "cluster.py"  # the clients' processes


def process_tree(pids: list[int]) -> list[int]:
    """`pids` and all their descendants (a node with --workers N: its worker processes)."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
    out, todo = [], list(pids)
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += [c for c, p in parent.items() if p == pid]
    return out


class ClusterRun(Run):
    def __init__(self, cluster: Cluster) -> None:
        super().__init__("cluster", [])
        self.cluster = cluster
        self.ids: dict[str, str] = {}  # room name -> session id

    async def __aenter__(self) -> ClusterRun:
        base = self.cluster.url
        self.callers = await Child.start(SCRIPT, "--role", "callers", "--base", base)
        self.agents = await Child.start(SCRIPT, "--role", "agents", "--base", base)
        await asyncio.sleep(1.0)
        self.base_rss = sum(rss_mb(p) for p in self.server_pids())
        return self

    async def __aexit__(self, *exc: Any) -> None:
        for p in (self.callers, self.agents):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(p.call(op="close"), 10)
        for p in (self.callers, self.agents):
            await p.stop()

    def server_pids(self) -> list[int]:
        return process_tree(self.cluster.pids())

    async def grow(self, rooms: int) -> None:
        names = [f"r{i}" for i in range(self.rooms, rooms)]
        # Agents first, as in the product (the agent waits for the caller's camera).
        for i in range(0, len(names), 10):
            made = await self.agents.call(op="add", rooms=names[i : i + 10])
            self.ids.update(made["ids"])
            await self.callers.call(op="add", rooms=names[i : i + 10], links=made["links"])
        self.rooms = rooms

    async def placement(self) -> dict[str, int]:
        """Rooms per node id, as the room -> node map in Redis says."""
        client = aioredis.Redis.from_url(self.cluster.redis.url, decode_responses=True)
        try:
            owners = [await client.get(f"callassist:room:{i}") for i in self.ids.values()]
        finally:
            await client.aclose()
        out: dict[str, int] = {}
        for node in owners:
            out[str(node)] = out.get(str(node), 0) + 1
        return dict(sorted(out.items()))


def brief(m: dict[str, Any]) -> dict[str, Any]:
    """A step's numbers in the JSON (the rest stays in the human summary)."""
    return {k: m[k] for k in ("rooms", "server_cores", "cores_per_room", "fps_mean", "loss",
                              "client_cores", "mem_mb_per_room", "anchored_rooms")}  # fmt: skip


async def ramp(run: ClusterRun, step: int, max_rooms: int, budget_s: float,
               warmup: float, window: float) -> dict[str, Any]:  # fmt: skip
    """Rooms added `step` at a time while a step holds (bench/capacity_parts/steps.py's
    ramp: the clients' processes, `max_rooms` or the time budget stop it too)."""
    deadline = time.monotonic() + budget_s
    await run.grow(min(step, max_rooms))
    steps = [await run.measure(warmup=warmup, window=window)]
    held, limit = await ramp_steps(run, steps, step, max_rooms, deadline,
                                   lambda: run.measure(warmup=warmup, window=window))  # fmt: skip
    return {"rooms": held, "stopped_by": limit, "steps": [brief(s) for s in steps]}
