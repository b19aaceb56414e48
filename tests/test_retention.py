"""Retention: the background sweeper deletes each category at its retention + 1 day, from
the database and from the storage (local and S3 via moto) and the spool; the audit chain
survives its own pruning. The clock is the server's injected FakeClock."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import sqlalchemy as sa

from server.core.appkeys import AUDIT
from server.core.audit import audit_checkpoint
from server.core.db import caller_devices, links, recordings, sessions
from server.privacy.retention import EXPIRY_RULE_ID, RETENTION
from server.recording.service import RECORDING
from tests.conftest import dump_database
from tests.privacy_helpers import (
    Backend,
    backend_for,
    make_subject,
)
from tests.test_cli import run

DAY = 86_400.0
RETENTION_DAYS = {"recordings_days": 3, "media_days": 5, "sessions_days": 10, "audit_days": 20}


@pytest.fixture(params=[("sqlite", "local"), ("postgresql", "s3")], ids=lambda p: "-".join(p))
async def backend_server(request: pytest.FixtureRequest, make_server: Any) -> tuple[Any, Backend]:
    backend = backend_for(request, *request.param)
    return await make_server(
        retention={**RETENTION_DAYS, "sweep_interval_s": 3600}, **backend.sections
    ), backend


async def count(server: Any, table: sa.Table, **where: Any) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    async with server.db.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def swept(server: Any, days: float) -> None:
    """Move the clock `days` past the start and wait for the background sweeper."""
    sweeper = server.app[RETENTION]
    server.clock.offset = days * DAY
    begun = sweeper.started
    sweeper.kick()  # rather than waiting for sweep_interval_s
    deadline = time.monotonic() + 10
    while sweeper.runs < begun + 1:  # a whole sweep that began after the clock moved
        assert time.monotonic() < deadline, "the sweeper did not run"
        await asyncio.sleep(0.05)


async def test_each_category_goes_at_its_retention(backend_server: tuple[Any, Backend]) -> None:
    server, backend = backend_server
    agent = await server.agent("anna")
    made = await make_subject(server, agent, "+37120000001", "red", photos=2, video_s=1.2)
    await server.app[RECORDING].spool.drain(10)
    (video,) = made.video_ids
    photos = made.photo_ids
    sid = made.session_id
    assert backend.keys(server, f"recordings/{video}/")
    before_audit = len(await server.app[AUDIT].rows())

    # One day before the recordings' retention ends: everything is still there.
    await swept(server, RETENTION_DAYS["recordings_days"] - 1)
    assert await count(server, recordings, id=video) == 1

    # Recordings: retention + 1 day -> no row, no object (storage, spool, all versions).
    await swept(server, RETENTION_DAYS["recordings_days"] + 1)
    assert await count(server, recordings, kind="video") == 0
    assert backend.keys(server, f"recordings/{video}/") == []
    assert backend.paths(server, video) == []
    assert await count(server, recordings, kind="upload") == 2  # photos are kept longer
    for pid in photos:
        assert backend.keys(server, f"recordings/{pid}/")

    # Snapshots and uploads.
    await swept(server, RETENTION_DAYS["media_days"] + 1)
    assert await count(server, recordings) == 0
    assert backend.keys(server) == []  # nothing at all is left in the storage
    assert await count(server, sessions, id=sid) == 1

    # Session records, with their links and device cookies (gone after a day already).
    assert await count(server, caller_devices, session_id=sid) == 0
    await swept(server, RETENTION_DAYS["sessions_days"] + 1)
    assert await count(server, sessions) == 0 and await count(server, links) == 0
    dump = await dump_database(server)
    assert "+37120000001" not in dump
    assert sid not in "\n".join(x for x in dump.splitlines() if not x.startswith("audit_log:"))

    # Audit records: the old ones go, the chain still verifies from the checkpoint.
    await swept(server, RETENTION_DAYS["audit_days"] + 1)
    rows = await server.app[AUDIT].rows()
    cutoff = time.time() + (RETENTION_DAYS["audit_days"] + 1) * DAY - RETENTION_DAYS[
        "audit_days"] * DAY  # fmt: skip
    assert all(r["at"] >= cutoff - 5 for r in rows[:-1])
    assert rows[0]["seq"] > before_audit  # everything written before the jump is gone
    verdict = await server.app[AUDIT].verify()
    assert verdict.ok and verdict.pruned_through == rows[0]["seq"] - 1, verdict
    assert await count(server, audit_checkpoint) == 1
    sweeps = [r for r in rows if r["action"] == "retention.sweep"]
    assert sweeps and sweeps[-1]["actor"] == "retention"


async def test_s3_lifecycle_rules_as_a_second_net(
    s3_server: Any, aws_env: None, make_server: Any
) -> None:
    bucket = s3_server.create_bucket("eu-north-1")
    await make_server(retention={"recordings_days": 7, "media_days": 14, "sessions_days": 10},
                      recording={"storage": "s3", "s3": {
                          "bucket": bucket, "endpoint_url": s3_server.endpoint_url,
                          "region": "eu-north-1", "max_attempts": 1}})  # fmt: skip
    rules = s3_server.client().get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    by_id = {r["ID"]: r for r in rules}
    assert by_id["callassist-abort-incomplete-multipart"]["AbortIncompleteMultipartUpload"]
    expiry = by_id[EXPIRY_RULE_ID]
    # Media never outlive their session record (10 days), plus two days of margin.
    assert expiry["Expiration"] == {"Days": 12}
    assert expiry["NoncurrentVersionExpiration"]["NoncurrentDays"] == 1


async def test_cli_retention_run(server: Any) -> None:
    agent = await server.agent("anna")
    old = await make_subject(server, agent, "+37120000001", "red", photos=1)
    new = await make_subject(server, agent, "+37120000002", "blue", photos=1)
    await server.app[RECORDING].spool.drain(10)
    long_ago = time.time() - 200 * DAY  # past every default retention
    async with server.db.engine.begin() as conn:
        await conn.execute(sessions.update().where(sessions.c.id == old.session_id)
                           .values(ended_at=long_ago))  # fmt: skip
    r = run("retention", "run", "--data-dir", str(server.data_dir))
    assert r.returncode == 0, r.stderr
    assert "sessions=1" in r.stdout and "photos=1" in r.stdout
    assert await server.db.get_session(old.session_id) is None
    assert await server.db.get_session(new.session_id) is not None
    store = server.data_dir / "store"
    assert not list(store.rglob(f"*{old.photo_ids[0]}*"))
    assert list(store.rglob(f"*{new.photo_ids[0]}*"))
    r = run("retention", "run", "--data-dir", str(server.data_dir))
    assert r.returncode == 0 and "nothing is past its retention" in r.stdout
