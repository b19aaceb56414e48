"""Failover of a cluster (docs/cluster.md, "Failover and drain"): PostgreSQL, redis-server,
moto's S3 server, 3 `callassist serve` nodes and haproxy, started here on loopback (the
tests' process starters) and stopped at the end. The pages are aiortc stand-ins that reach
the service only through haproxy and reconnect by themselves (tests/failover_pages.py).

1. failover: kill -9 of the room's node, `--runs` times; seconds until frames arrive at
   the agent again on a new peer connection (median, max). The first run records to S3:
   `recording_segments_lost` = segments uploaded before the kill and missing from the
   recording the re-opening node sealed.
2. rolling restart: `--rooms` live rooms, every node stopped (SIGTERM: drain) and started
   again in turn; rooms ended (0 is the goal) and the pages' reconnects: per room (both
   pages, whole rolling restart), per page and restart of its room's node (1: `moved`),
   per page and restart of another node (only the pages whose socket it held: the share
   of those), and the most one page made in one restart (1 is the goal).

    python bench/cluster_failover.py [--runs 3] [--rooms 10] [--json]

`bench/cluster.py --failover` calls `measure(args)`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

# None of these imports pytest or a test module (tests/test_bench_imports.py checks):
# the bench runs in a venv without the test extras.
from bench.lib.media import loopback_ice  # noqa: E402
from bench.lib.procs import Cluster, PostgresServer  # noqa: E402
from tests.cluster_client import owner_of  # noqa: E402
from tests.failover_pages import Call, kill, restart  # noqa: E402
from tests.s3_server import S3TestServer  # noqa: E402

ENV = {
    "CALLASSIST_RECORDING_KEYS": "mk-0001:" + base64.b64encode(os.urandom(32)).decode(),
    "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "eu-north-1",
}  # fmt: skip


async def _failover(cluster: Cluster, s3: S3TestServer, bucket: str, runs: int) -> dict[str, Any]:
    call = Call(cluster)
    client = s3.client(region="eu-north-1")
    times: list[float] = []
    lost = 0
    try:
        await call.start()
        status, body = await call.api("POST", f"/api/sessions/{call.room}/recording",
                                      {"action": "start"})  # fmt: skip
        assert status == 200, body
        rid = body["recording"]["id"]

        def segments() -> list[str]:
            listed = client.list_objects_v2(Bucket=bucket, Prefix=f"recordings/{rid}/")
            return [o["Key"] for o in listed.get("Contents", []) if "segment-" in o["Key"]]

        deadline = time.monotonic() + 60
        while len(await asyncio.to_thread(segments)) < 3:
            assert time.monotonic() < deadline, "no segments uploaded in 60 s"
            await asyncio.sleep(0.3)
        for run in range(runs):
            owner = cluster.node(await owner_of(cluster, call.room))
            uploaded = await asyncio.to_thread(segments) if run == 0 else []
            t0 = time.monotonic()
            await kill(owner)
            times.append(await call.agent_page.frames_after(t0, 5, 90))
            if run == 0:
                deadline = time.monotonic() + 60
                while True:
                    _, listed = await call.api("GET", f"/api/sessions/{call.room}/recordings")
                    row = next(r for r in listed["recordings"] if r["id"] == rid)
                    if row["status"] != "recording" or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                lost = max(len(uploaded) - int(row["segments"]), 0)
            await restart(cluster, owner)
    finally:
        await call.close()
    return {"failover_s": {"median": round(statistics.median(times), 2),
                           "max": round(max(times), 2), "runs": [round(t, 2) for t in times]},
            "recording_segments_lost": lost}  # fmt: skip


async def _rolling(cluster: Cluster, rooms: int) -> dict[str, Any]:
    calls = [Call(cluster) for _ in range(rooms)]
    try:
        for call in calls:
            await call.start()
        counts = RestartCounts()
        for node in cluster.nodes:
            owners = {c.room: await owner_of(cluster, c.room) for c in calls}
            before = {id(p): p.reconnects for c in calls for p in c.pages}
            await asyncio.to_thread(node.stop)  # SIGTERM: the node drains, then exits
            await restart(cluster, node)
            for call in calls:
                assert call.agent_page.media is not None
                await call.agent_page.media.wait_frames(5, 60)
            await asyncio.sleep(1)  # late reconnects of this restart count for it
            for call in calls:
                for page in call.pages:
                    counts.add(owners[call.room] == node.name, page.reconnects - before[id(page)])
        ended = 0
        for call in calls:
            ended += await call.state() == "ended"
    finally:
        for call in calls:
            await call.close()
    return {"rooms": rooms, "rooms_ended": ended, **counts.summary(rooms)}


class RestartCounts:
    """A page's reconnects over one node restart, split by what that node was to it: the
    room's node (its pages get `moved`: 1 expected) or another (only a page whose socket
    that node held reconnects)."""

    def __init__(self) -> None:
        self.own: list[int] = []
        self.other: list[int] = []

    def add(self, rooms_node: bool, reconnects: int) -> None:
        (self.own if rooms_node else self.other).append(reconnects)

    def summary(self, rooms: int) -> dict[str, Any]:
        every = self.own + self.other
        pages = 2 * rooms
        return {
            # both pages of each room, over the whole rolling restart
            "reconnects_per_room": round(sum(every) / rooms, 2),
            "reconnects_per_page": round(sum(every) / pages, 2),
            "reconnects_per_page_max_in_one_restart": max(every, default=0),
            "reconnects_per_restart_of_rooms_node": round(statistics.mean(self.own), 2)
            if self.own else None,
            "reconnects_per_restart_of_other_node": round(statistics.mean(self.other), 2)
            if self.other else None,
        }  # fmt: skip


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    loopback_ice()
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    pg = PostgresServer()
    pg.start()
    s3 = S3TestServer().start()
    cluster = Cluster(pg.create_database("bf" + uuid.uuid4().hex[:12]), nodes=3,
                      max_rooms=max(args.rooms, 3))  # fmt: skip
    bucket = s3.create_bucket("eu-north-1")
    for node in cluster.nodes:
        with node.config.open("a") as f:
            f.write(f'[recording]\nsegment_s = 1.0\nstorage = "s3"\n[recording.s3]\n'
                    f'bucket = "{bucket}"\nendpoint_url = "{s3.endpoint_url}"\n'
                    'region = "eu-north-1"\nmax_attempts = 1\n'
                    # every page of the bench opens its link from 127.0.0.1
                    "[session]\nlink_opens_per_minute = 1000\n")  # fmt: skip
    try:
        cluster.start()
        await cluster.ready()
        out = await _failover(cluster, s3, bucket, args.runs)
        out["rolling_restart"] = await _rolling(cluster, args.rooms)
        return out
    finally:
        cluster.stop()
        s3.stop()
        pg.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """`{"failover_s": {"median", "max"}, "rolling_restart": {"rooms", "rooms_ended",
    "reconnects_per_room"}, "recording_segments_lost"}` (issue #12's benchmark)."""
    args.runs = getattr(args, "runs", 3)
    args.rooms = getattr(args, "rooms", 10)
    return asyncio.run(_measure(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="kill -9 runs (default 3)")
    parser.add_argument("--rooms", type=int, default=10, help="rooms in the rolling restart")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    result = measure(args)
    if args.json:
        print(json.dumps(result))
        return
    f, r = result["failover_s"], result["rolling_restart"]
    print(f"failover after kill -9: median {f['median']} s, max {f['max']} s ({f['runs']})")
    print(f"recording segments lost: {result['recording_segments_lost']}")
    print(f"rolling restart: {r['rooms']} rooms, {r['rooms_ended']} ended, "
          f"{r['reconnects_per_room']} reconnects per room (both pages), per page: "
          f"{r['reconnects_per_restart_of_rooms_node']} per restart of its room's node, "
          f"{r['reconnects_per_restart_of_other_node']} per restart of another node, at "
          f"most {r['reconnects_per_page_max_in_one_restart']} in one restart")


if __name__ == "__main__":
    main()
