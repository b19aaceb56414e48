"""users.sso_subject and oidc_states: single sign-on for staff (server/http/oidc.py)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 (issue 19: OpenID Connect for staff)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    # A database adopted from metadata.create_all already has both.
    if "sso_subject" not in {c["name"] for c in inspector.get_columns("users")}:
        op.add_column("users", sa.Column("sso_subject", sa.String(512), nullable=True))
        op.create_index("ix_users_sso_subject", "users", ["sso_subject"], unique=True)
    if "oidc_states" not in inspector.get_table_names():
        op.create_table(
            "oidc_states",
            sa.Column("state_hash", sa.String(64), primary_key=True),
            sa.Column("binding_hash", sa.String(64), nullable=False),
            sa.Column("nonce", sa.String(128), nullable=False),
            sa.Column("code_verifier", sa.String(128), nullable=False),
            sa.Column("return_to", sa.String(64), nullable=False),
            sa.Column("created_at", sa.Float, nullable=False),
        )


def downgrade() -> None:
    op.drop_table("oidc_states")
    op.drop_index("ix_users_sso_subject", table_name="users")
    op.drop_column("users", "sso_subject")
