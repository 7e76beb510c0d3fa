"""Shared contexts and the conflicts of their manual-merge writes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "contexts",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.Uuid),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("data", Json, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("vector", Json, nullable=False),
        sa.Column("critical", sa.Boolean, nullable=False),
        sa.Column("expires_at", Timestamp),
        sa.Column("last_writer", sa.String(200)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_contexts"),
    )
    op.create_index("ix_contexts_scope_owner", "contexts", ["scope", "owner_id"])
    op.create_table(
        "context_conflicts",
        sa.Column("id", sa.Uuid, nullable=False),
        sa.Column("context_id", sa.Uuid, nullable=False),
        sa.Column("writer", sa.String(200), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("incoming", Json, nullable=False),
        sa.Column("incoming_vector", Json),
        sa.Column("current_version", sa.Integer, nullable=False),
        sa.Column("current_data", Json, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("resolution", sa.String(16)),
        sa.Column("resolved_by", sa.String(200)),
        sa.Column("created_at", Timestamp, nullable=False),
        sa.Column("resolved_at", Timestamp),
        sa.PrimaryKeyConstraint("id", name="pk_context_conflicts"),
        sa.ForeignKeyConstraint(
            ["context_id"],
            ["contexts.id"],
            name="fk_context_conflicts_context_id_contexts",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_context_conflicts_context_status", "context_conflicts", ["context_id", "status"]
    )


def downgrade() -> None:
    op.drop_table("context_conflicts")
    op.drop_table("contexts")
