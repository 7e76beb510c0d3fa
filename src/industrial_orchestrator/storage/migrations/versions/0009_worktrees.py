"""Each session's own git working tree, and what holds a running attempt up.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("worktree", sa.Text))
        batch.add_column(sa.Column("branch", sa.String(255)))
        batch.add_column(sa.Column("base_commit", sa.String(64)))
    with op.batch_alter_table("task_attempts") as batch:
        batch.add_column(sa.Column("trouble", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("task_attempts") as batch:
        batch.drop_column("trouble")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("base_commit")
        batch.drop_column("branch")
        batch.drop_column("worktree")
