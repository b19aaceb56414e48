"""Wiring the cluster into the app: the router `cluster.router` names, and (for "redis")
the node's heartbeat, signal bridge and request forwarding."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from server.cluster import forward
from server.cluster.node import CLUSTER, ClusterNode
from server.cluster.redis import connect
from server.cluster.router import RedisRouter
from server.core.config import Config
from server.observe.metrics import METRICS
from server.rooms.manager import ROOMS
from server.rooms.router import LocalRouter, Router, default_node_id
from server.signalling import endpoints

log = logging.getLogger(__name__)


def build_router(config: Config) -> Router:
    """The router `cluster.router` names (config validation allows only known ones)."""
    c = config.cluster
    if c.router == "local":
        return LocalRouter(c.node_id)
    if c.router == "redis":
        return RedisRouter(connect(c), c.node_id or default_node_id(), c.node_ttl_s)
    raise ValueError(f"cluster.router: unknown router {c.router!r}")


async def live_room_ids(app: web.Application) -> frozenset[str] | None:
    """The sessions a starting node keeps open: without a cluster none (its rooms died
    with the previous process: empty set); in a cluster all (None): a live session whose
    node went is re-opened by the next request or socket for it, and one nobody comes
    back to is ended by the orphan sweep (server/cluster/failover.py)."""
    return None if CLUSTER in app else frozenset()


def setup(app: web.Application) -> None:
    """After ROOMS is set: with a Redis router, join the cluster."""
    router = app[ROOMS].router
    if not isinstance(router, RedisRouter):
        return
    node = ClusterNode(app, app[ROOMS].config.cluster, router)
    node.bridge.serve = endpoints.serve
    app[CLUSTER] = node
    app.middlewares.append(forward.middleware)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        if METRICS in app:
            app[METRICS].add_collector(node.collect_metrics)
        await node.start()
        log.info("cluster: node %s joined (Redis router)", node.node_id)
        yield
        await node.stop()

    app.cleanup_ctx.append(lifecycle)

    async def drain(app: web.Application) -> None:
        # Before the sockets are closed (app.py's on_shutdown comes after this one): the
        # pages get `moved` and the rooms a new node, not an end.
        await node.failover.drain(app[ROOMS].config.cluster.drain_timeout_s)
        # Then the sockets held here for other nodes' rooms: `moved` too, not a bare 1001.
        moved = await node.bridge.move_held()
        if moved:
            log.info("drain: %d socket(s) bridged to other nodes told to move", moved)

    app.on_shutdown.append(drain)
