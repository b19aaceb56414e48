"""PostgreSQL stopped for 20 s under a real `callassist serve` with a live call
(docs/ops.md, "Database down"): media keeps flowing, DB actions answer 503
`database_unavailable`, the signalling socket and the room go on, the room changes made
meanwhile are written when the database is back, and everything resumes by itself.
Slow (20 s down on purpose)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path

import tests.test_protocol_client as proto
from server.media import aiortc_hooks
from tests.media_helpers import RED, SolidTrack
from tests.pg import PostgresServer
from tests.serve_helpers import Node, Staff, add_user
from tests.signalling_client import Signalling

DOWN_S = 20.0


async def test_database_down_for_20_s(tmp_path: Path) -> None:
    # The server runs in its own process: this one's aiortc clients need loopback ICE
    # candidates too (what the in-process server's install does for the other tests).
    aiortc_hooks.install(["127.0.0.1"])
    pg = PostgresServer()
    pg.start()
    node = Node(tmp_path, "n1", {"storage": {"database_url": pg.create_database("down")}})
    staff: Staff | None = None
    caller = agent = None
    try:
        add_user(node.config, node.data_dir)
        await node.start()
        staff = await Staff(node).login()
        status, created = await staff.post("/api/sessions", {"phone": "20000012"})
        assert status == 201, created
        sid = created["session"]["id"]
        caller = proto.DocClient(await Signalling.caller(node.url, created["link"]), "caller")
        await caller.sig.send({"type": "accept", "notice": caller.sig.welcome["notice"]["version"]})
        await caller.sig.wait_room(status="accepted")
        await caller.connect(SolidTrack(RED))
        agent = proto.DocClient(await Signalling.agent(node.url, staff.http, sid), "agent")
        await agent.connect(None)
        assert agent.watcher is not None
        await agent.watcher.wait_colour(RED, timeout=20)

        pg.stop_server()
        down_at = time.monotonic()
        # A request that needs the database: a clear 503, not a 500.
        status, body = await staff.post("/api/sessions", {"phone": "20000013"})
        assert status == 503, body
        assert body["error"]["code"] == "database_unavailable"
        assert "try again" in body["error"]["message"]
        # The caller pauses: the room changes (the agent is told), the write waits.
        await caller.sig.send({"type": "media", "track": "camera", "state": "paused"})
        room = await agent.sig.wait_room(status="paused")
        assert room["caller"]["status"] == "paused"
        await agent.sig.send({"type": "ping"})
        await agent.sig.expect("pong")
        # Media goes on the whole time.
        while time.monotonic() - down_at < DOWN_S:
            await agent.watcher.wait_colour(RED, after=time.monotonic() - 0.5, timeout=5)
            await asyncio.sleep(1.0)
        status, body = await staff.get(f"/api/sessions/{sid}")
        assert status == 503 and body["error"]["code"] == "database_unavailable"

        pg.start_server()
        up_at = time.monotonic()
        while True:  # resumes by itself: no restart, no new login
            status, body = await staff.get(f"/api/sessions/{sid}")
            if status == 200:
                break
            assert status == 503, body
            assert time.monotonic() - up_at < 30, "the server did not come back"
            await asyncio.sleep(0.5)
        print(f"\ndatabase down {DOWN_S:.0f} s; requests work again "
              f"{time.monotonic() - up_at:.1f} s after it is back")  # fmt: skip
        deadline = time.monotonic() + 15
        while body["session"]["caller_status"] != "paused":  # the kept write went in
            assert time.monotonic() < deadline, body
            await asyncio.sleep(0.5)
            status, body = await staff.get(f"/api/sessions/{sid}")
        assert body["session"]["state"] != "ended"  # the room was not ended
        await agent.watcher.wait_colour(RED, after=time.monotonic(), timeout=5)
        status, body = await staff.post("/api/sessions", {"phone": "20000013"})
        assert status == 201, body
        status, _ = await staff.post(f"/api/sessions/{sid}/end")
        assert status == 200
    finally:
        for client in (caller, agent):
            if client is not None:
                await client.close()
        if staff is not None:
            await staff.close()
        await node.stop()
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            pg.stop()
    log = node.log.read_text()
    assert "Traceback" not in log, log[-4000:]
