"""The audit log: events written by real requests, and the chain detects tampering."""

from __future__ import annotations

import sqlalchemy as sa

from server.core.appkeys import AUDIT
from server.core.audit import audit_log, verify_rows
from tests.test_cli import run


async def test_events_and_chain(server) -> None:  # type: ignore[no-untyped-def]
    audit = server.app[AUDIT]
    agent = await server.agent("anna")
    created = await agent.new_session()
    sid = created["session"]["id"]
    other = await server.agent("boris")
    status, _ = await other.post(f"/api/sessions/{sid}/end")  # not theirs: 404, no change
    assert status == 404
    await server.add_user("sue", role="supervisor")
    sue = await server.agent("sue")
    status, _ = await sue.post("/api/sessions", {"phone": "20000012"})
    assert status == 403
    async with agent.http.post(
        server.url + "/api/login", json={"username": "anna", "password": "not it at all"}
    ) as r:
        assert r.status == 401

    rows = await audit.rows()
    seen = [(r["actor"], r["action"], r["result"]) for r in rows]
    assert ("anna", "login", "ok") in seen
    assert ("anna", "session.create", "ok") in seen
    assert ("sue", "POST /api/sessions", "denied") in seen
    assert ("anna", "login", "denied") in seen
    denied = next(r for r in rows if r["actor"] == "sue" and r["result"] == "denied")
    assert denied["reason"] == "forbidden" and denied["role"] == "supervisor"
    # No phone number in the log (hashes are random hex: "2000" may well occur in them).
    assert all("2000" not in str({k: v for k, v in r.items() if "hash" not in k}) for r in rows)
    assert (await audit.verify()).ok

    # Edit a record behind the application's back.
    async with server.db.engine.begin() as conn:
        await conn.execute(audit_log.update().where(audit_log.c.seq == 2).values(actor="mallory"))
    verdict = await audit.verify()
    assert not verdict.ok and verdict.problem == "record 2 was edited"


def _chain(n: int) -> list[dict]:
    from server.core.audit import GENESIS, record_hash

    rows, prev = [], GENESIS
    for i in range(1, n + 1):
        row = {
            "seq": i,
            "at": float(i),
            "actor": "a",
            "role": "agent",
            "action": "x",
            "object": str(i),
            "reason": "",
            "result": "ok",
            "prev_hash": prev,
        }
        row["hash"] = record_hash(prev, row)
        rows.append(row)
        prev = row["hash"]
    return rows


def test_chain_detects_removal_and_reorder() -> None:
    rows = _chain(5)
    assert verify_rows(rows).ok
    removed = rows[:2] + rows[3:]
    assert "record 3 is missing" in verify_rows(removed).problem
    swapped = [rows[0], rows[2], rows[1], *rows[3:]]
    assert not verify_rows(swapped).ok
    # Renumbering after a removal still breaks the chain.
    renumbered = [dict(r) for r in removed]
    for i, r in enumerate(renumbered, start=1):
        r["seq"] = i
    assert "removed or reordered" in verify_rows(renumbered).problem


async def test_cli_verify(server, tmp_path) -> None:  # type: ignore[no-untyped-def]
    r = run("audit", "verify", "--data-dir", str(tmp_path / "empty"))
    assert r.returncode == 0 and "empty and intact" in r.stdout
    await server.agent("anna")
    r = run("audit", "verify", "--data-dir", str(server.data_dir))
    assert r.returncode == 0 and "intact: 1 records" in r.stdout
    async with server.db.engine.begin() as conn:
        await conn.execute(sa.delete(audit_log))
        await conn.execute(
            audit_log.insert().values(
                seq=1,
                at=0.0,
                actor="x",
                role="x",
                action="x",
                object="",
                reason="",
                result="ok",
                prev_hash="0" * 64,
                hash="f" * 64,
            )
        )
    r = run("audit", "verify", "--data-dir", str(server.data_dir))
    assert r.returncode == 1 and "record 1 was edited" in r.stderr
