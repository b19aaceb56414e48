"""The cluster's Redis client and its key names (docs/cluster.md lists every key)."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
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


# The drain flag's value when the node is to exit once its rooms are handed over.
STOP = "stop"


def drain_key(node_id: str) -> str:
    return f"{PREFIX}drain:{node_id}"


def room_key(room_id: str) -> str:
    return f"{PREFIX}room:{room_id}"


def bridge_channel(node_id: str) -> str:
    return f"{PREFIX}bridge:{node_id}"


def new_client(url: str, *, decode: bool, command_timeout_s: float = 2.0,
               connect_timeout_s: float = 2.0) -> Redis:  # fmt: skip
    """The one factory of the cluster's Redis clients (nothing is sent until used).
    `decode`: str answers (the router, registry, bridge, drain) or bytes (the rate limits
    and the ops feed store packed values: server/cluster/redis_client.py). Short timeouts:
    a Redis that is down must fail a request quickly (a clear 503), never hang it."""
    # retry_on_timeout stays redis-py's default (False): passing it is deprecated.
    return Redis.from_url(
        url,
        decode_responses=decode,
        socket_timeout=command_timeout_s,
        socket_connect_timeout=connect_timeout_s,
        # One retry on a broken connection, at once. After Redis restarts, every pooled
        # connection is dead; from_url's connections have no retry at all, so the first
        # command on each failed ("Connection closed by server") and closed bridged sockets
        # a second after Redis was back. A timeout is not retried: a Redis that does not
        # answer still fails within command_timeout_s.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )


def connect(cluster: ClusterConfig) -> Redis:
    """The decoding client of the router, the registry, the bridge and `node drain`."""
    return new_client(cluster.redis_url, decode=True)
