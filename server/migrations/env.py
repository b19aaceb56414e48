"""Alembic environment: migrations run on the connection the server hands over
(`server.db.Database.migrate`), for SQLite and PostgreSQL alike."""

from __future__ import annotations

from alembic import context

# Import every module that defines tables so autogenerate sees the whole schema.
from server.core.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always run through Database.migrate
    raise RuntimeError("run migrations through callassist (Database.migrate)")

context.configure(
    connection=connection,
    target_metadata=metadata,
    # SQLite cannot ALTER most things in place: batch mode copies the table.
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
