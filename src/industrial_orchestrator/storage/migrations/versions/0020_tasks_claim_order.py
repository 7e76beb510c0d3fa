"""Waiting tasks indexed in the order claims take them (``tasks.claim_order``, the
session's priority kept on the task, and ``ix_tasks_ready`` led by it): a claim's look
reads the first waiting task or two, where it read and sorted every waiting task by its
session's priority (about 5 ms of PostgreSQL's CPU per claim with 380 waiting).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

_READY = "status = 'READY'"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("claim_order", sa.SmallInteger, nullable=False, server_default="1")
        )
    op.execute(
        "UPDATE tasks SET claim_order = -(SELECT priority_rank FROM sessions "
        "WHERE sessions.id = tasks.session_id) WHERE session_id IS NOT NULL"
    )
    op.drop_index("ix_tasks_ready", table_name="tasks")
    op.create_index(
        "ix_tasks_ready",
        "tasks",
        ["claim_order", "created_at", "id"],
        postgresql_where=sa.text(_READY),
        sqlite_where=sa.text(_READY),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_ready", table_name="tasks")
    op.create_index(
        "ix_tasks_ready",
        "tasks",
        ["created_at", "id"],
        postgresql_where=sa.text(_READY),
        sqlite_where=sa.text(_READY),
    )
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("claim_order")
