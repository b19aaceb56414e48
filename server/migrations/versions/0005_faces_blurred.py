"""recordings.faces_blurred: faces blurred in a stored snapshot/photo (the receipt's count)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 (issue 17: face redaction of stored stills)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # A database adopted from metadata.create_all already has the column.
    if "faces_blurred" not in {c["name"] for c in inspector.get_columns("recordings")}:
        op.add_column(
            "recordings",
            sa.Column("faces_blurred", sa.Integer(), nullable=False, server_default="0"),
        )


def downgrade() -> None:
    op.drop_column("recordings", "faces_blurred")
