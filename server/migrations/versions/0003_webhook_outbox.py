"""webhook outbox and leases: durable webhooks delivered by one node at a time

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 (issue 12: durable webhooks)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # A database adopted from metadata.create_all (server/core/db.py, _upgrade) already has
    # every table of the code: then there is nothing to add.
    if not inspector.has_table("webhook_outbox"):
        op.create_table(
            "webhook_outbox",
            sa.Column("seq", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("id", sa.String(length=40), nullable=False),
            sa.Column("url", sa.String(length=2048), nullable=False),
            sa.Column("session_id", sa.String(length=32), nullable=False),
            sa.Column("type", sa.String(length=32), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("queued_at", sa.Float(), nullable=False),
            sa.Column("data", sa.Text(), nullable=False),
            sa.Column("body", sa.Text(), nullable=True),
            sa.Column("status", sa.String(length=16), nullable=False),
            sa.Column("attempts", sa.Integer(), nullable=False),
            sa.Column("next_attempt_at", sa.Float(), nullable=False),
            sa.Column("last_error", sa.String(length=256), nullable=True),
            sa.PrimaryKeyConstraint("seq"),
        )
        with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
            batch_op.create_index(batch_op.f("ix_webhook_outbox_id"), ["id"], unique=False)
            batch_op.create_index(batch_op.f("ix_webhook_outbox_session_id"), ["session_id"],
                                  unique=False)  # fmt: skip
            batch_op.create_index(batch_op.f("ix_webhook_outbox_status"), ["status"],
                                  unique=False)  # fmt: skip
    if not inspector.has_table("leases"):
        op.create_table(
            "leases",
            sa.Column("name", sa.String(length=32), nullable=False),
            sa.Column("holder", sa.String(length=128), nullable=False),
            sa.Column("expires_at", sa.Float(), nullable=False),
            sa.PrimaryKeyConstraint("name"),
        )


def downgrade() -> None:
    # Undelivered webhook events are lost with the table.
    op.drop_table("leases")
    with op.batch_alter_table("webhook_outbox", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_webhook_outbox_status"))
        batch_op.drop_index(batch_op.f("ix_webhook_outbox_session_id"))
        batch_op.drop_index(batch_op.f("ix_webhook_outbox_id"))
    op.drop_table("webhook_outbox")
