"""Two processes on one SQLite file: the server and a CLI command (`callassist webhooks
replay` while `serve` runs). Each `Database` here stands for a process: its own engine, its
own connections, so SQLite's file locks are what keeps them apart (server/core/db.py)."""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import server.core.db as db_module
from server.core.audit import Audit
from server.core.config import from_dict
from server.core.db import Database
from server.core.repositories.outbox import OutboxHook
from server.observe import webhooks_cli

URL = "http://127.0.0.1:9/hook"  # never called: nothing here delivers


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[tuple[Database, Database]]:
    """The "server" (schema made, a hook so events get outbox rows) and the "CLI"."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'callassist.db'}"
    server, cli = Database(url), Database(url)
    await server.create_schema()
    server.outbox_hook = OutboxHook(urls=[URL], build=lambda t, r: {}, wake=lambda: None)
    yield server, cli
    await server.close()
    await cli.close()


async def _dead_letters(db: Database, n: int) -> list[int]:
    for i in range(n):
        await db.outbox_add("session.created", f"s-{i}", {})
    seqs = [int(r["seq"]) for r in await db.outbox_list("pending")]
    for seq in seqs:
        await db.outbox_failed(seq, attempts=1, next_attempt_at=0.0, error="x", dead=True)
    return seqs


async def _hammer(db: Database, seqs: list[int], stop: asyncio.Event) -> int:
    """What a server does all the time: the webhook poller's lease and outbox writes, and
    audit records. Returns how many rounds it made."""
    audit, rounds = Audit(db, time.time), 0
    while not stop.is_set():
        await db.lease_acquire("webhooks", "node-a", time.time(), 1.0)
        for seq in seqs:
            await db.outbox_failed(seq, attempts=2, next_attempt_at=0.0, error="y", dead=True)
        await audit.record(actor="server", role="system", action="session.end", object="s")
        await db.outbox_counts()
        rounds += 1
    return rounds


async def test_audit_records_from_two_processes_keep_one_chain(two) -> None:  # type: ignore[no-untyped-def]
    """The chain reads the last record and writes the next in one transaction: two
    processes must not both read the same last record (the same seq twice: one fails)."""
    server, cli = two
    errors: list[BaseException] = []

    async def write(db: Database, actor: str) -> None:
        audit = Audit(db, time.time)  # one per process, so its asyncio.Lock does not help
        for i in range(40):
            try:
                await audit.record(actor=actor, role="cli", action="x", object=str(i))
            except Exception as exc:
                errors.append(exc)

    await asyncio.gather(write(server, "server"), write(cli, "cli"))
    assert errors == []
    verdict = await Audit(server, time.time).verify()
    assert verdict.ok and verdict.count == 80, verdict


async def test_replay_and_audit_while_the_server_writes(two) -> None:  # type: ignore[no-untyped-def]
    """The CLI's read-then-write transactions (replay: SELECT the dead ids, then UPDATE;
    audit: SELECT the last record, then INSERT) against a server writing all the time:
    none fails, and the busy timeout is what they wait with (no immediate "locked")."""
    server, cli = two
    seqs = await _dead_letters(server, 3)
    stop = asyncio.Event()
    hammer = asyncio.ensure_future(_hammer(server, seqs, stop))
    audit = Audit(cli, time.time)
    try:
        for i in range(25):
            for event_id in await cli.outbox_replay(None):
                await audit.record(actor="op", role="cli", action="webhooks.replay",
                                   object=event_id)  # fmt: skip
            await audit.record(actor="op", role="cli", action="webhooks.dead", reason=str(i))
    finally:
        stop.set()
        rounds = await hammer
    assert rounds > 0
    assert (await Audit(cli, time.time).verify()).ok


async def test_two_first_starts_migrate_once(tmp_path: Path) -> None:
    """`serve` and a command started together on a new data directory: one migrates, the
    other waits for it and finds the schema at head (no "table already exists", no half
    made schema)."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'callassist.db'}"
    a, b = Database(url), Database(url)
    try:
        results = await asyncio.gather(a.create_schema(), b.create_schema(),
                                       return_exceptions=True)  # fmt: skip
        assert results == [None, None]
        assert await a.revision() == await b.revision() is not None
    finally:
        await a.close()
        await b.close()


def _hold_write_lock(path: Path, held: threading.Event, release: threading.Event) -> None:
    """Another process in the middle of a write transaction until `release` is set."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE webhook_outbox SET attempts = attempts")
        held.set()
        release.wait(30)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_held_write_lock_delays_writes_but_not_reads(two, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """While another process holds the write lock: a write transaction waits for it (and
    then succeeds); reads, the schema check at start included, do not wait at all.
    Events, not elapsed time: on a loaded machine a read may take long, but it must finish
    while the lock is still held, and the write must not finish before it is released."""
    server, cli = two
    await _dead_letters(server, 2)
    held, release = threading.Event(), threading.Event()
    holder = asyncio.ensure_future(
        asyncio.to_thread(_hold_write_lock, tmp_path / "callassist.db", held, release)
    )
    try:
        assert await asyncio.to_thread(held.wait, 10)
        await asyncio.wait_for(cli.create_schema(), 10)  # at head: only reads
        assert len(await asyncio.wait_for(cli.outbox_dead(), 10)) == 2
        replay = asyncio.ensure_future(cli.outbox_replay(None))
        await asyncio.sleep(0.3)
        assert not replay.done(), "a write went through while another held the lock"
        release.set()
        assert len(await asyncio.wait_for(replay, 10)) == 2  # waited, then worked
    finally:
        release.set()
        await holder


async def test_an_open_read_does_not_block_a_write_of_the_same_task(two) -> None:  # type: ignore[no-untyped-def]
    """Audit.verify_recent writes anchors while its read connection is open: a read must
    not keep a lock that the write then waits for (15 s, then "database is locked")."""
    server, _ = two
    await _dead_letters(server, 1)
    async with server.engine.connect() as conn:
        await conn.exec_driver_sql("SELECT count(*) FROM webhook_outbox")
        # Broken, the write waits out the 15 s busy timeout; 5 s leaves room for a slow CI.
        await asyncio.wait_for(server.outbox_replay(None), 5)
        record = Audit(server, time.time).record(actor="a", role="cli", action="x")
        await asyncio.wait_for(record, 5)
        await conn.exec_driver_sql("SELECT count(*) FROM webhook_outbox")


async def test_the_cli_against_a_busy_server(two, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`callassist webhooks replay --all` in its own process while this one writes like a
    server: it works (the command that failed once in CI with "database is locked")."""
    server, _ = two
    seqs = await _dead_letters(server, 3)
    stop = asyncio.Event()
    hammer = asyncio.ensure_future(_hammer(server, seqs, stop))
    try:
        # In a thread: this event loop is the "server" and must go on meanwhile.
        done = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "server", "webhooks", "replay", "--all",
             "--data-dir", str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    finally:
        stop.set()
        await hammer
    assert done.returncode == 0 and "3 events pending again" in done.stdout, done.stderr
    assert (await Audit(server, time.time).verify()).ok


def test_a_lock_held_too_long_is_said_plainly(tmp_path: Path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    """If the command does give up waiting, it says why and what to do (not "cannot be
    reached" with the SQL statement)."""
    monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT_S", 0.2)  # the engine's timeout
    path = tmp_path / "callassist.db"
    made = Database(f"sqlite+aiosqlite:///{path}")

    async def make() -> None:
        await made.create_schema()
        await made.close()

    asyncio.run(make())
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # a server stuck in a write transaction
    try:
        args = argparse.Namespace(all=True, ids=[], data_dir=tmp_path)
        code = webhooks_cli._run(webhooks_cli._replay, lambda a: from_dict({}), args)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert code == 1
    assert "the database is locked: another process" in err and "Try again" in err, err
    assert "[SQL" not in err
