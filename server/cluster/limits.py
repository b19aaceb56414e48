"""Link-open and login rate limits, and the login failure backoff, shared by every node,
through Redis.

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
import uuid
from collections.abc import Callable

import redis.asyncio as aioredis
from aiohttp import web
from redis.exceptions import RedisError

from server.cluster import redis_client
from server.core.config import Config
from server.core.ratelimit import FailureBackoff, KeyedLimiter, Limiter
from server.sessions.sms_policy import SendBudget

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


# --- login failures with backoff (docs/security.md, "Logins") -------------------------------
# KEYS[1] the key's hash; ARGV now, free, base_s, max_s, ttl. One failure is counted up
# front when the key may try now (returns "0"), else nothing changes and the wait in seconds
# is returned: the check and the count are one step, so parallel guesses on several nodes
# cannot all pass the check before the first is counted.
ATTEMPT_SCRIPT = """
local now = tonumber(ARGV[1])
local free = tonumber(ARGV[2])
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
local l = tonumber(redis.call('HGET', KEYS[1], 'l') or '0')
if f >= free then
  local delay = math.min(tonumber(ARGV[4]), tonumber(ARGV[3]) * 2 ^ (f - free))
  local wait = l + delay - now
  if wait > 0 then return tostring(wait) end
end
redis.call('HSET', KEYS[1], 'f', f + 1, 'l', tostring(now))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
return '0'
"""
# Take back one failure counted up front that was not one.
FORGIVE_SCRIPT = """
local f = tonumber(redis.call('HGET', KEYS[1], 'f') or '0')
if f <= 1 then redis.call('DEL', KEYS[1]) else redis.call('HINCRBY', KEYS[1], 'f', -1) end
return 1
"""


class LocalBackoff:
    """server.core.ratelimit.FailureBackoff with the login's interface (this process)."""

    def __init__(self, backoff: FailureBackoff) -> None:
        self.local = backoff

    async def attempt(self, key: str, now: float) -> float:
        wait = self.local.wait_s(key, now)
        if wait <= 0:
            self.local.failed(key, now)
        return wait

    async def succeeded(self, key: str) -> None:
        self.local.succeeded(key)

    async def forgive(self, key: str) -> None:
        self.local.forgive(key)


class SharedBackoff(LocalBackoff):
    """The same over Redis, shared by every node; Redis down: this node's own (as
    SharedLimiter: one log line each way, Redis not asked again for `retry_s`)."""

    def __init__(
        self,
        client: aioredis.Redis,
        name: str,
        backoff: FailureBackoff,
        *,
        retry_s: float = RETRY_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(backoff)
        self.client, self.name = client, name
        self.ttl_s = math.ceil(max(backoff.forget_s, backoff.max_s)) + 1
        self.retry_s, self._monotonic = retry_s, monotonic
        self._down_until, self._down = float("-inf"), False
        self._attempt = client.register_script(ATTEMPT_SCRIPT)
        self._forgive = client.register_script(FORGIVE_SCRIPT)

    @property
    def degraded(self) -> bool:
        return self._down

    def _usable(self) -> bool:
        return not (self._down and self._monotonic() < self._down_until)

    def _failed(self, exc: BaseException) -> None:
        if not self._down:
            log.warning("login backoff %s: Redis unavailable (%s); counting on this node "
                        "alone until it answers", self.name, type(exc).__name__)  # fmt: skip
        self._down, self._down_until = True, self._monotonic() + self.retry_s

    def _answered(self) -> None:
        if self._down:
            log.info("login backoff %s: Redis answers again; shared again", self.name)
            self._down = False

    async def attempt(self, key: str, now: float) -> float:
        if self._usable():
            b = self.local
            try:
                wait = await self._attempt(
                    keys=[bucket_key(self.name, key)],
                    args=[repr(now), b.free, repr(b.base_s), repr(b.max_s), self.ttl_s],
                )
            except (RedisError, OSError) as exc:
                self._failed(exc)
            else:
                self._answered()
                return float(wait)
        return await super().attempt(key, now)

    async def succeeded(self, key: str) -> None:
        await self._change(key, None)
        self.local.succeeded(key)

    async def forgive(self, key: str) -> None:
        await self._change(key, self._forgive)
        self.local.forgive(key)

    async def _change(self, key: str, script: object | None) -> None:
        if not self._usable():
            return
        try:
            if script is None:
                await self.client.delete(bucket_key(self.name, key))
            else:
                await script(keys=[bucket_key(self.name, key)])  # type: ignore[operator]
        except (RedisError, OSError) as exc:
            self._failed(exc)
        else:
            self._answered()


def build_backoff(
    app: web.Application, config: Config, name: str, backoff: FailureBackoff
) -> LocalBackoff:
    """Login failures per account / per address: shared through Redis in a cluster."""
    if config.cluster.router != "redis":
        return LocalBackoff(backoff)
    return SharedBackoff(redis_client.for_app(app), name, backoff)


# --- SMS sends (docs/security.md, "SMS and room floods") ------------------------------------
# KEYS[1] the session's count, KEYS[2] the agent's sends (a sorted set by time); ARGV now,
# per_session, per_agent_hour, a unique member, the session key's ttl. 0 = counted,
# 1 = the session's cap, 2 = the agent's (nothing counted then).
SMS_SCRIPT = """
local now = tonumber(ARGV[1])
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n >= tonumber(ARGV[2]) then return 1 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 3600)
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 2 end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[5]))
redis.call('ZADD', KEYS[2], now, ARGV[4])
redis.call('EXPIRE', KEYS[2], 3601)
return 0
"""


class SharedSendBudget(SendBudget):
    """SendBudget over Redis, one budget for every node; Redis down: this node's own."""

    def __init__(self, client: aioredis.Redis, per_session: int, per_agent_hour: int,
                 session_ttl_s: int, *, retry_s: float = RETRY_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        super().__init__(per_session, per_agent_hour)
        self.client, self.session_ttl_s = client, session_ttl_s
        self.retry_s, self._monotonic = retry_s, monotonic
        self._down_until, self._down = float("-inf"), False
        self._script = client.register_script(SMS_SCRIPT)

    async def check(self, session_id: str, agent_id: int, now: float) -> str | None:
        if self._down and self._monotonic() < self._down_until:
            return self.take(session_id, agent_id, now)
        keys = [bucket_key("sms-session", session_id), bucket_key("sms-agent", str(agent_id))]
        try:
            cap = await self._script(
                keys=keys,
                args=[repr(now), self.per_session, self.per_agent_hour,
                      f"{now!r}:{uuid.uuid4().hex}", self.session_ttl_s],
            )  # fmt: skip
        except (RedisError, OSError) as exc:
            if not self._down:
                log.warning("SMS budget: Redis unavailable (%s); counting on this node alone "
                            "until it answers", type(exc).__name__)  # fmt: skip
            self._down, self._down_until = True, self._monotonic() + self.retry_s
            return self.take(session_id, agent_id, now)
        if self._down:
            log.info("SMS budget: Redis answers again; shared again")
            self._down = False
        return self.why(int(cap)) if int(cap) else None


def build_sms_budget(app: web.Application, config: Config) -> SendBudget:
    """sms.max_per_session / sms.max_per_agent_per_hour: shared through Redis in a cluster."""
    sms = config.sms
    if config.cluster.router != "redis":
        return SendBudget(sms.max_per_session, sms.max_per_agent_per_hour)
    # A session's count is kept as long as the session can live (then a day's margin).
    ttl = int(config.session.max_duration_s + config.session.link_ttl_s + 86_400)
    return SharedSendBudget(redis_client.for_app(app), sms.max_per_session,
                            sms.max_per_agent_per_hour, ttl)  # fmt: skip
