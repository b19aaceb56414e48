"""This node as a member of a cluster: its Redis, registry, router and bridge together.

Set only when `cluster.router = "redis"`; with the local router `CLUSTER` is absent and
every helper here is a no-op (`locate` is `ROOMS.get`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from server.cluster.bridge import Bridge
from server.cluster.failover import Failover
from server.cluster.registry import Registry
from server.cluster.router import RedisRouter
from server.core.cluster_config import ClusterConfig
from server.rooms.manager import ROOMS, LiveRoom

log = logging.getLogger(__name__)


class ClusterNode:
    def __init__(self, app: web.Application, cluster: ClusterConfig, router: RedisRouter):
        self.cfg = cluster
        self.router = router
        self.redis = router.redis
        self.node_id = router.node_id
        self.registry = Registry(self.redis, cluster, self.node_id, router.held, router.reclaim)
        self.bridge = Bridge(app, self.redis, self.node_id, cluster.bridge_buffer)
        self.registry.listeners.append(self.bridge.on_heartbeat)
        self.failover = Failover(app, self.registry, self.node_id)
        self.registry.listeners.append(self.failover.on_heartbeat)
        self.bridge.on_adopt = self.failover.adopt
        self.bridge.draining = lambda: self.failover.draining
        router.after_change = self.registry.write_row
        self.no_capacity = 0  # sessions refused because every node was full
        self.forwarded = 0  # requests this node forwarded to a room's node
        self._tasks: list[asyncio.Task[None]] = []
        self._http: aiohttp.ClientSession | None = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            # No cookie jar and no decompression: a forwarded request and its answer pass
            # through unchanged.
            self._http = aiohttp.ClientSession(
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=30, connect=3),
            )
        return self._http

    def collect_metrics(self) -> Iterator[Metric]:
        """This node's cluster families for /metrics (server.observe.metrics)."""
        refused = CounterMetricFamily(
            "callassist_cluster_no_capacity",
            "Sessions refused because every node was full or draining.",
        )
        refused.add_metric([], self.no_capacity)
        yield refused
        fwd = CounterMetricFamily(
            "callassist_cluster_forwarded_requests",
            "Room-bound HTTP requests this node forwarded to the node holding the room.",
        )
        fwd.add_metric([], self.forwarded)
        yield fwd
        bridged = GaugeMetricFamily(
            "callassist_cluster_bridged_sockets",
            "Signalling sockets crossing nodes: held here for a room elsewhere, or served "
            "here for a socket held elsewhere.",
            labels=["side"],
        )
        bridged.add_metric(["held"], len(self.bridge.held))
        bridged.add_metric(["served"], len(self.bridge.served))
        yield bridged
        up = GaugeMetricFamily("callassist_cluster_redis_up", "1 when the last heartbeat "
                               "reached Redis.")  # fmt: skip
        up.add_metric([], 1.0 if self.registry.healthy else 0.0)
        yield up

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self.registry.run(), name="cluster-heartbeat"),
            asyncio.create_task(self.bridge.run(), name="cluster-bridge"),
            # Sessions whose room no node holds: ended after the inactivity timeout.
            asyncio.create_task(self.failover.run(max(5.0, self.cfg.heartbeat_s * 4)),
                                name="cluster-orphans"),  # fmt: skip
        ]
        # Serve only once subscribed, so a first bridged socket finds this node listening;
        # a Redis that is down does not stop the start (the loops retry).
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.bridge.subscribed.wait(), 5)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            await self.redis.delete(f"callassist:node:{self.node_id}")
        if self._http is not None:
            await self._http.close()
        await self.redis.aclose()


CLUSTER = web.AppKey("cluster", ClusterNode)


@dataclass(frozen=True)
class Elsewhere:
    """A room another node holds."""

    room_id: str
    node_id: str


async def locate(app: web.Application, room_id: str) -> LiveRoom | Elsewhere | None:
    """The room if this node holds it, else where it is, else None (the session ended).
    A live session no node holds (its node died or drained) is re-opened here
    (server/cluster/failover.py), also one whose node is in Redis but gone (nobody on its
    bridge channel: server/cluster/bridge.py). Raises ClusterUnavailable when Redis cannot say, or
    when this node is draining and would have to re-open it."""
    live = app[ROOMS].get(room_id)
    if live is not None or CLUSTER not in app:
        return live
    node = app[CLUSTER]
    owner = await owner_of(app, room_id)
    if owner and await node.bridge.gone(owner):
        # Killed: re-open here now rather than bridge to nobody until the key expires.
        log.warning("room %s: its node %s is gone; re-opening it", room_id, owner)
        await node.router.forget_dead_owner(room_id, owner)
        owner = await owner_of(app, room_id)
    if owner:
        return Elsewhere(room_id, owner)
    live = await node.failover.reopen(room_id)
    if live is not None:
        return live
    owner = await owner_of(app, room_id)  # another node won the re-open
    return Elsewhere(room_id, owner) if owner else None


async def owner_of(app: web.Application, room_id: str) -> str | None:
    """The other node holding the room, None when no node does. Its own id in Redis for a
    room not in memory (this node restarted under the same id) counts as none."""
    owner = await app[ROOMS].router.node_for(room_id)
    return owner if owner and owner != app[CLUSTER].node_id else None
