"""Cost of the cluster state kept in Redis: a shared rate-limit check (link open, login)
and the ops feed (one node's publish, one merged read of every node), against a real
redis-server this script starts on loopback (nothing persisted, stopped at the end).

    python bench/cluster_state.py [--checks 2000] [--nodes 3] [--rooms 50] [--json]

`--rooms` rooms per node, each shaped like an ops snapshot room with 60 s of history.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from bench.lib import cli  # noqa: E402
from bench.lib.procs import RedisServer  # noqa: E402
from bench.lib.stats import percentile  # noqa: E402
from server.cluster import redis_client  # noqa: E402
from server.cluster.limits import SharedLimiter  # noqa: E402
from server.cluster.ops_feed import OpsFeed, entry  # noqa: E402
from server.core.ratelimit import KeyedLimiter  # noqa: E402


def fake_room(i: int) -> dict[str, Any]:
    track = {"live": True, "publisher": True, "subscribers": 1, "fps": 30.0, "kbps": 812.4,
             "frames": 2700, "seconds_since_frame": 0.0}  # fmt: skip
    part = {"id": "caller", "role": "caller", "signalling": True, "connection": "connected",
            "ice": "completed", "in": {"track": "camera", "kbps": 830.1, "fps": 30.0,
            "loss": 0.0}, "out": None, "rtt_ms": 12.0}  # fmt: skip
    return {
        "id": f"s-{i:08d}", "agent": "anna", "phone": "+371 ••••••12", "reference": "T-1",
        "state": "active", "caller_status": "live", "created_at": f"2026-12-01T10:{i % 60:02d}",
        "tracks": {"camera": track, "screen": track}, "participants": [part, part],
        "in_kbps": 830.1, "out_kbps": 820.0, "warnings": [], "watchers": 0,
        "history": {k: [812.4] * 60 for k in ("in_kbps", "fps", "out_kbps")},
        "recording": {"state": "off", "spool_bytes": 0},
    }  # fmt: skip


def snapshot(rooms: int) -> dict[str, Any]:
    return {"type": "snapshot", "at": "2026-12-01T10:00:00Z", "totals": {"rooms": rooms},
            "today": {}, "webhooks": {}, "recording": {}, "warnings": [],
            "rooms": [fake_room(i) for i in range(rooms)]}  # fmt: skip


async def measure(url: str, checks: int, nodes: int, rooms: int) -> dict[str, Any]:
    client = redis_client.connect(url)
    try:
        shared = SharedLimiter(client, "login", per_minute=10**9)
        local = KeyedLimiter(10**9)
        shared_ms, local_us = [], []
        for i in range(checks):
            t = time.perf_counter()
            await shared.check(f"10.0.{i % 250}.1", 1000.0 + i)
            shared_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await local.check(f"10.0.{i % 250}.1", 1000.0 + i)
            local_us.append((time.perf_counter() - t) * 1e6)
        feeds = [OpsFeed(client, f"node-{n}") for n in range(nodes)]
        snap = snapshot(rooms)
        publish_ms, view_ms = [], []
        for _ in range(max(20, checks // 50)):
            for feed in feeds:
                t = time.perf_counter()
                await feed.publish(snap)
                publish_ms.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            view = await feeds[0].view()
            view_ms.append((time.perf_counter() - t) * 1000)
        assert len(view["rooms"]) == nodes * rooms
        import json

        return {
            "limit_check_p50_ms": round(percentile(shared_ms, 0.5), 3),
            "limit_check_p95_ms": round(percentile(shared_ms, 0.95), 3),
            "local_limit_check_p50_us": round(percentile(local_us, 0.5), 2),
            "ops_nodes": nodes,
            "ops_rooms_per_node": rooms,
            "ops_entry_bytes": len(json.dumps(entry("node-0", snap, 0.0))),
            "ops_publish_p95_ms": round(percentile(publish_ms, 0.95), 2),
            "ops_view_p95_ms": round(percentile(view_ms, 0.95), 2),
        }
    finally:
        await client.aclose()


def main() -> None:
    parser = cli.parser(__doc__)
    parser.add_argument("--checks", type=int, default=2000, help="rate-limit checks")
    parser.add_argument("--nodes", type=int, default=3, help="nodes publishing ops snapshots")
    parser.add_argument("--rooms", type=int, default=50, help="rooms per node")
    args = parser.parse_args()
    redis = RedisServer().start()
    try:
        result = asyncio.run(measure(redis.url, args.checks, args.nodes, args.rooms))
    finally:
        redis.close()

    def summary(r: dict[str, Any]) -> str:
        return "\n".join([
            f"shared rate-limit check (Redis, Lua): p50 {r['limit_check_p50_ms']} ms, "
            f"p95 {r['limit_check_p95_ms']} ms (local: {r['local_limit_check_p50_us']} µs)",
            f"ops feed, {r['ops_nodes']} nodes × {r['ops_rooms_per_node']} rooms "
            f"({r['ops_entry_bytes']} bytes per node): publish p95 {r['ops_publish_p95_ms']} ms,"
            f" merged read p95 {r['ops_view_p95_ms']} ms",
        ])  # fmt: skip

    cli.emit(result, args.json, summary)


if __name__ == "__main__":
    main()
