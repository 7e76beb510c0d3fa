"""Tasks and the edges of their dependency graph.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("session_id", sa.Uuid),
        sa.Column("parent_id", sa.Uuid),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("task_type", sa.String(32), nullable=False),
        sa.Column("required_capabilities", Json, nullable=False),
        sa.Column("estimated_effort", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("template", sa.String(32)),
        sa.Column("result_summary", sa.Text),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp),
        sa.Column("finished_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_tasks_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["tasks.id"], name="fk_tasks_parent_id_tasks", ondelete="CASCADE"
        ),
    )
    op.create_index("ix_tasks_session_status", "tasks", ["session_id", "status"])
    op.create_index("ix_tasks_parent_id", "tasks", ["parent_id"])
    op.create_table(
        "task_dependencies",
        sa.Column("task_id", sa.Uuid, nullable=False),
        sa.Column("depends_on", sa.Uuid, nullable=False),
        sa.PrimaryKeyConstraint("task_id", "depends_on", name="pk_task_dependencies"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name="fk_task_dependencies_task_id_tasks", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["depends_on"],
            ["tasks.id"],
            name="fk_task_dependencies_depends_on_tasks",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_task_dependencies_depends_on", "task_dependencies", ["depends_on"])


def downgrade() -> None:
    op.drop_table("task_dependencies")
    op.drop_table("tasks")
