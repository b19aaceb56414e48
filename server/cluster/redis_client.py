"""A Redis client for the cluster modules of this branch (limits, ops feed).

Tiny on purpose: the cluster router's own client factory (server/cluster/redis.py, with
`cluster.redis_url`) replaces it once both are merged. Short timeouts: every caller here
has a fallback, and a Redis that does not answer must not hold a login or a link open.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from server.core.appkeys import CONFIG
from server.core.config import Config

CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 0.5


def connect(url: str) -> aioredis.Redis:
    """A client for `url` ("redis://host:port/db"); nothing is sent until it is used."""
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_timeout=COMMAND_TIMEOUT_S,
        retry_on_timeout=False,
        decode_responses=False,
    )


def url_of(config: Config) -> str:
    # cluster.redis_url is the cluster router's key (its branch adds it to ClusterConfig);
    # until then the same setting, read the same way.
    return str(getattr(config.cluster, "redis_url", "") or "redis://127.0.0.1:6379/0")


def for_app(app: web.Application) -> aioredis.Redis:
    """The app's one client for these modules (made on first use, closed at cleanup)."""
    client = app.get(REDIS)
    if client is None:
        client = app[REDIS] = connect(url_of(app[CONFIG]))

        async def close(app: web.Application) -> None:
            await client.aclose()

        app.on_cleanup.append(close)
    return client


REDIS = web.AppKey("cluster_redis", aioredis.Redis)
