"""Sessions, their transition history and their checkpoints.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("initial_prompt", sa.Text, nullable=False),
        sa.Column("priority", sa.String(16), nullable=False),
        sa.Column("priority_rank", sa.SmallInteger, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("phase", sa.String(16)),
        sa.Column("status_reason", sa.Text),
        sa.Column("workspace", sa.Text),
        sa.Column("metadata", Json, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("transition_seq", sa.Integer, nullable=False),
        sa.Column("checkpoint_seq", sa.Integer, nullable=False, server_default="0"),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.Column("started_at", Timestamp),
        sa.Column("finished_at", Timestamp),
        sa.Column("duration_seconds", sa.Float),
        sa.Column("retry_of", sa.Uuid),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("restored_from_checkpoint", sa.Uuid),
        sa.Column("tokens_used", sa.BigInteger, nullable=False),
        sa.Column("cost_usd", sa.Float, nullable=False),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("idempotency_hash", sa.String(64)),
        sa.PrimaryKeyConstraint("id", name="pk_sessions"),
        sa.ForeignKeyConstraint(
            ["retry_of"], ["sessions.id"], name="fk_sessions_retry_of_sessions"
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_sessions_idempotency_key"),
        # A session is retried at most once; a second retry goes through the first.
        sa.UniqueConstraint("retry_of", name="uq_sessions_retry_of"),
    )
    op.create_index(
        "ix_sessions_status_priority_created",
        "sessions",
        ["status", "priority_rank", "created_at"],
    )
    op.create_index("ix_sessions_created_at", "sessions", ["created_at"])
    op.create_table(
        "session_transitions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("from_state", sa.String(32)),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("actor", sa.String(32), nullable=False),
        sa.Column("at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_session_transitions"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_session_transitions_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("session_id", "seq", name="uq_session_transitions_session_seq"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("session_id", sa.Uuid, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("data", Json, nullable=False),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkpoints"),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name="fk_checkpoints_session_id_sessions",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("session_id", "seq", name="uq_checkpoints_session_seq"),
    )


def downgrade() -> None:
    op.drop_table("checkpoints")
    op.drop_table("session_transitions")
    op.drop_index("ix_sessions_created_at", table_name="sessions")
    op.drop_index("ix_sessions_status_priority_created", table_name="sessions")
    op.drop_table("sessions")
