"""The cluster's Redis client and its key names (docs/cluster.md lists every key)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from server.core.cluster_config import ClusterConfig

# Everything the cluster writes starts with this, so a Redis shared with other software
# (not recommended) keeps its keys apart.
PREFIX = "callassist:"

# Raised by every Redis call that failed (connection refused, timeout, ...).
CLUSTER_ERRORS: tuple[type[BaseException], ...] = (RedisError, OSError)


class ClusterUnavailable(Exception):
    """Redis did not answer: nothing cluster-wide can be decided right now."""


def node_key(node_id: str) -> str:
    return f"{PREFIX}node:{node_id}"


def drain_key(node_id: str) -> str:
    return f"{PREFIX}drain:{node_id}"


def room_key(room_id: str) -> str:
    return f"{PREFIX}room:{room_id}"


def bridge_channel(node_id: str) -> str:
    return f"{PREFIX}bridge:{node_id}"


def connect(cluster: ClusterConfig) -> Redis:
    """A client with short timeouts: a Redis that is down must fail a request quickly
    (a clear 503), never hang it."""
    return Redis.from_url(
        cluster.redis_url,
        decode_responses=True,
        socket_timeout=2,
        socket_connect_timeout=2,
    )
