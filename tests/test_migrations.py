"""Versioned schema migrations (Alembic, server/migrations): the migrated schema is exactly
the tables the code declares, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from server.core.db import Database, alembic_config, metadata


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return request.getfixturevalue("postgres").create_database("m" + uuid.uuid4().hex[:16])
    return f"sqlite+aiosqlite:///{tmp_path / 'm.db'}"


def _diff(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return compare_metadata(context, metadata)


def _tables(connection: sa.Connection) -> set[str]:
    return set(sa.inspect(connection).get_table_names())


async def test_migrated_schema_equals_the_metadata(db_url: str) -> None:
    db = Database(db_url)
    try:
        await db.create_schema()
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        assert await db.revision() == head == "0007"
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
            tables = await conn.run_sync(_tables)
        assert tables == set(metadata.tables) | {"alembic_version"}
        assert {"recordings", "chat_messages", "audit_log", "recording_objections"} <= tables
        await db.create_schema()  # at head: nothing to do
        assert await db.revision() == head

        # Down to nothing and up again: the revision is reversible.
        def down(connection: sa.Connection) -> None:
            command.downgrade(alembic_config(connection), "base")

        async with db.engine.begin() as conn:
            await conn.run_sync(down)
            assert await conn.run_sync(_tables) <= {"alembic_version"}
        await db.create_schema()
        async with db.engine.connect() as conn:
            assert await conn.run_sync(_diff) == []
    finally:
        await db.close()


async def test_a_database_made_before_migrations_is_adopted(db_url: str) -> None:
    """`metadata.create_all` made the first installs: they are completed and stamped."""
    db = Database(db_url)
    try:
        old = [t for t in metadata.sorted_tables if t.name != "recording_objections"]
        async with db.engine.begin() as conn:
            await conn.run_sync(lambda c: metadata.create_all(c, tables=old))
            await conn.execute(sa.text(
                "INSERT INTO users (username, password_hash, role, disabled, created_at) "
                "VALUES ('anna', 'x', 'agent', false, 0)"))  # fmt: skip
        await db.create_schema()
        assert await db.revision() == "0007"
        assert [u.username for u in await db.list_users()] == ["anna"]  # data kept
        async with db.engine.connect() as conn:
            assert "recording_objections" in await conn.run_sync(_tables)
    finally:
        await db.close()
