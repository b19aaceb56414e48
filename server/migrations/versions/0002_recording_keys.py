"""recording keys: one wrapped recording key per recording (crypto-shredding by row)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 (issue 13: recording format 2, per-recording key hierarchy)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A database adopted from metadata.create_all (server/core/db.py, _upgrade) already has
    # every table of the code, this one included: then there is nothing to add.
    if sa.inspect(op.get_bind()).has_table("recording_keys"):
        return
    op.create_table(
        "recording_keys",
        sa.Column("recording_id", sa.String(length=32), nullable=False),
        sa.Column("session_id", sa.String(length=32), nullable=False),
        sa.Column("alg", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=255), nullable=False),
        sa.Column("wrapped", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("recording_id"),
    )
    with op.batch_alter_table("recording_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_recording_keys_session_id"), ["session_id"],
                              unique=False)  # fmt: skip


def downgrade() -> None:
    # Dropping this table destroys every recording key: all format 2 recordings become
    # undecryptable. A downgrade is for an empty or disposable database only.
    with op.batch_alter_table("recording_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recording_keys_session_id"))
    op.drop_table("recording_keys")
