"""Durable webhooks across nodes: two real `callassist serve` processes on one PostgreSQL;
the one delivering is killed (-9) in the middle of a burst; the other takes the lease over
and the receiver gets every event, in order per session (docs/ops.md, "Webhooks").

Delivery is at least once: an event in flight when its node died may come again with the
same event id, which the receiver drops (the documented contract); the test counts those.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from server.core.schema import leases
from tests.conftest import free_port
from tests.serve_helpers import KEYS, Node, Staff, add_user
from tests.test_webhooks import Receiver, by_session


async def _holder(url: str) -> str | None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            row = (await conn.execute(sa.select(leases.c.holder, leases.c.expires_at))).first()
    finally:
        await engine.dispose()
    return str(row[0]) if row is not None and row[1] > time.time() else None


async def test_kill_the_delivering_node_mid_burst(postgres: Any, tmp_path: Path) -> None:
    db_url = postgres.create_database("wh" + uuid.uuid4().hex[:12])
    port = free_port()
    hooks = {"urls": [f"http://127.0.0.1:{port}/hook"], "lease_s": 2.0, "poll_s": 0.2,
             "retry_initial_s": 0.1, "retry_max_s": 0.5, "timeout_s": 2.0}  # fmt: skip
    sections = {"storage": {"database_url": db_url}, "webhooks": hooks}
    a, b = Node(tmp_path, "a", sections), Node(tmp_path, "b", sections)
    add_user(a.config, a.data_dir)
    # Slow: the burst is still going out when its deliverer dies.
    receiver = Receiver(port, KEYS["CALLASSIST_WEBHOOK_KEY"].encode(), delay_s=0.3, dedupe=True)
    receiver.hold = True  # 503 until the whole burst is written
    await receiver.start()
    staff: list[Staff] = []
    try:
        await a.start()
        await b.start()  # started before any session: its start ends none of a's
        deadline = time.monotonic() + 10
        while (holder := await _holder(db_url)) is None:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        pids = {a.proc.pid: a, b.proc.pid: b}  # type: ignore[union-attr]
        leader = pids[int(holder.split(":")[2])]
        other = b if leader is a else a
        on_leader, on_other = await Staff(leader).login(), await Staff(other).login()
        staff += [on_leader, on_other]

        sessions: list[str] = []
        for i in range(12):  # a burst on both nodes: 12 created, 12 ended
            agent = on_leader if i % 2 else on_other
            status, body = await agent.post("/api/sessions", {"phone": "20000012"})
            assert status == 201, body
            sid = body["session"]["id"]
            sessions.append(sid)
            status, _ = await agent.post(f"/api/sessions/{sid}/end")
            assert status == 200
        receiver.hold = False
        await receiver.wait(6, timeout=30)
        leader.kill()  # deliveries in flight: their answers never reach a node
        got_before = len(receiver.events)
        assert got_before < 24, "the burst was delivered before the kill"
        killed_at = time.monotonic()
        await receiver.wait(24, timeout=60)
        took_over = time.monotonic() - killed_at
        await asyncio.sleep(1.0)  # nothing more arrives
        assert await _holder(db_url) is not None  # the survivor holds the lease now
    finally:
        for s in staff:
            await s.close()
        await receiver.stop()
        await a.stop()
        await b.stop()

    print(f"\nfailover: {got_before} of 24 events before the kill, all 24 {took_over:.1f} s "
          f"after it; {len(receiver.duplicates)} duplicates dropped by id")  # fmt: skip
    assert receiver.bad == []
    assert len(receiver.events) == 24 and len(receiver.seen_ids) == 24
    assert by_session(receiver.events) == {
        sid: ["session.created", "session.ended"] for sid in sessions
    }
    # At least once: a repeat is an event that was in flight at the kill (at most one per
    # session at a time).
    assert len(receiver.duplicates) <= len(sessions)
