"""The ops console across nodes: every node publishes its ops snapshot to Redis, any node
reads them all and merges them into one view.

Each node's OpsMonitor (server/observe/ops.py) samples its own rooms once a second; the
publisher takes each snapshot as an ops stream subscriber does and writes it to
`callassist:ops:node:<node id>` with a TTL (OPS_TTL_S), and the node's id to the set
`callassist:ops:nodes`. A reader gets every node's snapshot and `merge()` (pure) makes one
snapshot of the same shape as a node's (docs/ops.md): every room tagged with its `node`,
totals summed, a `nodes` list with each node's own numbers, nodes whose snapshot expired
or is older than `max_age_s` dropped (and listed in `stale_nodes`). Only what may be lost
is in Redis: after a Redis restart the next second's snapshots rebuild it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

NODES_KEY = "callassist:ops:nodes"
NODE_PREFIX = "callassist:ops:node:"
OPS_TTL_S = 5
MAX_AGE_S = 3.0
# Totals that add up across nodes; the others (cpu, memory, loop lag) are per node.
SUMMED = ("rooms", "rooms_active", "rooms_waiting", "participants", "in_kbps", "out_kbps")


# --- pure ------------------------------------------------------------------------------


def entry(node_id: str, snap: Mapping[str, Any], published_at: float) -> dict[str, Any]:
    """What one node publishes: its public snapshot, its id and when (epoch seconds)."""
    public = {k: v for k, v in snap.items() if not k.startswith("_")}
    return {**public, "node": node_id, "published_at": published_at}


def merge(
    entries: Mapping[str, Mapping[str, Any] | None], now: float, max_age_s: float = MAX_AGE_S
) -> dict[str, Any]:
    """One ops snapshot from every node's entry (None: its key expired)."""
    live = {
        node: e
        for node, e in entries.items()
        if e is not None and now - float(e.get("published_at", 0)) <= max_age_s
    }
    stale = sorted(set(entries) - set(live))
    rooms: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    totals: dict[str, Any] = dict.fromkeys(SUMMED, 0)
    nodes = []
    recording = {"state": "off", "rooms": 0, "spool_bytes": 0, "spool_over_limit": False}
    for node in sorted(live):
        e = live[node]
        rooms += [{**room, "node": node} for room in e.get("rooms", [])]
        warnings += [{**w, "node": node} for w in e.get("warnings", [])]
        node_totals = e.get("totals", {})
        for key in SUMMED:
            totals[key] += node_totals.get(key, 0)
        rec = e.get("recording", {})
        recording["rooms"] += rec.get("rooms", 0)
        recording["spool_bytes"] += rec.get("spool_bytes", 0)
        recording["spool_over_limit"] |= bool(rec.get("spool_over_limit"))
        if rec.get("mode"):
            recording["mode"] = rec["mode"]
        nodes.append(
            {
                "node": node,
                "at": e.get("at"),
                "age_s": round(max(0.0, now - float(e["published_at"])), 1),
                "totals": node_totals,
                "webhooks": e.get("webhooks", {}),
                "recording": rec,
            }
        )
    for key in ("in_kbps", "out_kbps"):
        totals[key] = round(totals[key], 1)
    recording["state"] = "recording" if recording["rooms"] else "off"
    rooms.sort(key=lambda r: (r.get("created_at") or "", r["node"]))
    newest = max(live.values(), key=lambda e: float(e["published_at"]), default=None)
    return {
        "type": "snapshot",
        "at": newest.get("at") if newest else None,
        "totals": totals,
        # The database is shared: every node's today's numbers are the same (the newest).
        "today": newest.get("today") if newest else None,
        "recording": recording,
        "warnings": warnings,
        "rooms": rooms,
        "nodes": nodes,
        "stale_nodes": stale,
    }


# --- I/O -----------------------------------------------------------------------------------


class OpsFeed:
    def __init__(self, client: aioredis.Redis, node_id: str, ttl_s: int = OPS_TTL_S) -> None:
        self.client = client
        self.node_id = node_id
        self.ttl_s = ttl_s
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def publish(self, snap: Mapping[str, Any], now: float | None = None) -> None:
        data = json.dumps(
            entry(self.node_id, snap, time.time() if now is None else now),
            separators=(",", ":"),
            ensure_ascii=False,
        )
        async with self.client.pipeline(transaction=True) as pipe:
            pipe.set(NODE_PREFIX + self.node_id, data, ex=self.ttl_s)
            pipe.sadd(NODES_KEY, self.node_id)
            await pipe.execute()

    async def entries(self) -> dict[str, dict[str, Any] | None]:
        """Every listed node's entry (None: expired; such nodes leave the list)."""
        members = sorted(m.decode() for m in await self.client.smembers(NODES_KEY))
        if not members:
            return {}
        values = await self.client.mget([NODE_PREFIX + m for m in members])
        out: dict[str, dict[str, Any] | None] = {}
        gone = []
        for node, raw in zip(members, values, strict=True):
            if raw is None:
                gone.append(node)
                out[node] = None
                continue
            try:
                out[node] = json.loads(raw)
            except ValueError:
                log.warning("ops feed: node %s published something unreadable", node)
                out[node] = None
        if gone:
            await self.client.srem(NODES_KEY, *gone)
        return out

    async def view(self, now: float | None = None, max_age_s: float = MAX_AGE_S) -> dict[str, Any]:
        return merge(await self.entries(), time.time() if now is None else now, max_age_s)

    async def cached_view(self, max_age_s: float = 0.5) -> dict[str, Any]:
        """view(), read from Redis at most every `max_age_s` whatever the number of open
        ops pages (each stream asks once a second)."""
        mono = time.monotonic()
        if self._cached is None or mono - self._cached[0] > max_age_s:
            self._cached = (mono, await self.view())
        return self._cached[1]

    async def withdraw(self) -> None:
        """This node stops (its rooms are gone): out of the view now, not after the TTL."""
        await self.client.delete(NODE_PREFIX + self.node_id)
        await self.client.srem(NODES_KEY, self.node_id)


class Snapshots(Protocol):
    """What the publisher needs of server.observe.ops.OpsMonitor."""

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]: ...

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None: ...


async def run_publisher(feed: OpsFeed, monitor: Snapshots) -> None:
    """Publish every snapshot the monitor makes (about one a second) until cancelled;
    Redis errors are logged once per outage, and publishing goes on when it is back."""
    queue = monitor.subscribe()
    failing = False
    try:
        while True:
            snap = await queue.get()
            if snap is None:
                return  # the server shuts down
            try:
                await feed.publish(snap)
            except (RedisError, OSError) as exc:
                if not failing:
                    log.warning("ops feed: cannot publish to Redis (%s)", type(exc).__name__)
                failing = True
                continue
            if failing:
                log.info("ops feed: publishing to Redis again")
                failing = False
    finally:
        monitor.unsubscribe(queue)


def setup(app: web.Application, client: aioredis.Redis, node_id: str, monitor: Snapshots) -> None:
    """Publish this node's snapshots while the app runs (cluster.router = "redis")."""
    feed = OpsFeed(client, node_id)
    app[OPS_FEED] = feed

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run_publisher(feed, monitor), name="ops-feed")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        with contextlib.suppress(RedisError, OSError):
            await feed.withdraw()

    app.cleanup_ctx.append(lifecycle)


OPS_FEED = web.AppKey("ops_feed", OpsFeed)
