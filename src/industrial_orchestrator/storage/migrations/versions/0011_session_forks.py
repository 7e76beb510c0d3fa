"""Sessions forked from another session's checkpoint keep their lineage; tasks name the
files their plan expects them to edit.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("forked_from", sa.Uuid, nullable=True))
        batch.create_index("ix_sessions_forked_from", ["forked_from"])
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column(
                "files",
                sa.JSON().with_variant(postgresql.JSONB(), "postgresql"),
                nullable=False,
                server_default="[]",
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("files")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_index("ix_sessions_forked_from")
        batch.drop_column("forked_from")
