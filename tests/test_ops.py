"""The ops console's API over real HTTP: roles, live room stats from real media (aiortc
clients through the server), ending a room, a supervisor's silent watch, the post-session
report and today's numbers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription

import tests.test_protocol_client as proto
from server.core.appkeys import AUDIT
from server.observe.ops import OPS
from tests.media_helpers import RED, SolidTrack
from tests.signalling_client import SUBPROTOCOL, Signalling, open_link

PHONE_DIGITS = "20000012"


async def live_room(server: Any, agent_name: str = "anna", phone: str = PHONE_DIGITS) -> dict:
    """A room with a caller publishing RED (aiortc) and the agent receiving it."""
    agent_http = await server.agent(agent_name)
    created = await agent_http.new_session(phone)
    room = created["session"]["id"]
    caller = proto.DocClient(await Signalling.caller(server.url, created["link"]), "caller")
    await caller.sig.send({"type": "accept", "notice": caller.sig.welcome["notice"]["version"]})
    await caller.sig.wait_room(status="accepted")
    await caller.connect(SolidTrack(RED))
    agent = proto.DocClient(await Signalling.agent(server.url, agent_http.http, room), "agent")
    await agent.connect(None)
    assert agent.watcher is not None
    await agent.watcher.wait_colour(RED)
    return {"id": room, "caller": caller, "agent": agent, "agent_http": agent_http}


async def close_room(r: dict) -> None:
    await r["caller"].close()
    await r["agent"].close()


async def wait_snapshot(ops: Any, pred: Any, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    snap: dict = {}
    while time.monotonic() < deadline:
        status, snap = await ops.get("/api/ops/snapshot")
        assert status == 200, snap
        if pred(snap):
            return snap
        await asyncio.sleep(0.3)
    raise AssertionError(f"snapshot never matched: {json.dumps(snap)[:2000]}")


def room_of(snap: dict, room_id: str) -> dict | None:
    return next((r for r in snap["rooms"] if r["id"] == room_id), None)


async def test_roles(server) -> None:  # type: ignore[no-untyped-def]
    agent = await server.agent("anna")
    room = (await agent.new_session())["session"]["id"]
    await server.add_user("sue", role="supervisor")
    await server.add_user("adam", role="admin")
    sue = await server.agent("sue")
    adam = await server.agent("adam")
    async with aiohttp.ClientSession() as anon:
        async with anon.get(server.url + "/api/ops/snapshot") as r:
            assert r.status == 401
        async with anon.get(server.url + "/ops") as r:
            assert r.status == 200  # the page itself; it asks for a login
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    status, body = await agent.get("/api/ops/snapshot")
    assert status == 403 and body["error"]["code"] == "forbidden"
    async with agent.http.get(server.url + "/api/ops/stream") as r:
        assert r.status == 403
    status, _ = await agent.post(f"/api/ops/rooms/{room}/end", {"reason": "x"})
    assert status == 403

    async def watch_status(client: Any) -> int:
        try:
            ws = await client.http.ws_connect(
                server.url.replace("http", "ws") + f"/ws/watch/{room}",
                protocols=(SUBPROTOCOL,),
                origin=server.url,
            )
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        await ws.close()
        return 101

    assert await watch_status(agent) == 403
    assert await watch_status(adam) == 403  # the caller's notice names supervisors only
    assert await watch_status(sue) == 101
    status, snap = await sue.get("/api/ops/snapshot")
    assert status == 200 and room_of(snap, room) is not None
    # Admins manage accounts and configuration, not live rooms (docs/security.md).
    status, _ = await adam.get("/api/ops/snapshot")
    assert status == 403
    status, body = await sue.post(f"/api/ops/rooms/{room}/end", {"reason": " "})
    assert status == 400 and body["error"]["code"] == "bad_reason"
    status, _ = await sue.post("/api/ops/rooms/s-nosuchroom/end", {"reason": "test"})
    assert status == 404
    rows = await server.app[AUDIT].rows()
    assert any(r["actor"] == "anna" and r["result"] == "denied" for r in rows)


async def test_live_room_stats_stream_and_end(server) -> None:  # type: ignore[no-untyped-def]
    await server.add_user("sue", role="supervisor")
    sue = await server.agent("sue")
    r = await live_room(server)
    try:
        snap = await wait_snapshot(
            sue,
            lambda s: (
                (x := room_of(s, r["id"])) is not None
                and x["in_kbps"] > 0
                and x["tracks"]["camera"]["fps"] > 0
                and len(x["history"]["in_kbps"]) >= 2
            ),
        )
        room = room_of(snap, r["id"])
        assert room is not None
        assert room["phone"].startswith("+371 ") and room["phone"].endswith("12")
        assert PHONE_DIGITS not in json.dumps(snap)
        assert room["state"] == "active" and room["agent"] == "anna"
        roles = {p["role"]: p for p in room["participants"]}
        assert roles["caller"]["connection"] == "connected"
        assert roles["caller"]["in"]["track"] == "camera" and roles["caller"]["in"]["kbps"] > 0
        assert roles["agent"]["out"]["track"] == "camera"
        assert room["recording"] == {"state": "off", "spool_bytes": 0}
        assert snap["totals"]["rooms_active"] == 1 and snap["totals"]["participants"] >= 2
        assert snap["totals"]["memory_bytes"] > 0
        assert snap["today"]["sessions"] == 1

        # The stream: server-sent events, one snapshot per second.
        async with sue.http.get(server.url + "/api/ops/stream") as resp:
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/event-stream")
            event = None
            while event is None:
                line = (await asyncio.wait_for(resp.content.readline(), 5)).decode()
                if line.startswith("data: "):
                    event = json.loads(line[6:])
            assert room_of(event, r["id"]) is not None

        # End it from the console: everyone gets `ended` with reason "ops", audited.
        status, body = await sue.post(
            f"/api/ops/rooms/{r['id']}/end", {"reason": "caller asked by phone"}
        )
        assert status == 200 and body["ended"] is True
        ended = await r["caller"].sig.expect("ended")
        assert ended["reason"] == "ops"
        await wait_snapshot(sue, lambda s: room_of(s, r["id"]) is None)
        rows = await server.app[AUDIT].rows()
        end = next(x for x in rows if x["action"] == "ops.room_end")
        # The audit log has the code (default "other"), the session the free text.
        assert (end["actor"], end["object"], end["reason"]) == ("sue", r["id"], "other")
        assert (await server.db.get_session(r["id"]))["end_note"] == "caller asked by phone"
        status, body = await sue.post(f"/api/ops/rooms/{r['id']}/end", {"reason": "again"})
        assert status == 404
    finally:
        await close_room(r)


async def test_supervisor_watches_silently(server) -> None:  # type: ignore[no-untyped-def]
    await server.add_user("sue", role="supervisor")
    sue = await server.agent("sue")
    r = await live_room(server)
    agent_sig: Signalling = r["agent"].sig
    caller_sig: Signalling = r["caller"].sig
    seen_before = (len(agent_sig.rooms), len(caller_sig.rooms))
    watch = await Signalling._connect(sue.http, server.url, f"/ws/watch/{r['id']}", own=False)
    assert watch.welcome["role"] == "supervisor"
    pc = RTCPeerConnection(
        RTCConfiguration(iceServers=[RTCIceServer(**s) for s in watch.welcome["iceServers"]])
    )
    got: list[Any] = []
    pc.on("track", lambda track: got.append(proto.Watcher(track)))
    try:
        pc.addTransceiver("video", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        await watch.send({"type": "offer", "pc": 1, "sdp": pc.localDescription.sdp})
        answer = await watch.expect("answer", pc=1)
        await pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        for _ in range(50):
            if got:
                break
            await asyncio.sleep(0.1)
        await got[0].wait_colour(RED)
        # A supervisor may not do what participants do.
        await watch.send({"type": "end"})
        err = await watch.expect("error")
        assert err["code"] == "not_allowed" and "supervisor" in err["message"]
        snap = await wait_snapshot(
            sue,
            lambda s: (x := room_of(s, r["id"])) is not None and x["watchers"] == 1,
        )
        assert room_of(snap, r["id"])["state"] == "active"  # type: ignore[index]
    finally:
        await pc.close()
        for w in got:
            w.stop()
        await watch.close()
    await asyncio.sleep(0.3)
    # Nobody in the room was told: no room message, the caller is still live.
    assert (len(agent_sig.rooms), len(caller_sig.rooms)) == seen_before
    await wait_snapshot(sue, lambda s: room_of(s, r["id"])["watchers"] == 0)  # type: ignore[index]
    assert server.app[OPS].latest is not None
    room = room_of(server.app[OPS].latest, r["id"])
    assert room is not None and room["caller_status"] == "live"
    rows = await server.app[AUDIT].rows()
    assert any(x["action"] == "media.watch" and x["actor"] == "sue" for x in rows)
    await close_room(r)


async def test_report_and_today(server) -> None:  # type: ignore[no-untyped-def]
    await server.add_user("sue", role="supervisor")
    sue = await server.agent("sue")
    anna = await server.agent("anna")
    boris = await server.agent("boris")
    # 1: never opened; 2: opened, notice not accepted; 3: connected.
    s1 = (await anna.new_session())["session"]["id"]
    created2 = await anna.new_session()
    s2 = created2["session"]["id"]
    async with aiohttp.ClientSession() as phone:
        assert await open_link(phone, created2["link"]) == 303
    r = await live_room(server)
    for sid in (s1, s2, r["id"]):
        status, _ = await anna.post(f"/api/sessions/{sid}/end")
        assert status == 200
    await close_room(r)

    status, body = await anna.get(f"/api/sessions/{r['id']}/report")
    assert status == 200, body
    report = body["report"]
    events = [e["event"] for e in report["timeline"]]
    assert events[:1] == ["created"] and events[-1] == "ended"
    for step in ("opened", "accepted", "connected"):
        assert step in events
    assert report["end_reason"] == "agent_ended" and report["connected"] is True
    assert report["durations_s"]["to_connect"] > 0
    assert report["phone_masked"].endswith("12") and PHONE_DIGITS not in json.dumps(report)
    assert (await boris.get(f"/api/sessions/{r['id']}/report"))[0] == 404
    assert (await sue.get(f"/api/sessions/{r['id']}/report"))[0] == 200
    status, body = await anna.get(f"/api/sessions/{s2}/report")
    assert [e["event"] for e in body["report"]["timeline"]] == ["created", "opened", "ended"]

    snap = await wait_snapshot(sue, lambda s: s["today"]["finished"] == 3)
    today = snap["today"]
    assert today["sessions"] == 3 and today["connected"] == 1 and today["finished"] == 3
    assert today["never_connected"] == 2 and today["never_connected_share"] == round(2 / 3, 3)
    assert today["dropped_at"] == {"link": 1, "notice": 1, "camera": 0, "connection": 0}
    assert today["median_connect_s"] is not None
