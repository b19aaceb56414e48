"""audit anchors (incremental verification) and the session's erasable end note

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 (issue 14 items 10 and 11)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # A database adopted from metadata.create_all (server/core/db.py, _upgrade) already has
    # every table and column of the code: then there is nothing to add.
    if not inspector.has_table("audit_anchor"):
        op.create_table(
            "audit_anchor",
            sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
            sa.Column("hash", sa.String(length=64), nullable=False),
            sa.Column("verified_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("seq"),
        )
    if "end_note" not in {c["name"] for c in inspector.get_columns("sessions")}:
        with op.batch_alter_table("sessions", schema=None) as batch_op:
            batch_op.add_column(sa.Column("end_note", sa.String(length=500), nullable=True))


def downgrade() -> None:
    # End notes are lost with the column; anchors are only a shortcut for verification.
    with op.batch_alter_table("sessions", schema=None) as batch_op:
        batch_op.drop_column("end_note")
    op.drop_table("audit_anchor")
