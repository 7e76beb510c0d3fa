"""Running slots as rows (``running_slots``): a session that starts takes a free row,
and concurrent starts take different rows at once, where they all queued on one lock
before. The sessions holding a slot now (RUNNING, DEGRADED) get the first rows; the
rest are made as the first takers find them missing.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "running_slots",
        sa.Column("slot", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("session_id", sa.Uuid),
        sa.PrimaryKeyConstraint("slot", name="pk_running_slots"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_running_slots_session_id_sessions",
            ondelete="SET NULL",
        ),
        sa.UniqueConstraint("session_id", name="uq_running_slots_session_id"),
    )
    op.execute(
        "INSERT INTO running_slots (slot, session_id) "
        "SELECT row_number() OVER (ORDER BY created_at, id), id FROM sessions "
        "WHERE status IN ('RUNNING', 'DEGRADED')"
    )


def downgrade() -> None:
    op.drop_table("running_slots")
