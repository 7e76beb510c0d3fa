"""When the engine last found a running session's periodic checkpoint due and nothing to
record since the last one (``checkpoint_checked_at``): the next periodic look counts from
then, so a session nobody touches is looked at once an interval, not on every round.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


# A plain ALTER TABLE, not a batch: on SQLite a batch copies the table and drops the
# old one, and with foreign keys on, that drop deletes every session's events.
def upgrade() -> None:
    op.add_column("sessions", sa.Column("checkpoint_checked_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    op.drop_column("sessions", "checkpoint_checked_at")
