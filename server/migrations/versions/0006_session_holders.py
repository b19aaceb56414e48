"""session_holders (who held a session when: hand-over) and staff_links (one-time links
for an expert to join one room)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 (issue 19: support as a team)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tables = set(sa.inspect(op.get_bind()).get_table_names())
    # A database adopted from metadata.create_all already has them.
    if "session_holders" not in tables:
        op.create_table(
            "session_holders",
            sa.Column(
                "session_id", sa.String(32), sa.ForeignKey("sessions.id"), primary_key=True
            ),  # fmt: skip
            sa.Column("since", sa.Float(), primary_key=True),
            sa.Column("until", sa.Float()),
            sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
            sa.Column("username", sa.String(64), nullable=False),
        )
    if "staff_links" not in tables:
        op.create_table(
            "staff_links",
            sa.Column("token_hash", sa.String(64), primary_key=True),
            sa.Column(
                "session_id", sa.String(32), sa.ForeignKey("sessions.id"), nullable=False
            ),  # fmt: skip
            sa.Column("created_by", sa.Integer(), sa.ForeignKey("users.id"), nullable=False),
            sa.Column("created_at", sa.Float(), nullable=False),
            sa.Column("expires_at", sa.Float(), nullable=False),
            sa.Column("used_at", sa.Float()),
            sa.Column("used_by", sa.Integer(), sa.ForeignKey("users.id")),
        )
        op.create_index("ix_staff_links_session_id", "staff_links", ["session_id"])


def downgrade() -> None:
    op.drop_index("ix_staff_links_session_id", "staff_links")
    op.drop_table("staff_links")
    op.drop_table("session_holders")
