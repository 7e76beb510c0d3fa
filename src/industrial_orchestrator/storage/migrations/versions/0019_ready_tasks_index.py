"""The waiting tasks indexed alone (``ix_tasks_ready``, a partial index): a claim's look
reads only the READY tasks, where it read the whole of ``ix_tasks_session_status`` (led
by the session) to find them, a cost that grew with every task ever run.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_tasks_ready",
        "tasks",
        ["created_at", "id"],
        postgresql_where=sa.text("status = 'READY'"),
        sqlite_where=sa.text("status = 'READY'"),
    )


def downgrade() -> None:
    op.drop_index("ix_tasks_ready", table_name="tasks")
