"""The node registry: each node's heartbeat row in Redis, and placement from those rows.

Each node writes `node:<id>` (JSON: internal_url, rooms, cpu, loop_lag_ms, draining,
max_rooms) with a TTL of `cluster.node_ttl_s`, every `cluster.heartbeat_s`; a node that
stops beating disappears by itself. The same beat re-claims every room the node holds, so
after a Redis restart (empty) the room -> node map is rebuilt within one heartbeat.
`placement` is pure: the rows in, a node id out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass

from redis.asyncio import Redis

from server.cluster.redis import CLUSTER_ERRORS, PREFIX, STOP, drain_key, node_key
from server.core.cluster_config import ClusterConfig

log = logging.getLogger(__name__)

# Loop lag this large counts as a full node's worth of load in the headroom.
_LAG_FULL_MS = 200.0


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    internal_url: str
    rooms: int
    max_rooms: int
    cpu: float = 0.0  # share of one core this process used since the last beat
    loop_lag_ms: float = 0.0
    draining: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str) -> NodeRow | None:
        try:
            d = json.loads(raw)
            return cls(
                node_id=str(d["node_id"]),
                internal_url=str(d["internal_url"]),
                rooms=int(d["rooms"]),
                max_rooms=int(d["max_rooms"]),
                cpu=float(d.get("cpu", 0.0)),
                loop_lag_ms=float(d.get("loop_lag_ms", 0.0)),
                draining=bool(d.get("draining", False)),
            )
        except (ValueError, KeyError, TypeError):
            return None  # a row written by something else: ignore it, never crash on it


def headroom(row: NodeRow) -> float:
    """0 (full) .. 1 (idle): the worst of free room slots, free CPU and loop lag."""
    if row.draining or row.rooms >= row.max_rooms:
        return 0.0
    slots = 1.0 - row.rooms / row.max_rooms
    cpu = 1.0 - min(max(row.cpu, 0.0), 1.0)
    lag = 1.0 - min(max(row.loop_lag_ms, 0.0) / _LAG_FULL_MS, 1.0)
    return min(slots, cpu, lag)


def placement(rows: Iterable[NodeRow]) -> str | None:
    """The node a new room goes to: the most headroom, never a draining or full one; None
    when every node is full (or draining). Ties go to the fewest rooms, then the name, so
    the choice is deterministic."""
    open_rows = [r for r in rows if not r.draining and r.rooms < r.max_rooms]
    if not open_rows:
        return None
    best = max(open_rows, key=lambda r: (headroom(r), -r.rooms, _neg(r.node_id)))
    return best.node_id


def _neg(name: str) -> tuple[int, ...]:
    return tuple(-ord(c) for c in name)


class Registry:
    """This node's heartbeat, and reads of every node's row."""

    def __init__(
        self,
        redis: Redis,
        cluster: ClusterConfig,
        node_id: str,
        held_rooms: Callable[[], list[str]],
        reclaim: Callable[[list[str]], Awaitable[None]],
    ) -> None:
        self.redis = redis
        self.cfg = cluster
        self.node_id = node_id
        self._held_rooms = held_rooms
        self._reclaim = reclaim
        self.healthy = False  # the last beat reached Redis
        self.draining = False
        self.stopping = False  # set by a SIGTERM drain (server/cluster/failover.py)
        self.stop_asked = False  # the drain flag says "stop" (`node drain --stop`)
        self.listeners: list[Callable[[bool, set[str]], None]] = []
        self._cpu_mark = (time.monotonic(), time.process_time())
        self._lag_ms = 0.0

    def row(self) -> NodeRow:
        wall, cpu = time.monotonic(), time.process_time()
        span = max(wall - self._cpu_mark[0], 1e-6)
        share = (cpu - self._cpu_mark[1]) / span
        self._cpu_mark = (wall, cpu)
        return NodeRow(
            node_id=self.node_id,
            internal_url=self.cfg.internal_url,
            rooms=len(self._held_rooms()),
            max_rooms=self.cfg.max_rooms_per_node,
            cpu=round(share, 3),
            loop_lag_ms=round(self._lag_ms, 2),
            draining=self.draining,
        )

    async def write_row(self) -> None:
        ttl_ms = int(self.cfg.node_ttl_s * 1000)
        await self.redis.set(node_key(self.node_id), self.row().to_json(), px=ttl_ms)

    async def beat(self) -> None:
        """One heartbeat: read the drain flag, write this node's row, re-claim its rooms."""
        # A stopping node (SIGTERM, server/cluster/failover.py) stays draining, flag or not.
        flag = await self.redis.get(drain_key(self.node_id))
        self.draining = self.stopping or bool(flag)
        # `callassist node drain --stop`: hand the rooms over, then exit (failover.py).
        self.stop_asked = flag == STOP
        await self.write_row()
        await self._reclaim(self._held_rooms())

    def full(self) -> bool:
        return self.draining or len(self._held_rooms()) >= self.cfg.max_rooms_per_node

    async def rows(self) -> list[NodeRow]:
        keys = [k async for k in self.redis.scan_iter(match=f"{PREFIX}node:*", count=200)]
        if not keys:
            return []
        raws = await self.redis.mget(keys)
        return [r for r in (NodeRow.from_json(x) for x in raws if x) if r is not None]

    async def row_of(self, node_id: str) -> NodeRow | None:
        raw = await self.redis.get(node_key(node_id))
        return NodeRow.from_json(raw) if raw else None

    async def run(self) -> None:
        """Beat forever. A failed beat marks the node unhealthy (listeners: the bridge
        closes what crosses nodes); the next good one re-registers and re-claims, without
        a restart."""
        while True:
            start = time.monotonic()
            alive: set[str] = set()
            try:
                await self.beat()
                alive = {r.node_id for r in await self.rows()}
                if not self.healthy:
                    log.info("cluster: node %s registered in Redis", self.node_id)
                self.healthy = True
            except CLUSTER_ERRORS as exc:
                if self.healthy:
                    log.warning("cluster: Redis unreachable (%s); live rooms go on", exc)
                self.healthy = False
            for listener in list(self.listeners):
                try:
                    listener(self.healthy, alive)
                except Exception:  # a broken listener must not stop the heartbeat
                    log.exception("cluster heartbeat listener failed")
            planned = start + self.cfg.heartbeat_s
            await asyncio.sleep(max(planned - time.monotonic(), 0.0))
            # How late the loop woke us: the event loop's lag, reported in the row.
            self._lag_ms = max((time.monotonic() - planned) * 1000.0, 0.0)
