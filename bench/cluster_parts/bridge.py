"""The signal bridge's added latency, measured in the running cluster: one room, the
caller's socket on a node that does not hold it (bridged over Redis) and the agent's on
the room's node (direct); pings in turns on both (the same load on both), p95 of the
round trips compared."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from bench.cluster_parts.clients import Socket, connect
from bench.lib.procs import Cluster
from bench.lib.stats import percentile


async def _rtt(sock: Socket) -> float:
    t0 = time.perf_counter()
    await sock.send({"type": "ping"})
    await sock.expect("pong")
    return (time.perf_counter() - t0) * 1000


async def bridge_latency(cluster: Cluster, pings: int) -> dict[str, Any]:
    base = cluster.url
    origin = {"Origin": base}
    jar = aiohttp.CookieJar(unsafe=True)
    async with aiohttp.ClientSession(cookie_jar=jar) as agent, \
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as phone:  # fmt: skip
        login = {"username": "anna", "password": cluster.password}
        async with agent.post(base + "/api/login", json=login, headers=origin) as r:
            csrf = (await r.json())["csrf"]
        async with agent.post(base + "/api/sessions", json={"phone": "20000012"},
                              headers={**origin, "X-CSRF-Token": csrf}) as r:  # fmt: skip
            made = await r.json()
        room = made["session"]["id"]
        client = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)
        try:
            owner = str(await client.get(f"callassist:room:{room}"))
        finally:
            await client.aclose()
        # With workers, a node id is "<node>-w<i>": the socket must reach that process,
        # which only one node address without workers can promise.
        by_id = {i: n for n in cluster.nodes for i in n.node_ids}
        other = next(n for n in cluster.nodes if owner not in n.node_ids)
        path = "/j/" + made["link"].split("/j/")[1]
        async with phone.get(base + path) as r:
            assert r.status == 200
        async with phone.post(base + path, headers=origin, allow_redirects=False) as r:
            assert r.status == 303
        c_sock, welcome = await connect(phone, other.url, "/ws/caller", base)
        await c_sock.send({"type": "accept", "notice": welcome["notice"]["version"]})
        a_sock, _ = await connect(agent, by_id[owner].url, f"/ws/agent/{room}", base)
        bridged, direct = [], []
        try:
            for _ in range(pings):
                bridged.append(await _rtt(c_sock))
                direct.append(await _rtt(a_sock))
        finally:
            await a_sock.send({"type": "end"})
            await c_sock.close()
            await a_sock.close()
    p_b, p_d = percentile(bridged, 0.95), percentile(direct, 0.95)
    return {"bridged_p95_ms": round(p_b, 2), "direct_p95_ms": round(p_d, 2),
            "added_p95_ms": round(p_b - p_d, 2), "pings": pings, "owner": owner}  # fmt: skip
