"""The cluster (docs/cluster.md) with real parts: redis-server, three `callassist serve`
nodes on one PostgreSQL database, haproxy (round robin, no stickiness) in front."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiortc import RTCPeerConnection, RTCSessionDescription

from server.cluster.bridge import Bridge, Outbound, RemoteSink, frame
from server.cluster.registry import NodeRow, headroom, placement
from server.core.config import ConfigError, from_dict
from server.media import aiortc_hooks
from tests.cluster_client import Client, Socket, drain, owner_of
from tests.cluster_procs import METRICS_TOKEN, Cluster
from tests.conftest import PASSWORD
from tests.media_helpers import RED, close_to
from tests.media_helpers import Client as MediaClient

# --- pure parts ----------------------------------------------------------------------------


def row(name: str, rooms: int, max_rooms: int = 10, **kw: Any) -> NodeRow:
    return NodeRow(name, f"http://{name}", rooms, max_rooms, **kw)


def test_placement_by_headroom() -> None:
    assert placement([row("a", 5), row("b", 2), row("c", 7)]) == "b"
    # CPU and loop lag count: an idle-looking but busy node gets nothing new.
    assert placement([row("a", 1, cpu=0.95), row("b", 4)]) == "b"
    assert placement([row("a", 1, loop_lag_ms=190), row("b", 4)]) == "b"
    # Never a draining or a full node; None when nothing is left.
    assert placement([row("a", 0, draining=True), row("b", 9)]) == "b"
    assert placement([row("a", 10), row("b", 3, max_rooms=3)]) is None
    assert placement([]) is None
    assert headroom(row("a", 10)) == 0.0
    # Ties: fewest rooms, then the name.
    assert placement([row("b", 0), row("a", 0)]) == "a"
    assert NodeRow.from_json("not json") is None
    assert NodeRow.from_json(row("a", 1).to_json()) == row("a", 1)


def test_cluster_config_is_strict() -> None:
    assert from_dict({}).cluster.router == "local"
    with pytest.raises(ConfigError, match="cluster.redis_url: required"):
        from_dict({"cluster": {"router": "redis"}})
    with pytest.raises(ConfigError, match="cluster.internal_url: required"):
        from_dict({"cluster": {"router": "redis", "redis_url": "redis://127.0.0.1:6379/0"}})
    with pytest.raises(ConfigError, match="cluster.router: must be 'local' or 'redis'"):
        from_dict({"cluster": {"router": "etcd"}})
    with pytest.raises(ConfigError, match="node_ttl_s longer"):
        from_dict({"cluster": {"heartbeat_s": 5.0, "node_ttl_s": 2.0}})
    ok = from_dict({"cluster": {"router": "redis", "redis_url": "redis://h:1/0",
                                "internal_url": "http://10.0.0.5:8080"}})  # fmt: skip
    assert ok.cluster.internal_url == "http://10.0.0.5:8080"


# --- the running cluster -------------------------------------------------------------------


@pytest.fixture
def cluster(shared_cluster: Cluster) -> Cluster:
    """The three-node cluster of tests/conftest.py (test_cluster_media uses it too)."""
    return shared_cluster


async def rows_show(cluster: Cluster, what: str, ok: Any, timeout: float = 20) -> None:
    """Until every node's registry row (its heartbeat) satisfies `ok(row)`: polled, so a
    quiet machine goes on at once and a loaded one gets its time."""
    client = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            rows = [json.loads(await client.get(f"callassist:node:{n.name}") or "null")
                    for n in cluster.nodes]  # fmt: skip
            if all(r is not None and ok(r) for r in rows):
                return
            assert time.monotonic() < deadline, (what, rows)
            await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def one_room_per_node(cluster: Cluster, agent: Client) -> list[dict[str, Any]]:
    """A new session on each node (`POST /api/sessions` answers, in the nodes' order).
    Every node is filled first (its max_rooms_per_node), so each holds rooms whatever
    placement chose (on a loaded machine the CPU term of the headroom can put two rooms
    in a row on one node), then all but one per node are ended."""
    per_node: dict[str, list[dict[str, Any]]] = {}
    deadline = time.monotonic() + 60
    for n in range(len(cluster.nodes) * cluster.max_rooms):
        while True:  # a node that filled since placement read its row: 503 until its beat
            status, made = await agent.post("/api/sessions", {"phone": f"200001{n:02d}"})
            if status == 201:
                break
            assert status == 503 and time.monotonic() < deadline, made
            await asyncio.sleep(0.2)
        per_node.setdefault(await owner_of(cluster, made["session"]["id"]), []).append(made)
    assert sorted(per_node) == sorted(n.name for n in cluster.nodes), per_node
    for spare in (m for made in per_node.values() for m in made[1:]):
        status, body = await agent.post(f"/api/sessions/{spare['session']['id']}/end")
        assert status == 200, body
    return [per_node[n.name][0] for n in cluster.nodes]


async def end_all(agent: Client) -> None:
    status, body = await agent.get("/api/sessions")
    for s in body["sessions"]:
        if s["state"] != "ended":
            assert (await agent.post(f"/api/sessions/{s['id']}/end"))[0] == 200


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[18]


async def rtt(sock: Socket, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        await sock.send({"type": "ping"})
        await sock.expect("pong")
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def test_bridge_keeps_order_both_ways_and_closes_from_either_side(cluster: Cluster) -> None:
    agent = Client(cluster)
    await agent.login("node1")
    status, made = await agent.post("/api/sessions", {"phone": "20000012"}, where="node1")
    assert status == 201, made
    room = made["session"]["id"]
    owner = await owner_of(cluster, room)
    x, y = [n.name for n in cluster.nodes if n.name != owner]
    caller = Client(cluster)
    try:
        # The link opens through x (forwarded to the owner), the caller's socket is on y
        # and the agent's on x (both bridged to the owner).
        assert await caller.open_link(made["link"], where=x) == 303
        c_sock = await caller.ws("/ws/caller", where=y)
        a_sock = await agent.ws(f"/ws/agent/{room}", where=x)
        assert c_sock.welcome["room"]["id"] == room
        assert c_sock.welcome["room"]["caller"]["status"] == "opened"
        await c_sock.expect("room")  # the agent came: told through the bridge
        # 200 frames each way, in order: each unknown type comes back as its own error.
        for sock in (c_sock, a_sock):
            for i in range(200):
                await sock.send({"type": f"order{i}"})
            refs = []
            while len(refs) < 200:
                msg = await sock.recv()
                if msg["type"] == "error":
                    assert msg["code"] == "unknown_type"
                    refs.append(msg["ref"])
            assert refs == [f"order{i}" for i in range(200)]
        # The bridged agent socket closes (node x's side): the caller sees the agent away.
        await a_sock.ws.close()
        deadline = time.monotonic() + 15
        while True:
            msg = await c_sock.expect("room")
            if msg["room"]["agent"]["status"] == "away":
                break
            assert time.monotonic() < deadline
        # The added latency: the bridged caller and the agent directly on the owner, in
        # turns (the same load on both).
        a_sock = await agent.ws(f"/ws/agent/{room}", where=owner)
        await c_sock.expect("room")
        bridged: list[float] = []
        direct: list[float] = []
        for _ in range(100):
            bridged += await rtt(c_sock, 1)
            direct += await rtt(a_sock, 1)
        print(f"ping p95: bridged {p95(bridged):.2f} ms, direct {p95(direct):.2f} ms, "
              f"added {p95(bridged) - p95(direct):.2f} ms")  # fmt: skip
        # The owner's side closes: the agent ends the room, the bridged caller is told
        # and closed with the room's code.
        await a_sock.send({"type": "end"})
        await c_sock.expect("ended")
        closed = await c_sock.expect("_closed")
        assert closed["code"] == 4000
        await a_sock.ws.close()
    finally:
        await caller.close()
        await agent.close()


async def test_bridge_buffers_are_bounded(cluster: Cluster) -> None:
    """Overflow on either end closes that socket with a clear error, never grows."""
    client = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("callassist:bridge:peer-test")
    try:
        failed: list[str] = []
        out = Outbound(client, "callassist:bridge:nowhere", 8, failed.append)
        for i in range(50):  # nothing awaited in between: the publisher cannot keep up
            out.put({"k": "out", "c": "c1", "m": {"n": i}})
        assert failed and failed[0] == "bridge buffer full"
        out.finish()
        await out.drained()

        bridge = Bridge({}, client, "owner-test", 8)  # type: ignore[arg-type]
        sink = RemoteSink(bridge, "peer-test/1", "peer-test", "caller", "caller")
        bridge.served[sink.conn_id] = sink
        for i in range(20):  # the room's serve loop does not read: its queue fills
            bridge._handle(frame("m", sink.conn_id, f"m{i}"))
        got = []
        deadline = time.monotonic() + 10
        while len(got) < 2 and time.monotonic() < deadline:
            msg = await pubsub.get_message(timeout=1.0)
            if msg and msg["type"] == "message":
                got.append(msg["data"])
        # A message for the socket: framed, its JSON as the room's node encoded it.
        head, _, text = got[0].partition("\n")
        assert head == "o" + sink.conn_id
        assert json.loads(text)["code"] == "cluster_unavailable"
        assert "bridge buffer full" in json.loads(text)["message"]
        assert json.loads(got[1]) == {"k": "end", "c": sink.conn_id, "code": 1011,
                                      "reason": "bridge buffer full"}  # fmt: skip
    finally:
        await pubsub.aclose()
        await client.aclose()


async def test_placement_capacity_and_drain(cluster: Cluster) -> None:
    agent = Client(cluster)
    await agent.login()
    try:
        await end_all(agent)
        await rows_show(cluster, "no rooms", lambda r: r["rooms"] == 0)
        placed: dict[str, int] = {}
        for _ in range(9):  # 3 nodes x max_rooms_per_node 3, all through haproxy
            status, made = await agent.post("/api/sessions", {"phone": "20000012"})
            assert status == 201, made
            node = await owner_of(cluster, made["session"]["id"])
            placed[node] = placed.get(node, 0) + 1
        assert placed == {"node1": 3, "node2": 3, "node3": 3}
        before = len((await agent.get("/api/sessions"))[1]["sessions"])
        for where in ("node1", "node2", "node3", None):
            status, body = await agent.post("/api/sessions", {"phone": "20000012"}, where=where)
            assert status == 503, body
            assert body["error"]["code"] == "no_capacity"
            assert body["error"]["message"] == "no capacity right now, try again in a minute"
        assert len((await agent.get("/api/sessions"))[1]["sessions"]) == before  # no row
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        async with agent.http.get(cluster.node("node1").url + "/metrics", headers=auth) as r:
            text = await r.text()
        assert "callassist_cluster_no_capacity_total" in text
        await end_all(agent)

        # A draining node gets no new rooms.
        r = await asyncio.to_thread(drain, cluster, "node3")
        assert r.returncode == 0, r.stderr
        assert "node3: draining" in r.stdout
        await rows_show(cluster, "node3 draining",
                        lambda r: r["draining"] == (r["node_id"] == "node3"))  # fmt: skip
        for _ in range(5):
            status, made = await agent.post("/api/sessions", {"phone": "20000012"})
            assert status == 201, made
            assert await owner_of(cluster, made["session"]["id"]) != "node3"
        await end_all(agent)
    finally:
        # Undone even when an assertion failed: the next tests share this cluster.
        r = await asyncio.to_thread(drain, cluster, "node3", "--undo")
        await agent.close()
    assert r.returncode == 0, r.stderr


async def _offer(sock: Socket, pc: RTCPeerConnection, pc_id: int) -> None:
    await pc.setLocalDescription(await pc.createOffer())
    await sock.send({"type": "offer", "pc": pc_id, "sdp": pc.localDescription.sdp})
    answer = await sock.expect("answer", pc=pc_id)
    await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))


async def test_redis_down_keeps_media_and_recovers_by_itself(cluster: Cluster) -> None:
    # This process's aiortc peers offer loopback candidates, as the nodes do.
    aiortc_hooks.install(["127.0.0.1"])
    agent = Client(cluster)
    caller = Client(cluster)
    await agent.login()
    cam = MediaClient("caller", RED, recv=False)
    viewer = MediaClient("agent", None, send=False)
    try:
        await end_all(agent)
        status, made = await agent.post("/api/sessions", {"phone": "20000012"})
        assert status == 201, made
        room = made["session"]["id"]
        owner = await owner_of(cluster, room)
        other = next(n.name for n in cluster.nodes if n.name != owner)
        assert await caller.open_link(made["link"]) == 303  # through haproxy
        # The caller's socket on the owner; the agent's bridged from another node. Media
        # goes to the owner either way (UDP, never through Redis).
        c_sock = await caller.ws("/ws/caller", where=owner)
        await c_sock.send({"type": "accept", "notice": c_sock.welcome["notice"]["version"]})
        a_sock = await agent.ws(f"/ws/agent/{room}", where=other)
        await _offer(c_sock, cam.pc, 1)
        await _offer(a_sock, viewer.pc, 1)
        await viewer.wait_frames(10, 30)

        cluster.redis.stop()
        # The bridged socket is told and closed; the page would reconnect by itself.
        err = await a_sock.expect("error", timeout=15)
        assert err["code"] == "cluster_unavailable"
        assert (await a_sock.expect("_closed"))["code"] == 1011
        status, body = await agent.post("/api/sessions", {"phone": "20000012"}, where=other)
        assert status == 503 and body["error"]["code"] == "cluster_unavailable", body
        # ~20 s without Redis: the room's media keeps flowing to the agent's leg.
        for _ in range(4):
            await viewer.wait_frames(20, 15)
            await asyncio.sleep(4)
        assert viewer.last_rgb is not None and close_to(viewer.last_rgb, RED)
        await c_sock.send({"type": "ping"})
        await c_sock.expect("pong")  # the local socket never noticed

        cluster.redis.start()
        deadline = time.monotonic() + 30
        while True:  # no restart: the nodes re-register, re-claim and re-subscribe
            status, body = await agent.post("/api/sessions", {"phone": "20000013"}, where=other)
            if status == 201:
                break
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.5)
        # Re-claimed by its node at its next heartbeat (which may come after another
        # node's: under load the session above can be placed first).
        while await owner_of(cluster, room) != owner:
            assert time.monotonic() < deadline + 15, await owner_of(cluster, room)
            await asyncio.sleep(0.5)
        a_sock = await agent.ws(f"/ws/agent/{room}", where=other)  # bridged again
        assert a_sock.welcome["room"]["id"] == room
        await a_sock.send({"type": "ping"})
        await a_sock.expect("pong")
        await viewer.wait_frames(10, 15)
        await a_sock.ws.close()
        await c_sock.ws.close()
        await end_all(agent)
    finally:
        if cluster.redis.proc is None:  # failed while it was down: the next tests need it
            cluster.redis.start()
        await cam.close()
        await viewer.close()
        await caller.close()
        await agent.close()


async def test_browsers_through_haproxy_media_both_ways(cluster: Cluster, browser: Any) -> None:
    """Real Chromium pages that reach the service only through haproxy (round robin): the
    session is created, the link opened and both sockets served by whichever node haproxy
    picks, bridged to the room's node; pixels checked both ways."""
    from playwright.async_api import expect

    from tests.test_browser_e2e import caller_page, open_link, start_session, wait_colours

    ctx = await browser.new_context(viewport={"width": 1280, "height": 800}, permissions=["camera"])
    await ctx.add_init_script(
        "window.callassistShareOptions = {video: true, preferCurrentTab: true};"
    )
    agent = await ctx.new_page()
    await agent.goto(cluster.url + "/agent")
    await agent.get_by_test_id("login-username").fill("anna")
    await agent.get_by_test_id("login-password").fill(PASSWORD)
    await agent.get_by_test_id("login-submit").click()
    await expect(agent.get_by_test_id("new-session-phone")).to_be_visible()
    link = await start_session(agent)
    caller_ctx, caller = await caller_page(browser)
    try:
        await open_link(caller, link)
        await expect(agent.get_by_test_id("caller-progress")).to_have_attribute(
            "data-status", "opened", timeout=15_000
        )
        await caller.get_by_test_id("notice-accept").click()
        await caller.get_by_test_id("start-camera").click()
        await expect(caller.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "live", timeout=20_000
        )
        await wait_colours(
            agent,
            "camera-video",
            [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)],
            [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)],
            timeout=25,
        )
        await agent.evaluate(
            """() => { const d = document.createElement('div');
            d.style.position = 'fixed'; d.style.inset = '0';
            d.style.background = 'rgb(255, 0, 255)'; d.style.zIndex = '99999';
            d.style.pointerEvents = 'none'; document.body.appendChild(d); }"""
        )
        await agent.get_by_test_id("share-screen").click()
        await wait_colours(caller, "screen-video", [(0.5, 0.5)], [(255, 0, 255)], timeout=25)
        await agent.get_by_test_id("end-session").click()
        await agent.get_by_test_id("end-session-confirm").click()
        await expect(caller.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "ended", timeout=15_000
        )
    finally:
        await ctx.close()
        await caller_ctx.close()


async def _ops_rooms(sue: Client, where: str) -> dict[str, dict[str, Any]]:
    status, snap = await sue.get("/api/ops/snapshot", where=where)
    assert status == 200, snap
    return {r["id"]: r for r in snap["rooms"]}


async def test_ops_on_any_node_sees_every_room_watches_and_ends_it(cluster: Cluster) -> None:
    """Rooms on all three nodes: each node's ops API lists every room with its node and
    live stats; silent watch and "end room" through a node that does not hold the room."""
    aiortc_hooks.install(["127.0.0.1"])
    agent, sue, caller = Client(cluster), Client(cluster), Client(cluster)
    await agent.login()
    await sue.login(username="sue")
    cam = MediaClient("caller", RED, recv=False)
    watcher = MediaClient("supervisor", None, send=False)
    try:
        await end_all(agent)
        owners: dict[str, str] = {}
        links: dict[str, str] = {}
        for made in await one_room_per_node(cluster, agent):
            room_id = made["session"]["id"]
            owners[room_id] = await owner_of(cluster, room_id)
            links[room_id] = made["link"]
        assert sorted(owners.values()) == ["node1", "node2", "node3"], owners
        # Media in the room on node2: its live stats must show on every node's console.
        room = next(r for r, n in owners.items() if n == "node2")
        assert await caller.open_link(links[room]) == 303
        c_sock = await caller.ws("/ws/caller", where="node3")  # bridged to node2
        await c_sock.send({"type": "accept", "notice": c_sock.welcome["notice"]["version"]})
        await _offer(c_sock, cam.pc, 1)
        for where in ("node1", "node2", "node3"):
            deadline = time.monotonic() + 20
            while True:
                seen = await _ops_rooms(sue, where)
                mine = {r: seen[r] for r in owners if r in seen}
                live = mine.get(room, {}).get("tracks", {}).get("camera", {}).get("fps", 0)
                if len(mine) == 3 and live > 0:
                    break
                assert time.monotonic() < deadline, (where, seen)
                await asyncio.sleep(0.5)
            assert {r: v["node"] for r, v in mine.items()} == owners, where
            assert mine[room]["caller_status"] == "live"
            assert mine[room]["tracks"]["camera"]["kbps"] > 0
        # The agent's session list agrees on every node (the room's node writes its
        # state to the database; the others read it from there).
        views = []
        for where in ("node1", "node2", "node3"):
            status, body = await agent.get("/api/sessions", where=where)
            assert status == 200, body
            views.append({s["id"]: (s["state"], s["caller_status"]) for s in body["sessions"]
                          if s["id"] in owners})  # fmt: skip
        assert views[0] == views[1] == views[2], views
        # The SSE stream (the ops page's data source) of a non-owner has them too.
        async with sue.http.get(cluster.node("node1").url + "/api/ops/stream",
                                headers=sue.origin) as r:  # fmt: skip
            assert r.status == 200
            while True:
                line = (await asyncio.wait_for(r.content.readline(), 15)).decode()
                if line.startswith("data: "):
                    streamed = {x["id"]: x["node"] for x in json.loads(line[6:])["rooms"]}
                    break
        assert {r: streamed.get(r) for r in owners} == owners

        # Silent watch from node1: the socket is bridged to node2, the answer and the
        # camera's frames come (media straight from node2), the room's caller is not told.
        w_sock = await sue.ws(f"/ws/watch/{room}", where="node1")
        assert w_sock.welcome["role"] == "supervisor"
        await _offer(w_sock, watcher.pc, 1)
        await watcher.wait_frames(10, 30)
        assert watcher.last_rgb is not None and close_to(watcher.last_rgb, RED)
        deadline = time.monotonic() + 15
        while (await _ops_rooms(sue, "node3"))[room]["watchers"] != 1:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)

        # "End room" sent to node1, which does not hold it: node2 ends it, both bridged
        # pages get `ended`, the record says ended.
        reason = {"reason": "test: end from another node"}
        status, body = await sue.post(f"/api/ops/rooms/{room}/end", reason, where="node1")
        assert status == 200 and body == {"ended": True, "room": room}, body
        await c_sock.expect("ended")
        assert (await c_sock.expect("_closed"))["code"] == 4000
        deadline = time.monotonic() + 30  # the watcher: told or closed, never left open
        while (await w_sock.recv(max(deadline - time.monotonic(), 0.01)))["type"] not in (
            "ended", "_closed"):  # fmt: skip
            pass
        status, row = await agent.get(f"/api/sessions/{room}", where="node3")
        assert status == 200 and row["session"]["state"] == "ended", row
        deadline = time.monotonic() + 15
        while room in await _ops_rooms(sue, "node3"):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
        # Again: no such live room anymore (through any node).
        status, body = await sue.post(f"/api/ops/rooms/{room}/end", {"reason": "again"},
                                      where="node3")  # fmt: skip
        assert status == 404, body
        await end_all(agent)
    finally:
        await cam.close()
        await watcher.close()
        await caller.close()
        await sue.close()
        await agent.close()


def test_one_redis_client_factory_two_flavours() -> None:
    """server/cluster/redis.py makes both clients: decoded for the router, registry and
    bridge (2 s timeouts); bytes for the rate limits and the ops feed (shorter)."""
    from server.cluster import redis as cluster_redis
    from server.cluster import redis_client

    cfg = from_dict({"cluster": {"router": "redis", "redis_url": "redis://127.0.0.1:1/0",
                                 "internal_url": "http://127.0.0.1:2"}})  # fmt: skip
    decoded = cluster_redis.connect(cfg.cluster).connection_pool.connection_kwargs
    raw = redis_client.connect("redis://127.0.0.1:1/0").connection_pool.connection_kwargs
    assert decoded["decode_responses"] is True and decoded["socket_timeout"] == 2.0
    assert raw["decode_responses"] is False and raw["socket_timeout"] == 0.5
    assert raw["socket_connect_timeout"] == 1.0 and raw["port"] == decoded["port"] == 1
