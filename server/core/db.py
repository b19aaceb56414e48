"""Data access: the engine, migrations, and the repositories on it.

SQL lives in the repository modules, one per aggregate (server/core/repositories/:
users, sessions, recordings, subjects) and in the audit log (server/core/audit.py);
`Database` is all of them on one engine, so the rest of the server asks `app[DB]` and
never writes SQL itself. SQLAlchemy Core (async) keeps one code path for SQLite (embedded
default) and PostgreSQL. The tables are in server/core/schema.py.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from server.core.repositories.outbox import OutboxHook
from server.core.repositories.recordings import RecordingsRepository
from server.core.repositories.sessions import SessionsRepository
from server.core.repositories.subjects import SubjectsRepository
from server.core.repositories.team import TeamRepository
from server.core.repositories.users import User, UsersRepository
from server.core.schema import (  # noqa: F401 (re-exported: the tables are the schema)
    BASELINE_REVISION,
    caller_devices,
    chat_messages,
    links,
    logins,
    metadata,
    recording_keys,
    recording_objections,
    recordings,
    session_holders,
    sessions,
    staff_links,
    token_hash,
    users,
    webhook_outbox,
)
from server.paths import MIGRATIONS

log = logging.getLogger(__name__)
# Alembic says "Context impl SQLiteImpl." at INFO on every start; what was upgraded is
# logged here instead.
if logging.getLogger("alembic").level == logging.NOTSET:
    logging.getLogger("alembic").setLevel(logging.WARNING)

__all__ = ["Database", "User", "metadata", "token_hash"]

# How long a SQLite connection waits for another one's write lock before it gives up with
# "database is locked" (the CLI's message says it, server/observe/webhooks_cli.py).
SQLITE_BUSY_TIMEOUT_S = 15

# SQLite has one writer at a time, and other processes (a CLI command next to `serve`) use
# the same file. Python's sqlite3 (under aiosqlite) opens a transaction only at the first
# INSERT/UPDATE/DELETE, so the reads a write transaction starts with ran outside it: another
# process could write in between (two audit records with the same seq; two first starts
# both migrating, DDL being committed statement by statement). A write transaction
# (`engine.begin()`) therefore starts with BEGIN IMMEDIATE: it waits, up to the busy
# timeout, for the write lock before its first statement. Not a plain BEGIN: a deferred
# transaction that has read and then writes while another connection holds the write lock
# gets "database is locked" at once (SQLite does not wait there, that could deadlock).
# Reads (`engine.connect()`) keep sqlite3's behaviour, each SELECT on its own: a read
# transaction would hold the shared lock for its whole block, and a write made meanwhile
# (Audit.verify_recent writes its anchors with its read open) would wait for it to end.
_WRITE = "callassist_write"  # execution option: this connection came from engine.begin()


class _SQLiteEngine(AsyncEngine):
    """An AsyncEngine whose `begin()` marks its connection a write (see `_begin_immediate`)."""

    __slots__ = ()

    @contextlib.asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self.connect() as conn:
            await conn.execution_options(**{_WRITE: True})  # before the BEGIN it decides
            async with conn.begin():
                yield conn


def _begin_immediate(conn: sa.Connection) -> None:
    """The engine's "begin" event: sqlite3 then sees a transaction open and adds no BEGIN
    of its own; its commit() and rollback() end this one."""
    if conn.get_execution_options().get(_WRITE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_engine(url: str) -> AsyncEngine:
    sync_engine = create_async_engine(
        url,
        # One file, many coroutines and maybe another process: a write waits for the
        # lock instead of failing at once under a short burst.
        connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
    ).sync_engine
    sa.event.listen(sync_engine, "begin", _begin_immediate)
    return _SQLiteEngine(sync_engine)


class Database(
    UsersRepository, SessionsRepository, RecordingsRepository, SubjectsRepository, TeamRepository
):
    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: AsyncEngine
        if url.startswith("sqlite"):
            self.engine = _sqlite_engine(url)
        else:
            # A server restart (or a network cut) leaves dead connections in the pool:
            # test each one before use, so the first request after the database is back
            # works instead of failing on a stale connection (docs/ops.md).
            self.engine = create_async_engine(url, pool_pre_ping=True)
        # Set by the webhooks feature: which session writes also write outbox rows.
        self.outbox_hook: OutboxHook | None = None

    async def create_schema(self) -> None:
        """Bring the schema to the newest revision: `alembic upgrade head` on this engine
        (server/migrations; SQLite and PostgreSQL alike). At head it only reads: a command
        started next to a running server takes no write lock for it."""
        async with self.engine.connect() as conn:
            if await conn.run_sync(_at_head):
                return
        # On SQLite one write transaction (BEGIN IMMEDIATE): a second process starting at
        # the same time waits for it, then finds the schema at head.
        async with self.engine.begin() as conn:
            before, after = await conn.run_sync(_upgrade)
        if before != after:
            log.info("database schema upgraded from %s to %s", before or "nothing", after)

    async def revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.run_sync(_current_revision)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> None:
        """One round trip (readiness): raises when the database cannot be reached."""
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))


def unavailable(exc: BaseException) -> bool:
    """True when `exc` means the database cannot be reached right now (stopped, restarting,
    connection lost), not that the query was wrong: the caller may try again later."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (sa.exc.OperationalError, sa.exc.InterfaceError)):
            return True
        if isinstance(cur, sa.exc.DBAPIError) and cur.connection_invalidated:
            return True
        if isinstance(cur, (ConnectionError, OSError, TimeoutError)):
            return True
        # asyncpg's own (not importable without PostgreSQL support installed): lost or
        # refused connections, and "the database system is shutting down/starting up".
        name = type(cur).__name__
        if name in _UNAVAILABLE_NAMES:
            return True
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    return False


def locked(exc: BaseException) -> bool:
    """True when `exc` is SQLite's "database is locked": another connection (a running
    server, say) held the write lock for longer than SQLITE_BUSY_TIMEOUT_S."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, sqlite3.OperationalError) and "database is locked" in str(cur):
            return True
        cur = getattr(cur, "orig", None) or cur.__cause__ or cur.__context__
    return False


_UNAVAILABLE_NAMES = frozenset({
    "ConnectionDoesNotExistError", "ConnectionFailureError", "CannotConnectNowError",
    "AdminShutdownError", "CrashShutdownError", "PostgresConnectionError",
    "ClientCannotConnectError", "ConnectionRejectionError", "TooManyConnectionsError",
})  # fmt: skip


def alembic_config(connection: Any = None) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection  # server/migrations/env.py runs on it
    return cfg


def _current_revision(connection: sa.Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def _at_head(connection: sa.Connection) -> bool:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    return set(MigrationContext.configure(connection).get_current_heads()) == set(heads)


def _upgrade(connection: sa.Connection) -> tuple[str | None, str | None]:
    from alembic import command

    before = _current_revision(connection)
    cfg = alembic_config(connection)
    if before is None and sa.inspect(connection).has_table("sessions"):
        # Made by create_all before there were migrations: complete it the same way, then
        # it is at the first revision.
        metadata.create_all(connection)
        command.stamp(cfg, BASELINE_REVISION)
    command.upgrade(cfg, "head")
    return before, _current_revision(connection)
