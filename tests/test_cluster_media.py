"""Media stays in its room across a cluster: three rooms, one on each of three nodes
(the shared cluster of tests/conftest.py is filled, so each node holds its share, and one
room of each node is called), every caller's camera a colour of its own, both signalling
sockets of each room bridged from the other two nodes; each agent sees only its own
caller's colour (docs/cluster.md, "What crosses nodes": media goes straight to the
room's node, never through Redis or another room)."""

from __future__ import annotations

import asyncio

import pytest

from server.media import aiortc_hooks
from tests.cluster_procs import Cluster
from tests.media_helpers import BLUE, GREEN, RED, close_to
from tests.media_helpers import Client as MediaClient
from tests.test_cluster import Client, _offer, end_all, one_room_per_node, owner_of

COLOURS = (RED, GREEN, BLUE)


@pytest.fixture
def cluster(shared_cluster: Cluster) -> Cluster:
    """The three-node cluster of tests/conftest.py, shared with test_cluster."""
    return shared_cluster


async def test_each_agent_sees_only_its_own_callers_camera(cluster: Cluster) -> None:
    aiortc_hooks.install(["127.0.0.1"])  # this process's peers: loopback candidates
    agent = Client(cluster)
    await agent.login()
    callers = [Client(cluster) for _ in COLOURS]
    cams = [MediaClient("caller", rgb, recv=False) for rgb in COLOURS]
    viewers = [MediaClient("agent", None, send=False) for _ in COLOURS]
    names = [n.name for n in cluster.nodes]
    sockets = []
    try:
        await end_all(agent)
        chosen = await one_room_per_node(cluster, agent)
        owners = []
        for i, caller in enumerate(callers):
            made = chosen[i]
            room = made["session"]["id"]
            owner = await owner_of(cluster, room)
            owners.append(owner)
            assert await caller.open_link(made["link"]) == 303
            # Both sockets on nodes that do not hold the room: bridged over Redis.
            others = [n for n in names if n != owner]
            c_sock = await caller.ws("/ws/caller", where=others[0])
            await c_sock.send({"type": "accept", "notice": c_sock.welcome["notice"]["version"]})
            a_sock = await agent.ws(f"/ws/agent/{room}", where=others[1])
            sockets += [c_sock, a_sock]
            await _offer(a_sock, viewers[i].pc, 1)  # the agent first, as in the product
            await _offer(c_sock, cams[i].pc, 1)
        assert sorted(owners) == sorted(names), owners  # one room on each node
        for v in viewers:
            await v.wait_frames(10, 30)
        # Sample each agent's picture for a while: every sample its own caller's colour.
        seen: list[list[tuple[int, int, int]]] = [[] for _ in COLOURS]
        for _ in range(20):
            await asyncio.sleep(0.15)
            for i, v in enumerate(viewers):
                if v.last_rgb is not None:
                    seen[i].append(v.last_rgb)
        for i, rgb in enumerate(COLOURS):
            assert seen[i], f"room {i}: no picture"
            wrong = [c for c in seen[i] if not close_to(c, rgb)]
            assert not wrong, f"room {i} ({owners[i]}) expected {rgb}, also saw {wrong[:3]}"
    finally:
        for sock in sockets:
            await sock.ws.close()
        for peer in (*cams, *viewers):
            await peer.close()
        for c in callers:
            await c.close()
        await end_all(agent)
        await agent.close()
