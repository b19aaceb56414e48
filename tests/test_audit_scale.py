"""The audit log under load (issue 14 item 10): refusals aggregated per client and route,
the DPO's view one page at a time, verification from stored anchors (rows read counted)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import sqlalchemy as sa

from server.core.appkeys import AUDIT
from server.core.audit import ANCHOR_EVERY, audit_log, record_hash
from server.http.denials import DenialKey, Denials, flush


def _denied(rows: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [r for r in rows if r["result"] == "denied" and r["action"] == action]


def _count(row: dict[str, Any]) -> int:
    # The first refusal of a window is 1; a summary says "<code> ×N more in 60 s".
    return int(row["reason"].split("×")[1].split()[0]) if "×" in row["reason"] else 1


async def test_anonymous_401s_write_a_bounded_number_of_rows(server) -> None:  # type: ignore[no-untyped-def]
    """Before: one row per refusal (2,000 requests, 2,000 rows)."""
    sem = asyncio.Semaphore(50)
    async with aiohttp.ClientSession() as http:

        async def one(path: str) -> int:
            async with sem, http.get(server.url + path) as r:
                return r.status

        statuses = await asyncio.gather(*(one("/api/sessions") for _ in range(2000)))
        assert set(statuses) == {401}
        assert await one("/api/ops/snapshot") == 401  # another route: its own row

    rows = await server.app[AUDIT].rows()
    sessions = _denied(rows, "GET /api/sessions")
    # One row per window of 60 s (a slow machine may span a few windows), not per request.
    assert 1 <= len(sessions) <= 6, len(sessions)
    assert sessions[0]["actor"] == "-" and sessions[0]["reason"] == "not_authenticated"
    assert "127.0.0.1" not in str(rows)  # the address is a key in memory only
    assert len(_denied(rows, "GET /api/ops/snapshot")) == 1

    # Nothing is lost: at the end of the window the count is written.
    server.clock.advance(61)
    await flush(server.app)
    rows = await server.app[AUDIT].rows()
    sessions = _denied(rows, "GET /api/sessions")
    assert sum(_count(r) for r in sessions) == 2000
    assert any("not_authenticated ×" in r["reason"] for r in sessions)
    assert len(sessions) <= 12
    assert (await server.app[AUDIT].verify()).ok


def test_denials_pure() -> None:
    d = Denials(window_s=60, max_keys=2)
    key = DenialKey("address:1", "-", "-", "GET /x", "not_authenticated")
    assert d.note(key, "", 0.0) == (True, [])
    assert d.note(key, "", 1.0) == (False, [])
    assert d.note(key, "", 2.0) == (False, [])
    write, done = d.note(key, "", 60.0)  # a new window: the last one's count comes out
    assert write and [s.more for s in done] == [2]
    # Past max_keys, new clients share one key per route ("*"): memory stays bounded.
    for i in range(2, 50):
        d.note(DenialKey(f"address:{i}", "-", "-", "GET /x", "not_authenticated"), "", 61.0)
    assert len(d._open) <= 3
    # A logged-in user's first `rows` refusals of a window are written one by one.
    user = DenialKey("user:anna", "anna", "agent", "GET /y", "forbidden")
    fresh = Denials(window_s=60)
    assert [fresh.note(user, "", 1.0, rows=3)[0] for _ in range(5)] == [True] * 3 + [False] * 2
    assert [s.more for s in fresh.expired(61.0)] == [2]
    summaries = d.expired(61.0, everything=True)
    # 48 refusals at 61 s: two first rows (address:2, "*"), 46 counted under "*".
    assert [(s.key.who, s.more) for s in summaries] == [("*", 46)]


async def _append_chain(server: Any, n: int, at: float | None = None) -> None:
    """n records after the current head, written straight into the table (fast)."""
    audit = server.app[AUDIT]
    rows = await audit.rows()
    seq, prev = (rows[-1]["seq"], rows[-1]["hash"]) if rows else (0, "0" * 64)
    new, at = [], time.time() if at is None else at
    for i in range(seq + 1, seq + n + 1):
        row = {"seq": i, "at": at, "actor": "a", "role": "agent", "action": "x",
               "object": str(i), "reason": "", "result": "ok", "prev_hash": prev}  # fmt: skip
        row["hash"] = prev = record_hash(prev, row)
        new.append(row)
    async with server.db.engine.begin() as conn:
        await conn.execute(audit_log.insert(), new)


async def test_audit_view_pages_and_verifies_from_anchors(server) -> None:  # type: ignore[no-untyped-def]
    await server.add_user("dora", role="dpo")
    dora = await server.agent("dora")
    await _append_chain(server, 2500)

    status, first = await dora.get("/api/dpo/audit?limit=50")
    assert status == 200 and len(first["records"]) == 50
    assert first["verify"]["ok"] and first["verify"]["from_seq"] == 0
    assert first["verify"]["rows_read"] >= 2500  # no anchor yet: the whole chain, once
    cursor = first["next_before"]
    assert cursor == first["records"][-1]["seq"]
    status, second = await dora.get(f"/api/dpo/audit?limit=50&before={cursor}")
    assert [r["seq"] for r in second["records"]] == list(range(cursor - 1, cursor - 51, -1))
    # From the newest anchor (a multiple of ANCHOR_EVERY) on: bounded rows read.
    v = second["verify"]
    assert v["ok"] and v["from_seq"] == 2000
    assert v["rows_read"] <= ANCHOR_EVERY + 10, v
    assert v["count"] == first["verify"]["count"] + 1  # the audit.view of the first call

    # The last page says so.
    status, last = await dora.get("/api/dpo/audit?limit=500&before=400")
    assert len(last["records"]) == 399 and last["next_before"] is None
    status, bad = await dora.get("/api/dpo/audit?before=x")
    assert status == 400

    audit = server.app[AUDIT]
    # An edit after the newest anchor is found by the view's check...
    async with server.db.engine.begin() as conn:
        await conn.execute(audit_log.update().where(audit_log.c.seq == 2100).values(actor="m"))
    _, after = await dora.get("/api/dpo/audit?limit=1")
    assert not after["verify"]["ok"] and after["verify"]["problem"] == "record 2100 was edited"
    async with server.db.engine.begin() as conn:
        await conn.execute(audit_log.update().where(audit_log.c.seq == 2100).values(actor="a"))
    assert (await audit.verify_recent()).ok
    # ... an edit of the anchored record too; one before it only by the full verify (CLI).
    async with server.db.engine.begin() as conn:
        await conn.execute(audit_log.update().where(audit_log.c.seq == 2000).values(actor="m"))
    recent = await audit.verify_recent()
    assert not recent.ok and "record 2000" in recent.problem
    async with server.db.engine.begin() as conn:
        await conn.execute(audit_log.update().where(audit_log.c.seq == 2000).values(actor="a"))
        await conn.execute(audit_log.update().where(audit_log.c.seq == 1500).values(actor="m"))
    assert (await audit.verify_recent()).ok
    full = await audit.verify()
    assert not full.ok and full.problem == "record 1500 was edited"
    await dora.close()


async def test_retention_removes_anchors_with_their_records(server) -> None:  # type: ignore[no-untyped-def]
    audit = server.app[AUDIT]
    await _append_chain(server, 1200, at=time.time() - 100)
    assert (await audit.verify_recent()).from_seq == 0
    assert (await audit.verify_recent()).from_seq == 1000
    await audit.record(actor="x", role="cli", action="y")
    assert await audit.prune(written_before=time.time() - 50) == 1200
    v = await audit.verify_recent()
    assert v.ok and v.pruned_through == 1200 and v.from_seq == 1200 and v.rows_read == 1
    async with server.db.engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM audit_anchor"))).scalar() == 0
