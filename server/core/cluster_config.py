"""The `[cluster]` configuration section and its checks (docs/cluster.md).

Apart from server/core/config.py, which is at its size limit; that module re-exports
`ClusterConfig` and calls `validate_cluster`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

ROUTERS = ("local", "redis")


class ClusterConfigError(ValueError):
    """Turned into the config module's ConfigError (which names the key the same way)."""


@dataclass(frozen=True)
class ClusterConfig:
    # Where rooms live and how signalling reaches them (server/rooms/router.py). "local":
    # one process holds every room in memory, the embedded default. "redis": many nodes
    # share a room -> node map and a node registry in Redis (docs/cluster.md).
    router: str = "local"
    # This node's name in logs and in the room -> node map; "" = "<hostname>-<pid>".
    node_id: str = ""
    # Processes `callassist serve` starts on this machine (one per core), sharing the
    # listening port; `--workers N` overrides it. More than 1 needs the redis router.
    workers: int = 1
    # redis://host:port/db of the cluster's Redis (router = "redis" only).
    redis_url: str = ""
    # How the other nodes reach this node's HTTP directly, bypassing the load balancer
    # (forwarded room requests), e.g. "http://10.0.0.5:8080" (router = "redis" only).
    internal_url: str = ""
    # Seconds between two heartbeats of this node's registry entry.
    heartbeat_s: float = 2.0
    # A node whose entry is older than this is gone (its entry expires in Redis).
    node_ttl_s: float = 6.0
    # Rooms one node takes at most; placement never picks a full node.
    max_rooms_per_node: int = 100
    # Messages buffered per bridged socket and direction; overflow closes it.
    bridge_buffer: int = 256
    # Seconds a stopping node (SIGTERM) has to hand its rooms over to other nodes (pages
    # told `moved`, recordings finished) before it exits anyway; 1..300.
    drain_timeout_s: float = 20.0


def validate_cluster(c: ClusterConfig) -> None:
    if c.router not in ROUTERS:
        raise ClusterConfigError("cluster.router: must be 'local' or 'redis'")
    if c.heartbeat_s <= 0 or c.node_ttl_s <= c.heartbeat_s:
        raise ClusterConfigError(
            "cluster.heartbeat_s: must be positive and cluster.node_ttl_s longer than it"
        )
    if c.max_rooms_per_node < 1 or c.bridge_buffer < 8:
        raise ClusterConfigError(
            "cluster: max_rooms_per_node must be at least 1 and bridge_buffer at least 8"
        )
    if not 1 <= c.drain_timeout_s <= 300:
        raise ClusterConfigError("cluster.drain_timeout_s: must be between 1 and 300 seconds")
    if c.router != "redis":
        return
    if not c.redis_url.startswith(("redis://", "rediss://", "unix://")):
        raise ClusterConfigError(
            "cluster.redis_url: required when cluster.router = 'redis' "
            "(redis://host:port/0, rediss:// or unix://)"
        )
    parts = urlsplit(c.internal_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ClusterConfigError(
            "cluster.internal_url: required when cluster.router = 'redis': how the other "
            "nodes reach this node directly, e.g. 'http://10.0.0.5:8080'"
        )
