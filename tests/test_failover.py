"""Failover and drain (docs/cluster.md, "Failover and drain") with real parts: redis-server,
three `callassist serve` nodes on one PostgreSQL database, haproxy in front; the pages are
aiortc stand-ins (tests/failover_pages.py) and real Chromium pages (tests/failover_browser.py)
that reach the service only through haproxy.

Over 400 lines on purpose: every test here shares one module-scoped cluster (3 nodes,
PostgreSQL, Redis, moto S3, haproxy: a minute to start on a loaded machine), which a split
into modules would start once per module."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from server.cluster.failover import room_from_record
from server.core.config import ConfigError, from_dict
from server.media import aiortc_hooks
from tests.cluster_client import drain, owner_of
from tests.cluster_procs import CLI, SERVER_KEY, Cluster, Node
from tests.failover_pages import Call, kill, restart


def test_room_from_record_rebuilds_what_the_pages_need() -> None:
    row = {"id": "s1", "agent_id": 7, "created_at": 100.0, "state": "active",
           "caller_status": "live", "device_type": "Android phone", "accepted_at": 101.0,
           "media_started_at": 102.0}  # fmt: skip
    room = room_from_record(row, "anna", 500.0)
    assert (room.agent_id, room.agent_name, room.state) == (7, "anna", "active")
    assert room.notice_accepted and room.caller_device == "Android phone"
    # The caller's page was connected to the node that went: it reconnects.
    assert room.caller_status == "reconnecting" and room.reopened_at == 500.0
    assert room.last_activity == 500.0 and not any(room.tracks.values())
    fresh = room_from_record({**row, "state": "waiting", "caller_status": "link_sent",
                              "device_type": "", "accepted_at": None,
                              "media_started_at": None}, "anna", 500.0)  # fmt: skip
    assert fresh.caller_status == "link_sent" and not fresh.notice_accepted
    assert fresh.caller_device is None and fresh.state == "waiting"


def test_drain_timeout_is_strict() -> None:
    assert from_dict({}).cluster.drain_timeout_s == 20.0
    with pytest.raises(ConfigError, match="cluster.drain_timeout_s"):
        from_dict({"cluster": {"drain_timeout_s": 0}})
    with pytest.raises(ConfigError, match="cluster.drain_timeout_s"):
        from_dict({"cluster": {"drain_timeout_s": 301}})


# The nodes share the recording master key and the bucket, as a cluster's nodes must.
RECORDING_ENV = {
    "CALLASSIST_RECORDING_KEYS": "mk-0001:" + base64.b64encode(b"k" * 32).decode(),
    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "eu-north-1",
}  # fmt: skip


@pytest.fixture(scope="module")
async def cluster(postgres: Any, s3_server: Any) -> AsyncIterator[Cluster]:
    saved = {k: os.environ.get(k) for k in RECORDING_ENV}
    os.environ.update(RECORDING_ENV)  # the nodes (and the CLI) inherit it
    c = Cluster(postgres.create_database("fo" + uuid.uuid4().hex[:12]), nodes=3, max_rooms=10)
    c.db_url = c.nodes[0].config.read_text().split('database_url = "')[1].split('"')[0]  # type: ignore[attr-defined]
    c.bucket = s3_server.create_bucket("eu-north-1")  # type: ignore[attr-defined]
    c.s3 = s3_server  # type: ignore[attr-defined]
    for node in c.nodes:  # on demand (the default mode): only the recording test records
        with node.config.open("a") as f:
            f.write(f'[recording]\nsegment_s = 1.0\nstorage = "s3"\n[recording.s3]\n'
                    f'bucket = "{c.bucket}"\nendpoint_url = "{s3_server.endpoint_url}"\n'  # type: ignore[attr-defined]
                    'region = "eu-north-1"\nmax_attempts = 1\n')  # fmt: skip
    try:
        c.start()
        await c.ready()
        yield c
    except BaseException:
        print(c.logs())
        raise
    finally:
        c.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# Real processes started and stopped in turn on a loaded machine: minutes, not seconds.
@pytest.mark.timeout(600)
async def test_killed_node_rooms_reopen_on_another_node(cluster: Cluster) -> None:
    """kill -9 of the room's node: its heartbeat expires, the pages' reconnect lands on a
    surviving node, which re-opens the room from its session record; media comes back at
    the agent with no new link. Measured over several runs; asserted loosely."""
    aiortc_hooks.install(["127.0.0.1"])
    call = Call(cluster)
    times = []
    try:
        await call.start()
        for _ in range(3):
            owner = cluster.node(await owner_of(cluster, call.room))
            t0 = time.monotonic()
            await kill(owner)
            times.append(await call.agent_page.frames_after(t0, 5, 60))
            new_owner = await owner_of(cluster, call.room)
            assert new_owner not in ("None", owner.name), new_owner
            assert await call.state() != "ended"
            assert any(m["type"] == "reopened" for m in call.agent_page.messages)
            # A node that starts (here: the one killed) ends nobody else's session.
            await restart(cluster, owner)
            assert await call.state() != "ended"
        reopened = [m for m in call.agent_page.messages if m["type"] == "reopened"]
        assert reopened[-1]["toolkit"] == {"chat": "lost", "marks": "lost",
                                           "frozen": "lost", "images": "lost"}  # fmt: skip
        print(f"\nfailover after kill -9 (s): {[round(t, 2) for t in times]}, "
              f"median {statistics.median(times):.2f}")
        assert statistics.median(times) < 30
        assert call.agent_page.welcomes >= 4 and call.caller_page.welcomes >= 4
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await call.close()


# Real processes started and stopped in turn on a loaded machine: minutes, not seconds.
@pytest.mark.timeout(600)
async def test_sigterm_drains_the_node_and_the_pages_move_once(cluster: Cluster) -> None:
    aiortc_hooks.install(["127.0.0.1"])
    call = Call(cluster)
    try:
        await call.start()
        owner = cluster.node(await owner_of(cluster, call.room))
        before = [p.welcomes for p in call.pages]
        t0 = time.monotonic()
        assert owner.proc is not None
        owner.proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(owner.proc.wait, 25)  # within cluster.drain_timeout_s
        exited = time.monotonic() - t0
        took = await call.agent_page.frames_after(t0, 5, 60)
        print(f"\ndrain by SIGTERM: node exited after {exited:.2f} s, media back after "
              f"{took:.2f} s")
        for page in call.pages:
            assert any(m["type"] == "moved" for m in page.messages), page.role
        await asyncio.sleep(1)
        assert [p.welcomes for p in call.pages] == [b + 1 for b in before]  # once each
        assert await owner_of(cluster, call.room) not in ("None", owner.name)
        assert await call.state() != "ended"
        owner._fh.close()
        await restart(cluster, owner)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await call.close()


# Real processes started and stopped in turn on a loaded machine: minutes, not seconds.
@pytest.mark.timeout(600)
async def test_node_drain_command_moves_its_rooms(cluster: Cluster) -> None:
    aiortc_hooks.install(["127.0.0.1"])
    call = Call(cluster)
    try:
        await call.start()
        owner = await owner_of(cluster, call.room)
        t0 = time.monotonic()
        r = await asyncio.to_thread(drain, cluster, owner)
        assert r.returncode == 0, r.stderr
        await call.agent_page.frames_after(t0, 5, 60)
        assert await owner_of(cluster, call.room) not in ("None", owner)
        assert any(m["type"] == "moved" for m in call.caller_page.messages)
        assert cluster.node(owner).proc.poll() is None  # drained, still up until stopped
        assert await call.state() != "ended"
    finally:
        r = await asyncio.to_thread(drain, cluster, owner, "--undo")
        await call.close()


async def test_node_drain_stop_exits_the_node(cluster: Cluster) -> None:
    """`callassist node drain NODE --stop`: the room moves (the pages get `moved`, media
    comes back on another node), then the node exits by itself, cleanly, and its flag is
    gone (started again under the same id, it takes rooms)."""
    aiortc_hooks.install(["127.0.0.1"])
    call = Call(cluster)
    node = None
    try:
        await call.start()
        owner = await owner_of(cluster, call.room)
        node = cluster.node(owner)
        t0 = time.monotonic()
        r = await asyncio.to_thread(drain, cluster, owner, "--stop")
        assert r.returncode == 0, r.stderr
        assert "then it exits" in r.stdout
        await call.agent_page.frames_after(t0, 5, 60)
        assert await owner_of(cluster, call.room) not in ("None", owner)
        assert any(m["type"] == "moved" for m in call.caller_page.messages)
        # drain_timeout_s (20 s) bounds the drain; the process then closes what is left.
        code = await asyncio.to_thread(node.proc.wait, 60)
        print(f"\n{owner} exited {code} {time.monotonic() - t0:.1f} s after node drain --stop")
        assert code == 0
        assert await call.state() != "ended"
    finally:
        await call.close()
        if node is not None and node.proc.poll() is not None:
            await restart(cluster, node)


# Real processes started and stopped in turn on a loaded machine: minutes, not seconds.
@pytest.mark.timeout(600)
async def test_rolling_restart_ends_no_room(cluster: Cluster) -> None:
    """Every node restarted in turn (SIGTERM, start again) while rooms are live: no room
    ends; every page reconnects when its room's node restarts; the reconnects per restart
    of the room's node and of another node are counted and printed."""
    from bench.cluster_failover import RestartCounts

    aiortc_hooks.install(["127.0.0.1"])
    calls = [Call(cluster) for _ in range(3)]
    counts = RestartCounts()
    try:
        for call in calls:
            await call.start()
        for node in cluster.nodes:
            owners = {c.room: await owner_of(cluster, c.room) for c in calls}
            before = {id(p): p.reconnects for c in calls for p in c.pages}
            t0 = time.monotonic()
            await asyncio.to_thread(node.stop)  # SIGTERM: drains, exits
            await restart(cluster, node)
            for call in calls:
                await call.agent_page.frames_after(0, 5, 60)
            await asyncio.sleep(1)
            for call in calls:
                for page in call.pages:
                    counts.add(owners[call.room] == node.name, page.reconnects - before[id(page)])
            print(f"\n{node.name} restarted in {time.monotonic() - t0:.1f} s")
        ended = [c.room for c in calls if await c.state() == "ended"]
        summary = counts.summary(len(calls))
        print(f"rolling restart: {len(calls)} rooms, ended {len(ended)}, {summary}")
        assert ended == []
        # Every page moved when its room's node went; the counts are printed, not asserted
        # (a page occasionally reconnects twice in one restart: bench/cluster_failover.py).
        assert counts.own and all(n >= 1 for n in counts.own)
        for call in calls:  # media flows in every room after the last restart
            assert call.agent_page.media is not None
            await call.agent_page.media.wait_frames(5, 30)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        for call in calls:
            await call.close()


# One Chromium run here (each restarts a node: tens of seconds on a loaded machine); the
# median over several is bench/cluster_failover.py's (aiortc pages) and the aiortc test's.
CHROMIUM_RUNS = 1


# Real processes started and stopped in turn on a loaded machine: minutes, not seconds.
@pytest.mark.timeout(600)
async def test_browsers_recover_after_kill_9_of_the_rooms_node(
    cluster: Cluster, browser: Any
) -> None:
    """Real Chromium caller and agent through haproxy; kill -9 of the room's node: both
    pages recover by themselves (no new link, same device cookie), pixels checked; the
    time from the kill to the first new frame at the agent is measured and the timeline
    (Redis, both pages' sockets and peer connections) printed."""
    from playwright.async_api import expect

    from tests.failover_browser import (
        COLOURS,
        QUADRANTS,
        format_timeline,
        frame_after,
        start_call,
        watch_owner,
    )  # fmt: skip
    from tests.test_browser_e2e import wait_colours

    call = await start_call(cluster, browser)
    agent, caller, room = call.agent, call.caller, call.room
    times = []
    try:
        for _ in range(CHROMIUM_RUNS):
            owner = cluster.node(await owner_of(cluster, room))
            killed_at = time.time() * 1000  # the pages' clock is this machine's
            async with watch_owner(cluster, room, killed_at) as redis_side:
                await kill(owner)
                back = await frame_after(agent, killed_at)
                times.append((back - killed_at) / 1000)
                events = [*redis_side, *await call.events(killed_at)]
            events.append((back - killed_at, "agent: first new frame presented"))
            print(format_timeline(f"\nkill -9 of {owner.name} at 0 s:", events))
            await wait_colours(agent, "camera-video", QUADRANTS, COLOURS, timeout=30)
            assert await owner_of(cluster, room) not in ("None", owner.name)
            await restart(cluster, owner)
        await expect(caller.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "live", timeout=20_000
        )
        print(f"Chromium: media back at the agent after kill -9 (s): "
              f"{[round(t, 2) for t in times]}, median {statistics.median(times):.2f}")
        assert statistics.median(times) < 30
        await agent.get_by_test_id("end-session").click()
        await agent.get_by_test_id("end-session-confirm").click()
        await expect(caller.get_by_test_id("call-state")).to_have_attribute(
            "data-state", "ended", timeout=15_000
        )
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await call.close()


# Real processes started and stopped in turn on a loaded machine: minutes, not seconds.
@pytest.mark.timeout(600)
async def test_browsers_move_once_when_the_rooms_node_drains(
    cluster: Cluster, browser: Any
) -> None:
    """Real Chromium caller and agent through haproxy; SIGTERM to the room's node: both
    pages get `moved`, reconnect once, media comes back (pixels), the node exits within
    `cluster.drain_timeout_s`."""
    from tests.failover_browser import (
        COLOURS,
        QUADRANTS,
        format_timeline,
        frame_after_reconnect,
        start_call,
        watch_owner,
    )  # fmt: skip
    from tests.test_browser_e2e import wait_colours

    call = await start_call(cluster, browser)
    owner = cluster.node(await owner_of(cluster, call.room))
    try:
        assert owner.proc is not None
        t0 = time.time() * 1000
        async with watch_owner(cluster, call.room, t0) as redis_side:
            owner.proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(owner.proc.wait, 25)
            exited = time.time() * 1000 - t0
            try:
                # Bounded: a page that never gets its media back fails here, with the
                # timeline, not at the module's timeout.
                await asyncio.wait_for(frame_after_reconnect(call.agent, t0), 90)
                await asyncio.wait_for(wait_colours(call.agent, "camera-video", QUADRANTS,
                                                    COLOURS, timeout=30), 60)  # fmt: skip
            finally:
                print(format_timeline(f"\nSIGTERM to {owner.name} at 0 s (so far):",
                                      [*redis_side, *await call.events(t0)]))  # fmt: skip
            await asyncio.sleep(1)  # a second reconnect would show by now
            events = [*redis_side, *await call.events(t0)]
        events.append((exited, f"{owner.name} exited"))
        print(format_timeline(f"\nSIGTERM to {owner.name} at 0 s:", events))
        assert exited / 1000 < 20.0  # cluster.drain_timeout_s (the default)
        for page in (call.agent, call.caller):
            assert await call.count(page, "moved", t0) == 1
            assert await call.count(page, "socket open", t0) == 1  # reconnected once
        assert await owner_of(cluster, call.room) not in ("None", owner.name)
        owner._fh.close()
        await restart(cluster, owner)
        await call.agent.get_by_test_id("end-session").click()
        await call.agent.get_by_test_id("end-session-confirm").click()
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await call.close()


async def _recordings(call: Call) -> list[dict[str, Any]]:
    status, body = await call.api("GET", f"/api/sessions/{call.room}/recordings")
    assert status == 200, body
    return list(body["recordings"])


async def _verify(cluster: Cluster, node: Node, rid: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "recording", "verify", rid, "--data-dir", str(node.data), "--config",
        str(node.config), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "CALLASSIST_SERVER_KEY": SERVER_KEY},
    )  # fmt: skip
    out = (await proc.communicate())[0].decode()
    assert proc.returncode is not None
    return proc.returncode, out


@pytest.mark.timeout(600)
async def test_recording_across_a_failover(cluster: Cluster) -> None:
    """kill -9 while recording to (moto) S3: every segment uploaded before the kill stays
    verifiable; the re-opening node seals that recording as incomplete; the room records
    on its new node into a new recording of the same session; the report shows both."""
    aiortc_hooks.install(["127.0.0.1"])
    call = Call(cluster)
    s3 = cluster.s3.client(region="eu-north-1")  # type: ignore[attr-defined]
    try:
        await call.start()
        status, body = await call.api("POST", f"/api/sessions/{call.room}/recording",
                                     {"action": "start"})  # fmt: skip
        assert status == 200, body
        first = body["recording"]["id"]

        def segments(rid: str) -> list[str]:
            listed = s3.list_objects_v2(Bucket=cluster.bucket, Prefix=f"recordings/{rid}/")  # type: ignore[attr-defined]
            return [o["Key"] for o in listed.get("Contents", []) if "segment-" in o["Key"]]

        deadline = time.monotonic() + 60
        while len(await asyncio.to_thread(segments, first)) < 3:
            assert time.monotonic() < deadline, "no segments uploaded"
            await asyncio.sleep(0.3)
        owner = cluster.node(await owner_of(cluster, call.room))
        uploaded = await asyncio.to_thread(segments, first)
        t0 = time.monotonic()
        await kill(owner)
        await call.agent_page.frames_after(t0, 5, 60)
        deadline = time.monotonic() + 60
        while (rows := {r["id"]: r for r in await _recordings(call)})[first]["status"] != (
            "incomplete"
        ):  # sealed by the node that re-opened the room
            assert time.monotonic() < deadline, rows
            await asyncio.sleep(0.5)
        status, body = await call.api("POST", f"/api/sessions/{call.room}/recording",
                                     {"action": "start"})  # fmt: skip
        assert status == 200, body
        second = body["recording"]["id"]
        assert second != first
        deadline = time.monotonic() + 60  # the new node records: segments reach S3
        while len(await asyncio.to_thread(segments, second)) < 2:
            assert time.monotonic() < deadline, "the second recording uploads no segments"
            await asyncio.sleep(0.3)
        status, body = await call.api("POST", f"/api/sessions/{call.room}/recording",
                                     {"action": "stop"})  # fmt: skip
        assert status == 200, body
        survivor = cluster.node(await owner_of(cluster, call.room))
        code, out = await _verify(cluster, survivor, first)
        assert code == 3, out  # intact, interrupted (the recovery manifest)
        rows = {r["id"]: r for r in await _recordings(call)}
        lost = len(uploaded) - rows[first]["segments"]
        print(f"\nrecording across a failover: {len(uploaded)} segments uploaded before the "
              f"kill, {rows[first]['segments']} sealed, lost {max(lost, 0)}")
        assert lost <= 0, (uploaded, rows[first])
        deadline = time.monotonic() + 30
        while (code := (await _verify(cluster, survivor, second))[0]) != 0:
            assert time.monotonic() < deadline, "the second recording does not verify"
            await asyncio.sleep(1)
        status, report = await call.api("GET", f"/api/sessions/{call.room}/report")
        assert status == 200, report
        parts = report["report"]["recording"]["recordings"]
        assert [p["id"] for p in parts] == [first, second]
        assert parts[0]["status"] == "incomplete" and parts[1]["status"] == "complete"
        assert parts[0]["ended_at"] <= parts[1]["started_at"]  # the gap
        await restart(cluster, owner)
    except BaseException:
        print(cluster.logs())
        raise
    finally:
        await call.close()


async def test_orphan_sweep_ends_sessions_nobody_reopens(cluster: Cluster) -> None:
    """A live session no node holds is ended `inactive` once orphaned for the inactivity
    timeout (not before, and never one whose room a node holds); the end is audited."""
    from types import SimpleNamespace

    import redis.asyncio as aioredis
    from aiohttp import web

    from server.cluster.failover import Failover, orphan_key
    from server.cluster.redis import room_key
    from server.core.appkeys import AUDIT, CLOCK, DB
    from server.core.audit import Audit
    from server.core.db import Database
    from server.rooms.manager import ROOMS, RoomManager

    now = [time.time()]
    db = Database(cluster.db_url)  # type: ignore[attr-defined]
    app = web.Application()
    app[DB], app[CLOCK] = db, lambda: now[0]
    app[AUDIT] = Audit(db, app[CLOCK])
    app[ROOMS] = RoomManager(from_dict({"session": {"inactivity_timeout_s": 60}}), db, app[CLOCK])
    redis = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)
    sweeper = Failover(app, SimpleNamespace(redis=redis, draining=False), "sweeper")  # type: ignore[arg-type]
    anna = await db.user_by_name("anna")
    assert anna is not None
    orphan, held = "orph" + uuid.uuid4().hex[:12], "held" + uuid.uuid4().hex[:12]
    for sid in (orphan, held):
        await db.add_session(id=sid, agent_id=anna.id, phone="+4520000012", reference="",
                             state="active", caller_status="live", device_type="",
                             notice_version="", created_at=now[0])  # fmt: skip
    await redis.set(room_key(held), "node1", px=60_000)
    try:
        await sweeper.sweep()
        assert await redis.get(orphan_key(orphan)) is not None  # seen orphaned, kept
        assert (await db.get_session(orphan))["state"] == "active"  # type: ignore[index]
        now[0] += 61
        await sweeper.sweep()
        row = await db.get_session(orphan)
        assert row is not None and (row["state"], row["end_reason"]) == ("ended", "inactive")
        assert (await db.get_session(held))["state"] == "active"  # type: ignore[index]
        assert await redis.get(orphan_key(orphan)) is None and sweeper.orphans_ended == 1
    finally:
        await redis.delete(room_key(held), orphan_key(held))
        await db.update_session(held, state="ended", caller_status="ended", ended_at=now[0],
                                end_reason="agent_ended")  # fmt: skip
        await redis.aclose()
        await db.close()


async def test_hand_off_forgets_the_rooms_recording_state(make_server: Any) -> None:
    """A room handed over while draining leaves nothing of itself in the recording service
    (photo count, lock, pending snapshots): it lives on another node now."""
    import io
    from types import SimpleNamespace

    from PIL import Image

    from server.cluster.failover import Failover
    from server.recording.service import RECORDING
    from tests.test_snapshots import caller_session, upload

    server = await make_server()
    agent, sig, sid = await caller_session(server)
    png = io.BytesIO()
    Image.new("RGB", (32, 24), (200, 10, 10)).save(png, "PNG")
    assert (await upload(sig, server, png.getvalue()))[0] == 201
    rec = server.app[RECORDING]
    rec._snapshots[sid] = {"snap-pending": server.clock() + 30}
    assert sid in rec._photo_counts

    async def no_rows() -> list[Any]:
        return []  # no other node: handed over to "any" (the pages' reconnect re-opens it)

    registry = SimpleNamespace(rows=no_rows, redis=None, draining=True)
    await Failover(server.app, registry, "node1").hand_off(sid)  # type: ignore[arg-type]
    assert sid not in rec._photo_counts and sid not in rec._locks
    assert sid not in rec._snapshots
    await sig.close()


async def test_a_node_nobody_listens_for_is_gone_before_its_row_expires(
    cluster: Cluster,
) -> None:
    """The bridge takes a node for dead once nobody is subscribed to its channel (twice,
    CONFIRM_GONE_S apart), remembers it, and forgets it when the node listens again; the
    cluster's live nodes are never gone."""
    import contextlib

    import redis.asyncio as aioredis

    from server.cluster.bridge import Bridge

    client = aioredis.Redis.from_url(cluster.redis.url, decode_responses=True)
    watcher = Bridge({}, client, "watcher", 8)  # type: ignore[arg-type]
    ghost = Bridge({}, client, "ghost-" + uuid.uuid4().hex[:8], 8)  # type: ignore[arg-type]

    async def listen() -> asyncio.Task[None]:
        task = asyncio.create_task(ghost.run())
        await asyncio.wait_for(ghost.subscribed.wait(), 10)
        return task

    task = await listen()
    try:
        assert not await watcher.gone(ghost.node_id)
        for node in cluster.nodes:
            if node.proc is not None and node.proc.poll() is None:
                assert not await watcher.gone(node.name)
        task.cancel()  # what kill -9 does to its subscription: Redis drops it
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert await watcher.gone(ghost.node_id)
        assert ghost.node_id in watcher._dead  # the next page does not wait again
        assert await watcher.gone(ghost.node_id)
        ghost.subscribed.clear()
        task = await listen()  # restarted under the same id
        assert not await watcher.gone(ghost.node_id)
        assert ghost.node_id not in watcher._dead
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await client.aclose()
