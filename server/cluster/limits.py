"""Link-open and login rate limits shared by every node, through Redis.

The same token bucket as server/core/ratelimit.KeyedLimiter (`per_minute` tokens a
minute, at most `per_minute` saved up, per client address), kept in one Redis hash per
key and changed by one Lua script, so concurrent requests on any number of nodes take
from one budget atomically. Keys expire once the bucket would be full again: Redis holds
only the last minute, and the address only as a hash.

Redis down (refused, timeout, any Redis error): the request is judged by this node's own
KeyedLimiter, with one log line when that starts and one when Redis answers again. So
logins and links keep working, and are still limited per node (at most N times the
budget across N nodes) rather than not at all; failing closed would lock every agent out
of the console whenever Redis restarts. After a failure Redis is not asked again for
`retry_s`, so a Redis that hangs costs at most one timeout per `retry_s`.
docs/deploy.md, "Cluster state in Redis".
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from server.cluster import redis_client
from server.core.config import Config
from server.core.ratelimit import KeyedLimiter, Limiter

log = logging.getLogger(__name__)

PREFIX = "callassist:limit:"
RETRY_S = 5.0

# KEYS[1] the bucket; ARGV rate (tokens/s), burst, now (s), ttl (s). Returns 1 = allowed.
# The stamp never goes back (nodes' clocks differ a little: elapsed time counts from 0).
BUCKET_SCRIPT = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local v = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(v[1])
local stamp = tonumber(v[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
local elapsed = now - stamp
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate)
local ok = 0
if tokens >= 1 then
  tokens = tokens - 1
  ok = 1
end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 's', tostring(math.max(now, stamp)))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
return ok
"""


def bucket_key(name: str, key: str) -> str:
    """The Redis key of `key`'s bucket in limiter `name` (the address only hashed)."""
    digest = hashlib.sha256(f"{name}\0{key}".encode()).hexdigest()[:32]
    return f"{PREFIX}{name}:{digest}"


class SharedLimiter:
    """server.core.ratelimit.Limiter over Redis, with the local fallback."""

    def __init__(
        self,
        client: aioredis.Redis,
        name: str,
        per_minute: int,
        *,
        retry_s: float = RETRY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.name = name
        self.rate = per_minute / 60.0
        self.burst = max(per_minute, 1)
        self.ttl_s = max(1, math.ceil(self.burst / self.rate)) + 1 if self.rate > 0 else 3600
        self.fallback = KeyedLimiter(per_minute)
        self.retry_s = retry_s
        self._monotonic = monotonic
        self._down_until = float("-inf")
        self._down = False
        self._script = client.register_script(BUCKET_SCRIPT)

    @property
    def degraded(self) -> bool:
        """True while requests are judged by this node alone (Redis did not answer)."""
        return self._down

    async def check(self, key: str, now: float) -> bool:
        mono = self._monotonic()
        if self._down and mono < self._down_until:
            return self.fallback.allow(key, now)
        try:
            ok = await self._script(
                keys=[bucket_key(self.name, key)],
                args=[repr(self.rate), self.burst, repr(now), self.ttl_s],
            )
        except (RedisError, OSError) as exc:
            if not self._down:
                log.warning(
                    "rate limit %s: Redis unavailable (%s); limiting on this node alone "
                    "until it answers",
                    self.name,
                    type(exc).__name__,
                )
            self._down, self._down_until = True, mono + self.retry_s
            return self.fallback.allow(key, now)
        if self._down:
            log.info("rate limit %s: Redis answers again; limits are shared again", self.name)
            self._down = False
        return bool(ok)


def build(app: web.Application, config: Config) -> tuple[Limiter, Limiter]:
    """(link opens, login attempts): shared through Redis when `cluster.router` is
    "redis", this process's own otherwise (the embedded default)."""
    link, login = config.session.link_opens_per_minute, config.auth.login_attempts_per_minute
    if config.cluster.router != "redis":
        return KeyedLimiter(link), KeyedLimiter(login)
    client = redis_client.for_app(app)
    return SharedLimiter(client, "link", link), SharedLimiter(client, "login", login)
