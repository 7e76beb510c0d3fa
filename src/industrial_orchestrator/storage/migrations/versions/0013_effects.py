"""The side-effect ledger: effects outside the database, recorded before they are done.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "effects",
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("session_id", sa.Uuid),
        sa.Column("task_id", sa.Uuid),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column(
            "detail", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("key", name="pk_effects"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            ondelete="CASCADE",
            name="fk_effects_session_id_sessions",
        ),
    )
    op.create_index("ix_effects_state_session", "effects", ["state", "session_id"])
    op.create_index("ix_effects_session_created", "effects", ["session_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_effects_session_created", "effects")
    op.drop_index("ix_effects_state_session", "effects")
    op.drop_table("effects")
