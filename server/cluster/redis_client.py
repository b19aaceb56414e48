"""The Redis client of the rate limits and the ops feed (bytes, not decoded strings),
one per app. Made by server/cluster/redis.py's one factory (`decode=False`: these
callers store packed values), with shorter timeouts than the router's: every caller here
has a fallback, and a Redis that does not answer must not hold a login or a link open.
"""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from server.cluster.redis import new_client
from server.core.appkeys import CONFIG
from server.core.config import Config

CONNECT_TIMEOUT_S = 1.0
COMMAND_TIMEOUT_S = 0.5


def connect(url: str) -> aioredis.Redis:
    """A bytes client for `url` ("redis://host:port/db")."""
    return new_client(url, decode=False, command_timeout_s=COMMAND_TIMEOUT_S,
                      connect_timeout_s=CONNECT_TIMEOUT_S)  # fmt: skip


def url_of(config: Config) -> str:
    # Checked by the config (required with cluster.router = "redis", the only case that
    # builds this client).
    return config.cluster.redis_url


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
