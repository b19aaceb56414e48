"""server/cluster/limits.py against a real redis-server: two nodes share one budget,
atomically; Redis down falls back to the node's own limiter and comes back by itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from redis_helpers import RedisServer

from server.cluster import redis_client
from server.cluster.limits import SharedLimiter, bucket_key
from server.cluster.redis import new_client


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
async def clients(redis_server: RedisServer) -> AsyncIterator[list]:
    made = [redis_client.connect(redis_server.url) for _ in range(2)]
    await made[0].flushdb()
    yield made
    for c in made:
        await c.aclose()


async def test_two_nodes_share_one_budget(clients: list) -> None:
    a, b = (SharedLimiter(c, "login", per_minute=6) for c in clients)
    now = 1_000_000.0
    results = [await (a if i % 2 else b).check("10.0.0.1", now) for i in range(8)]
    assert results == [True] * 6 + [False] * 2  # 6 a minute, whichever node asks
    assert await a.check("10.0.0.2", now)  # another address has its own budget
    # One token back after 10 s (6 a minute), on either node.
    assert await b.check("10.0.0.1", now + 10.5)
    assert not await a.check("10.0.0.1", now + 10.6)
    # The address is not stored in the clear, and the key expires.
    key = bucket_key("login", "10.0.0.1")
    assert "10.0.0.1" not in key
    assert 0 < await clients[0].ttl(key) <= 62


async def test_concurrent_checks_are_atomic(clients: list) -> None:
    a, b = (SharedLimiter(c, "link", per_minute=20) for c in clients)
    now = 2_000_000.0
    results = await asyncio.gather(*(x.check("10.0.0.9", now) for _ in range(20) for x in (a, b)))
    assert sum(results) == 20


async def test_redis_down_falls_back_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer().start()
    client = redis_client.connect(server.url)
    clock = [0.0]
    limiter = SharedLimiter(client, "login", per_minute=3, retry_s=5, monotonic=lambda: clock[0])
    try:
        now = 3_000_000.0
        assert await limiter.check("10.1.1.1", now) and not limiter.degraded
        server.stop()
        with caplog.at_level(logging.INFO, logger="server.cluster.limits"):
            # Down: judged by this node's own limiter, still limited (3 a minute).
            got = [await limiter.check("10.1.1.1", now + 1) for _ in range(4)]
            assert got == [True, True, True, False] and limiter.degraded
            assert "Redis unavailable" in caplog.text
            server.start()  # same port
            clock[0] += 1  # within retry_s: Redis is not asked yet
            assert not await limiter.check("10.1.1.1", now + 1)
            assert limiter.degraded
            clock[0] += 5
            assert await limiter.check("10.1.1.2", now + 2) and not limiter.degraded
            assert "Redis answers again" in caplog.text
    finally:
        await client.aclose()
        server.close()


async def test_build_chooses_by_router(redis_server: RedisServer) -> None:
    import dataclasses

    from aiohttp import web

    from server.cluster import limits
    from server.core import config as config_mod
    from server.core.appkeys import CONFIG
    from server.core.ratelimit import KeyedLimiter

    cfg = config_mod.from_dict({"session": {"link_opens_per_minute": 2}})
    app = web.Application()
    app[CONFIG] = cfg
    link, login = limits.build(app, cfg)
    assert isinstance(link, KeyedLimiter) and isinstance(login, KeyedLimiter)
    assert type(limits.build_sms_budget(app, cfg)).__name__ == "SendBudget"
    assert redis_client.REDIS not in app  # the embedded default needs no Redis

    # cluster.router = "redis" (the cluster router's value; built here without it).
    cluster = dataclasses.replace(cfg.cluster, router="redis")
    object.__setattr__(cluster, "redis_url", redis_server.url)
    cfg = dataclasses.replace(cfg, cluster=cluster)
    app = web.Application()
    app[CONFIG] = cfg
    link, login = limits.build(app, cfg)
    assert isinstance(link, SharedLimiter) and link.client is login.client
    assert isinstance(limits.build_sms_budget(app, cfg), limits.SharedSendBudget)
    await app[redis_client.REDIS].flushdb()
    assert [await link.check("a", 5.0) for _ in range(3)] == [True, True, False]
    await app.cleanup()  # closes the client


def _redis_config(redis_server: RedisServer, **sections: dict) -> object:
    import dataclasses

    from server.core import config as config_mod

    cfg = config_mod.from_dict(sections)
    cluster = dataclasses.replace(cfg.cluster, router="redis")
    object.__setattr__(cluster, "redis_url", redis_server.url)
    return dataclasses.replace(cfg, cluster=cluster)


async def test_login_backoff_per_account_is_shared_by_the_nodes(
    redis_server: RedisServer,
) -> None:
    """Issue 14 item 6: the per-account backoff was each process's own, so N nodes allowed
    N times the free failures for one account. Two nodes' login setups, one Redis."""
    from aiohttp import web

    from server.cluster.limits import LocalBackoff, SharedBackoff
    from server.core import config as config_mod
    from server.core.appkeys import CONFIG
    from server.http import web_auth

    cfg = _redis_config(redis_server, auth={"login_free_failures_per_account": 3,
                                            "login_free_failures_per_address": 100})  # fmt: skip
    nodes = []
    for _ in range(2):
        app = web.Application()
        app[CONFIG] = cfg  # type: ignore[assignment]
        web_auth.setup(app)
        nodes.append(app[web_auth.LOGIN_FAILURES])
    assert all(isinstance(n.accounts, SharedBackoff) for n in nodes)
    await nodes[0].accounts.client.flushdb()
    now = 4_000_000.0
    # Guesses against "anna" alternate between the nodes: 3 free in all, not 3 per node.
    waits = [await nodes[i % 2].accounts.attempt("anna", now) for i in range(4)]
    assert waits[:3] == [0, 0, 0] and waits[3] > 0
    assert await nodes[1].accounts.attempt("boris", now) == 0  # another account
    # The backoff doubles, whichever node counts; a success (the owner) clears it.
    assert await nodes[0].accounts.attempt("anna", now + waits[3] + 0.1) == 0
    later = await nodes[1].accounts.attempt("anna", now + waits[3] + 0.2)
    assert later > waits[3]
    await nodes[0].accounts.succeeded("anna")
    assert await nodes[1].accounts.attempt("anna", now + waits[3] + 0.3) == 0
    # forgive takes back one failure counted up front.
    for _ in range(2):
        await nodes[0].accounts.forgive("anna")
    assert [await nodes[1].accounts.attempt("anna", now + 10) for _ in range(3)] == [0, 0, 0]
    # The account name is not stored in the clear.
    assert not [k for k in await nodes[0].accounts.client.keys("*") if b"anna" in k]

    # Without a Redis router: this process's own.
    app = web.Application()
    app[CONFIG] = config_mod.from_dict({})
    web_auth.setup(app)
    assert type(app[web_auth.LOGIN_FAILURES].accounts) is LocalBackoff
    for n in nodes:
        await n.accounts.client.aclose()


async def test_sms_budget_is_shared_by_the_nodes(clients: list) -> None:
    """Issue 14 item 4: sms.max_per_session / max_per_agent_per_hour were counted per
    process, so N nodes sent N times as many. Two nodes, one Redis."""
    from server.cluster.limits import SharedSendBudget

    a, b = (SharedSendBudget(c, per_session=2, per_agent_hour=3, session_ttl_s=100)
            for c in clients)  # fmt: skip
    now = 5_000_000.0
    assert await a.check("s-1", 7, now) is None
    assert await b.check("s-1", 7, now + 1) is None
    assert "sent 2 times" in (await a.check("s-1", 7, now + 2) or "")  # the session's cap
    assert await b.check("s-2", 7, now + 3) is None
    assert "per agent per hour" in (await a.check("s-3", 7, now + 4) or "")  # 3 in the hour
    assert await b.check("s-3", 8, now + 4) is None  # another agent
    # The hour slides: an hour after the first two sends, two more may go.
    assert await a.check("s-3", 7, now + 3601.5) is None
    assert await b.check("s-4", 7, now + 3601.6) is None
    assert await a.check("s-5", 7, now + 3601.7) is not None


@pytest.mark.parametrize("decode", [True, False])
async def test_a_restarted_redis_is_used_at_once(decode: bool) -> None:
    """After Redis restarts every pooled connection is dead. The first command on each must
    reconnect, not fail: it closed bridged sockets a second after Redis was back."""
    server = RedisServer().start()
    client = new_client(server.url, decode=decode)
    try:
        # Several pooled connections, as a busy node has (the bridge, limits, the feed).
        assert all(await asyncio.gather(*[client.ping() for _ in range(8)]))
        server.stop()
        server.start()  # same port
        assert await asyncio.gather(*[client.publish("ch", "x") for _ in range(8)]) == [0] * 8
        pipe = client.pipeline(transaction=False)
        pipe.publish("ch", "y")
        pipe.publish("ch", "z")
        assert await pipe.execute() == [0, 0]
    finally:
        await client.aclose()
        server.close()
