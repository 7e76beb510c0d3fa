"""Task attempts (leases with their outcome) and the artifacts of each attempt.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("attempt", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "task_attempts",
        sa.Column("task_id", sa.Uuid, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("agent_id", sa.Uuid, nullable=False),
        sa.Column("leased_at", Timestamp, nullable=False),
        sa.Column("expires_at", Timestamp, nullable=False),
        sa.Column("outcome", sa.String(16)),
        sa.Column("finished_at", Timestamp),
        sa.Column("error", sa.Text),
        sa.Column("output", Json, nullable=False),
        sa.Column("execution_time_ms", sa.BigInteger),
        sa.Column("tokens_used", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("task_id", "attempt", name="pk_task_attempts"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], ondelete="CASCADE", name="fk_task_attempts_task_id_tasks"
        ),
    )
    op.create_index("ix_task_attempts_agent_outcome", "task_attempts", ["agent_id", "outcome"])
    op.create_index("ix_task_attempts_outcome_expires", "task_attempts", ["outcome", "expires_at"])
    op.create_table(
        "task_artifacts",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("task_id", sa.Uuid, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("mime_type", sa.String(127), nullable=False),
        sa.Column("size_bytes", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("content", sa.LargeBinary, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_task_artifacts"),
        sa.ForeignKeyConstraint(
            ["task_id", "attempt"],
            ["task_attempts.task_id", "task_attempts.attempt"],
            ondelete="CASCADE",
            name="fk_task_artifacts_task_attempt",
        ),
        sa.UniqueConstraint("task_id", "attempt", "path", name="uq_task_artifacts_attempt_path"),
    )


def downgrade() -> None:
    op.drop_table("task_artifacts")
    op.drop_index("ix_task_attempts_outcome_expires", "task_attempts")
    op.drop_index("ix_task_attempts_agent_outcome", "task_attempts")
    op.drop_table("task_attempts")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("attempt")
