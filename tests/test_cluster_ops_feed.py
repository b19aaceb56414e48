"""server/cluster/ops_feed.py: the merge (pure) and the feed against a real redis-server."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from redis_helpers import RedisServer

from server.cluster import ops_feed, redis_client
from server.cluster.ops_feed import OpsFeed, entry, merge


def snap(at: str, rooms: list[dict[str, Any]], **totals: Any) -> dict[str, Any]:
    base = {"rooms": len(rooms), "rooms_active": 0, "rooms_waiting": len(rooms),
            "participants": 0, "in_kbps": 0.0, "out_kbps": 0.0, "cpu_percent": 5.0}  # fmt: skip
    return {
        "type": "snapshot", "at": at, "_mono": 1.0, "totals": {**base, **totals},
        "today": {"sessions": 7}, "webhooks": {"enabled": False},
        "recording": {"state": "off", "rooms": 0, "mode": "on_demand", "spool_bytes": 10},
        "warnings": [{"code": "event_loop_lag", "ms": 300}] if totals.get("lag") else [],
        "rooms": rooms,
    }  # fmt: skip


def room(room_id: str, created: str) -> dict[str, Any]:
    return {"id": room_id, "created_at": created, "state": "waiting", "participants": []}


def test_merge_tags_rooms_sums_totals_drops_stale() -> None:
    a = entry("a", snap("t1", [room("r2", "2026-12-01T10:02")], in_kbps=1.25), 100.0)
    b = entry("b", snap("t2", [room("r1", "2026-12-01T10:01")], lag=1, in_kbps=2.5), 101.0)
    old = entry("c", snap("t0", [room("r9", "2026-12-01T09:00")]), 90.0)
    view = merge({"a": a, "b": b, "c": old, "d": None}, now=101.5, max_age_s=3)
    assert [(r["id"], r["node"]) for r in view["rooms"]] == [("r1", "b"), ("r2", "a")]
    assert view["totals"]["rooms"] == 2 and view["totals"]["in_kbps"] == 3.8
    assert view["stale_nodes"] == ["c", "d"]
    assert [n["node"] for n in view["nodes"]] == ["a", "b"]
    assert view["nodes"][0]["age_s"] == 1.5 and view["nodes"][0]["totals"]["cpu_percent"] == 5.0
    assert view["warnings"] == [{"code": "event_loop_lag", "ms": 300, "node": "b"}]
    assert view["recording"]["spool_bytes"] == 20 and view["recording"]["state"] == "off"
    assert view["at"] == "t2" and view["today"] == {"sessions": 7}
    assert "_mono" not in a  # private fields are not published


def test_merge_of_nothing() -> None:
    view = merge({}, now=1.0)
    assert view["rooms"] == [] and view["nodes"] == [] and view["totals"]["rooms"] == 0


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.close()


async def test_two_nodes_publish_one_view(redis_server: RedisServer) -> None:
    ca, cb = redis_client.connect(redis_server.url), redis_client.connect(redis_server.url)
    try:
        await ca.flushdb()
        a, b = OpsFeed(ca, "a", ttl_s=1), OpsFeed(cb, "b", ttl_s=30)
        await a.publish(snap("t1", [room("r1", "x1")]))
        await b.publish(snap("t2", [room("r2", "x2"), room("r3", "x3")]))
        view = await b.view()  # any node reads every node
        assert sorted((r["id"], r["node"]) for r in view["rooms"]) == [
            ("r1", "a"), ("r2", "b"), ("r3", "b")]  # fmt: skip
        assert view["totals"]["rooms"] == 3 and view["stale_nodes"] == []
        # Node a stops publishing: its key expires and it leaves the view and the list.
        await asyncio.sleep(2.2)
        await b.publish(snap("t3", [room("r2", "x2")]))
        view = await a.view()
        assert [r["node"] for r in view["rooms"]] == ["b"] and view["stale_nodes"] == ["a"]
        assert await ca.smembers(ops_feed.NODES_KEY) == {b"b"}
        await b.withdraw()  # a node that stops leaves at once
        assert (await a.view())["nodes"] == []
    finally:
        await ca.aclose()
        await cb.aclose()


class FakeMonitor:
    """The OpsMonitor's subscriber interface (a queue per subscriber)."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        q: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.queues.add(q)
        return q

    def unsubscribe(self, q: asyncio.Queue[dict[str, Any] | None]) -> None:
        self.queues.discard(q)

    def put(self, item: dict[str, Any] | None) -> None:
        for q in self.queues:
            q.put_nowait(item)


async def test_publisher_survives_redis_down(caplog: pytest.LogCaptureFixture) -> None:
    server = RedisServer().start()
    client = redis_client.connect(server.url)
    feed, monitor = OpsFeed(client, "n1"), FakeMonitor()
    task = asyncio.create_task(ops_feed.run_publisher(feed, monitor))
    try:
        await asyncio.sleep(0.05)
        monitor.put(snap("t1", [room("r1", "x")]))
        for _ in range(100):
            if (await feed.view())["rooms"]:
                break
            await asyncio.sleep(0.02)
        assert [r["id"] for r in (await feed.view())["rooms"]] == ["r1"]
        server.stop()
        with caplog.at_level(logging.INFO, logger="server.cluster.ops_feed"):
            monitor.put(snap("t2", []))
            monitor.put(snap("t3", []))
            await asyncio.sleep(0.5)
            assert "cannot publish to Redis" in caplog.text and not task.done()
            server.start()  # empty: rebuilt by the next snapshot
            for _ in range(200):  # the monitor keeps sampling (once a second, here faster)
                monitor.put(snap("t4", [room("r4", "x")]))
                with_rooms = await _try_view(feed)
                if with_rooms:
                    break
                await asyncio.sleep(0.05)
            assert with_rooms == ["r4"]
            # The view can see the write while the publisher is still in the pipeline's
            # exit (it yields there), before it logs: wait for the line, do not race it.
            for _ in range(100):
                if "publishing to Redis again" in caplog.text:
                    break
                await asyncio.sleep(0.02)
            assert "publishing to Redis again" in caplog.text
        monitor.put(None)  # shutdown ends the publisher
        await asyncio.wait_for(task, 5)
        assert not monitor.queues
    finally:
        task.cancel()
        await client.aclose()
        server.close()


async def _try_view(feed: OpsFeed) -> list[str]:
    try:
        return [r["id"] for r in (await feed.view())["rooms"]]
    except Exception:
        return []


async def test_ops_view_merges_or_flags_redis_down(redis_server: RedisServer) -> None:
    from aiohttp import web

    from server.observe import ops

    client = redis_client.connect(redis_server.url)
    try:
        await client.flushdb()
        other = OpsFeed(client, "other")
        await other.publish(snap("t1", [room("r-other", "x1")]))
        app = web.Application()
        here = snap("t2", [room("r-here", "x2")])
        assert [r["id"] for r in (await ops._view(app, here))["rooms"]] == ["r-here"]
        app[ops_feed.OPS_FEED] = mine = OpsFeed(client, "here")
        await mine.publish(here)
        view = await ops._view(app, here)
        assert sorted((r["id"], r["node"]) for r in view["rooms"]) == [
            ("r-here", "here"), ("r-other", "other")]  # fmt: skip
        # Redis gone: this node's own rooms, flagged.
        app[ops_feed.OPS_FEED] = OpsFeed(redis_client.connect("redis://127.0.0.1:1/0"), "x")
        view = await ops._view(app, here)
        assert [r["id"] for r in view["rooms"]] == ["r-here"]
        assert {"code": "cluster_unavailable"} in view["warnings"]
        await app[ops_feed.OPS_FEED].client.aclose()
    finally:
        await client.aclose()
