"""When a running session next needs the engine though nothing happens to it
(``next_due_at``: its time limit or its next periodic checkpoint), kept on the session so
that a process finds its due timers with one indexed read.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


# A plain ALTER TABLE, not a batch: on SQLite a batch copies the table and drops the
# old one, and with foreign keys on, that drop deletes every session's events.
def upgrade() -> None:
    op.add_column("sessions", sa.Column("next_due_at", sa.DateTime(timezone=True)))
    op.create_index("ix_sessions_owner_next_due", "sessions", ["owner", "next_due_at"])


def downgrade() -> None:
    op.drop_index("ix_sessions_owner_next_due", table_name="sessions")
    op.drop_column("sessions", "next_due_at")
