"""Data lifecycle (issue 21): what an outside retention test found. The post-session report
lists photos and recordings; `callassist retention run` survives a storage failure midway
(documented exit code, safe to run again, no empty folders left); staff logins, device
counts, restart ends and the audit log's cut-off; the ROPA's effective periods and chat.
The clock is the server's injected FakeClock (tests/conftest.py)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path
from typing import Any

from server.core.appkeys import AUDIT, SECRETS
from server.core.audit import Audit
from server.core.config import from_dict
from server.core.db import Database, logins, recordings, sessions
from server.privacy.cli import EXIT_INCOMPLETE
from server.privacy.retention import RETENTION
from server.privacy.ropa import ropa_markdown
from server.recording.service import RECORDING
from tests.conftest import free_port
from tests.privacy_helpers import make_subject
from tests.test_cli import run
from tests.test_retention import count, swept
from tests.test_webhooks import Receiver

DAY = 86_400.0


async def test_report_lists_snapshots_and_recording(make_server: Any) -> None:
    port = free_port()
    server = await make_server(recording={"segment_s": 1.0},
                               webhooks={"urls": [f"http://127.0.0.1:{port}/hook"]})  # fmt: skip
    receiver = Receiver(port, server.app[SECRETS].webhook_key)
    await receiver.start()
    try:
        agent = await server.agent("anna")
        # Paced like a camera: the recording lasts ~1.2 s of wall clock, so its seconds are > 0
        # (unpaced, a fast machine encodes it in a few ms and the report rounds to 0.0).
        made = await make_subject(server, agent, "+37120000001", "red", photos=2, video_s=1.2,
                                  realtime=True)  # fmt: skip
        status, body = await agent.get(f"/api/sessions/{made.session_id}/report")
        assert status == 200, body
        deadline = time.monotonic() + 10
        while not [e for e in receiver.events if e["type"] == "session.ended"]:
            assert time.monotonic() < deadline, receiver.events
            await asyncio.sleep(0.05)
    finally:
        await receiver.stop()
    report = body["report"]
    (ended,) = [e for e in receiver.events if e["type"] == "session.ended"]
    hooked = ended["data"]["report"]  # what the CRM gets: the same photos and recording
    assert (hooked["snapshots"], hooked["recording"]) == (report["snapshots"], report["recording"])
    assert sorted(p["id"] for p in report["snapshots"]) == sorted(made.photo_ids)
    assert {p["kind"] for p in report["snapshots"]} == {"upload"}
    assert all(p["at"] and p["status"] == "complete" for p in report["snapshots"])
    recording = report["recording"]
    assert recording is not None and recording["count"] == 1
    (part,) = recording["recordings"]
    assert part["id"] == made.video_ids[0] and part["segments"] >= 1
    assert recording["seconds"] > 0 and part["started_at"] and part["ended_at"]
    # A session without media: the same fields, empty.
    other = await make_subject(server, agent, "+37120000002", "blue", photos=0)
    _, body = await agent.get(f"/api/sessions/{other.session_id}/report")
    assert body["report"]["snapshots"] == [] and body["report"]["recording"] is None


def _store(server: Any) -> Path:
    return Path(server.data_dir) / "store"


def _folders_named(root: Path, names: list[str]) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_dir() and p.name in names]


async def test_cli_retention_run_survives_a_storage_failure(server: Any) -> None:
    agent = await server.agent("anna")
    a = await make_subject(server, agent, "+37120000001", "red", photos=2)
    b = await make_subject(server, agent, "+37120000002", "blue", photos=1)
    keep = await make_subject(server, agent, "+37120000003", "green", photos=1)
    await server.app[RECORDING].spool.drain(10)
    long_ago = time.time() - 200 * DAY
    async with server.db.engine.begin() as conn:
        await conn.execute(sessions.update().where(sessions.c.id.in_([a.session_id, b.session_id]))
                           .values(ended_at=long_ago))  # fmt: skip
    # The storage fails for one photo: its header cannot be deleted (a directory stands where
    # the file was, so unlink fails even for root) while the others can.
    (broken,) = b.photo_ids
    header = _store(server) / "recordings" / broken / "header"
    header.unlink()
    header.mkdir()
    (header / "x").write_bytes(b"x")
    # Empty folders named by recording ids that are gone, as an interrupted run leaves them
    # (old enough not to be a write that is just starting).
    ghosts = ["0" * 32, "1" * 32]
    spool = Path(server.data_dir) / "spool"
    for root in (_store(server), spool):
        for rid in ghosts:
            (root / "recordings" / rid / "sub").mkdir(parents=True)
            old = time.time() - 3600
            os.utime(root / "recordings" / rid, (old, old))

    r = run("retention", "run", "--data-dir", str(server.data_dir))
    assert r.returncode == EXIT_INCOMPLETE, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout.startswith("retention: deleted ")
    assert broken in r.stderr and "run `callassist retention run` again" in r.stderr.lower()
    # Nothing about b is lost: its session record and its photo's row stay for the next run.
    assert await server.db.get_session(b.session_id) is not None
    assert await server.db.get_recording(broken) is not None
    assert not _folders_named(Path(server.data_dir), ghosts)  # the empty folders went
    rows = [x for x in await server.app[AUDIT].rows() if x["action"] == "retention.sweep"]
    assert rows[-1]["result"] == "partial" and "not_deleted=" in rows[-1]["reason"]

    shutil.rmtree(header)  # the storage works again
    r = run("retention", "run", "--data-dir", str(server.data_dir))
    assert r.returncode == 0, (r.stdout, r.stderr)
    for made in (a, b):
        assert await server.db.get_session(made.session_id) is None
        assert not _folders_named(Path(server.data_dir), made.photo_ids)
        assert await count(server, recordings, session_id=made.session_id) == 0
    assert await server.db.get_session(keep.session_id) is not None
    assert list(_store(server).rglob(f"*{keep.photo_ids[0]}*"))
    r = run("retention", "run", "--data-dir", str(server.data_dir))
    assert r.returncode == 0 and "nothing is past its retention" in r.stdout


async def test_staff_logins_are_pruned(make_server: Any) -> None:
    server = await make_server(retention={"logins_days": 3}, auth={"session_ttl_s": 3600})
    await server.agent("anna")  # one login row
    assert await count(server, logins) == 1
    await swept(server, 3 + 1 / 24 - 0.01)  # expiry (1 h) + 3 days - a quarter hour
    assert await count(server, logins) == 1
    await swept(server, 3 + 1 / 24 + 0.01)
    assert await count(server, logins) == 0
    assert server.app[RETENTION].last.logins == 1
    # +731 days: long after every retention, no login row is left either.
    await server.agent("boris")
    await swept(server, 731)
    assert await count(server, logins) == 0


async def test_devices_are_counted_when_they_go_with_their_sessions(make_server: Any) -> None:
    server = await make_server(retention={"sessions_days": 10})
    agent = await server.agent("anna")
    await make_subject(server, agent, "+37120000001", "red", photos=0)
    await make_subject(server, agent, "+37120000002", "blue", photos=0)
    await swept(server, 11)  # devices, links and sessions all at once
    last = server.app[RETENTION].last
    assert last.sessions == 2 and last.devices == 2, last
    sweep = [x for x in await server.app[AUDIT].rows() if x["action"] == "retention.sweep"]
    assert "devices=2" in sweep[-1]["reason"]


async def test_a_restart_end_is_audited(make_server: Any, tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crashed.db'}"
    db = Database(url)
    await db.create_schema()
    uid = await db.add_user("anna", "x", "agent", time.time())
    # What a server stopped without its shutdown (power cut, kill -9) leaves behind.
    await db.add_session(id="s-cut-off", agent_id=uid, phone="+37120000001", reference="",
                         state="connected", caller_status="connected", device_type="",
                         notice_version="", created_at=time.time() - 60)  # fmt: skip
    await db.close()
    server = await make_server(storage={"database_url": url})
    row = await server.db.get_session("s-cut-off")
    assert row["state"] == "ended" and row["end_reason"] == "restart"
    ends = [x for x in await server.app[AUDIT].rows()
            if x["action"] == "session.end" and x["object"] == "s-cut-off"]  # fmt: skip
    assert len(ends) == 1 and ends[0]["reason"] == "restart", ends
    assert abs(ends[0]["at"] - row["ended_at"]) < 5 and ends[0]["role"] == "system"


async def test_audit_prune_uses_the_same_cut_off(make_server: Any) -> None:
    server = await make_server(retention={"audit_days": 20})
    await server.agent("anna")  # a `login` record: the newest before the clock moves
    before = await server.app[AUDIT].rows()
    assert before
    await swept(server, 21)
    cutoff = server.clock() - 20 * DAY
    rows = await server.app[AUDIT].rows()
    assert all(x["at"] >= cutoff for x in rows), rows  # the newest old record went too
    assert rows and rows[0]["seq"] == before[-1]["seq"] + 1  # the chain goes on
    verdict = await server.app[AUDIT].verify()
    assert verdict.ok and verdict.pruned_through == before[-1]["seq"], verdict


async def test_audit_chain_goes_on_after_everything_was_pruned(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    await db.create_schema()
    now = [1000.0]
    audit = Audit(db, lambda: now[0])
    for i in range(3):
        await audit.record(actor="x", role="system", action=f"a{i}")
    now[0] = 5000.0
    assert await audit.prune(4000.0) == 3
    assert await audit.rows() == [] and (await audit.verify()).ok
    await audit.record(actor="x", role="system", action="after")
    rows = await audit.rows()
    assert [x["seq"] for x in rows] == [4]
    verdict = await audit.verify()
    assert verdict.ok and verdict.pruned_through == 3
    await db.close()


def test_ropa_prints_effective_periods() -> None:
    text = ropa_markdown(from_dict({"retention": {"sessions_days": 1}}))
    assert "- recordings: 1 day\n" in text and "- snapshots and uploaded photos: 1 day\n" in text
    assert "- session records: 1 day after" in text and "1 days" not in text
    text = ropa_markdown(from_dict({"retention": {"sessions_days": 10, "recordings_days": 3}}))
    assert "- recordings: 3 days\n" in text and "- snapshots and uploaded photos: 10 days" in text


def test_ropa_lists_every_stored_category(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[toolkit]\nkeep_chat = true\n[retention]\nsessions_days = 45\n"
                   "logins_days = 2\n")  # fmt: skip
    r = run("ropa", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "chat messages between the caller and the agent" in r.stdout
    assert "- chat messages: 45 days, with the session record" in r.stdout
    assert "- staff logins: 2 days after the login expired" in r.stdout
    assert "- device cookies and links: 1 day" in r.stdout
    assert "- do-not-record flags:" in r.stdout
    off = ropa_markdown(from_dict({}))
    assert "chat messages are not stored" in off and "- chat messages:" not in off
