"""The database schema as SQLAlchemy Core tables; migrations in ``migrations/`` build it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Json = sa.JSON().with_variant(JSONB(), "postgresql")
Timestamp = sa.DateTime(timezone=True)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
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
    sa.Column("event_seq", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("started_at", Timestamp),
    sa.Column("finished_at", Timestamp),
    sa.Column("duration_seconds", sa.Float),
    sa.Column("retry_of", sa.Uuid, sa.ForeignKey("sessions.id"), unique=True),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("restored_from_checkpoint", sa.Uuid),
    # The session this one was forked from (at ``restored_from_checkpoint``); many forks
    # may share one origin, unlike ``retry_of``.
    sa.Column("forked_from", sa.Uuid, index=True),
    sa.Column("tokens_used", sa.BigInteger, nullable=False),
    sa.Column("cost_usd", sa.Float, nullable=False),
    sa.Column("idempotency_key", sa.String(255), unique=True),
    sa.Column("idempotency_hash", sa.String(64)),
    sa.Column("options", Json, nullable=False, server_default="{}"),
    sa.Column("review_round", sa.Integer, nullable=False, server_default="0"),
    # The orchestrator process running the session, until ``owner_expires_at`` unless it
    # renews (the engine's ownership lease; not part of the session's own state).
    sa.Column("owner", sa.String(128)),
    sa.Column("owner_expires_at", Timestamp),
    # When the owner next steps it though nothing happens to it (its time limit, its
    # next periodic checkpoint); cleared when the owner takes the timer.
    sa.Column("next_due_at", Timestamp),
    sa.Column("checkpoint_checked_at", Timestamp),
    # Its own git working tree (written once, by ``bind_worktree``, never by ``save``).
    sa.Column("worktree", sa.Text),
    sa.Column("branch", sa.String(255)),
    sa.Column("base_commit", sa.String(64)),
    sa.Index("ix_sessions_status_priority_created", "status", "priority_rank", "created_at"),
    sa.Index("ix_sessions_created_at", "created_at"),
    sa.Index("ix_sessions_owner", "owner"),
    sa.Index("ix_sessions_owner_next_due", "owner", "next_due_at"),
)

session_transitions = sa.Table(
    "session_transitions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column(
        "session_id", sa.Uuid, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("from_state", sa.String(32)),
    sa.Column("to_state", sa.String(32), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("actor", sa.String(32), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.UniqueConstraint("session_id", "seq", name="uq_session_transitions_session_seq"),
)

checkpoints = sa.Table(
    "checkpoints",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "session_id", sa.Uuid, sa.ForeignKey("sessions.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("label", sa.String(200), nullable=False),
    sa.Column("reason", sa.Text),
    sa.Column("data", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.UniqueConstraint("session_id", "seq", name="uq_checkpoints_session_seq"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("session_id", sa.Uuid, sa.ForeignKey("sessions.id", ondelete="CASCADE")),
    sa.Column("seq", sa.Integer),
    sa.Column("type", sa.String(64), nullable=False),
    sa.Column("at", Timestamp, nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.UniqueConstraint("session_id", "seq", name="uq_events_session_seq"),
)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("session_id", sa.Uuid, sa.ForeignKey("sessions.id", ondelete="CASCADE")),
    sa.Column("parent_id", sa.Uuid, sa.ForeignKey("tasks.id", ondelete="CASCADE")),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("task_type", sa.String(32), nullable=False),
    sa.Column("required_capabilities", Json, nullable=False),
    # Paths the plan expects the task to edit (tasks that share one are not run at once).
    sa.Column("files", Json, nullable=False, server_default="[]"),
    sa.Column("estimated_effort", sa.Float, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("template", sa.String(32)),
    sa.Column("result_summary", sa.Text),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("updated_at", Timestamp, nullable=False),
    sa.Column("started_at", Timestamp),
    sa.Column("finished_at", Timestamp),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    # The order claims take waiting tasks in, first the smallest: minus the rank of the
    # session's priority (which never changes), 1 outside any session. Kept on the row,
    # written when the task is, so that the index below gives the most urgent waiting
    # task first: a claim reads a row or two, not every waiting task to sort them.
    sa.Column("claim_order", sa.SmallInteger, nullable=False, server_default="1"),
    sa.Index("ix_tasks_session_status", "session_id", "status"),
    sa.Index("ix_tasks_parent_id", "parent_id"),
    # The waiting tasks alone, in claim order: a claim looks only at them, however many
    # tasks have ever been (the index above, led by the session, would be read whole).
    sa.Index(
        "ix_tasks_ready",
        "claim_order",
        "created_at",
        "id",
        postgresql_where=sa.text("status = 'READY'"),
        sqlite_where=sa.text("status = 'READY'"),
    ),
)

task_dependencies = sa.Table(
    "task_dependencies",
    metadata,
    sa.Column("task_id", sa.Uuid, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "depends_on", sa.Uuid, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Index("ix_task_dependencies_depends_on", "depends_on"),
)

# One row per lease of a task: open (``outcome`` NULL) while the agent works, closed once
# with how it ended. The task's ``attempt`` names the current row (the fencing token).
task_attempts = sa.Table(
    "task_attempts",
    metadata,
    sa.Column("task_id", sa.Uuid, sa.ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("attempt", sa.Integer, primary_key=True),
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
    # What holds the attempt up while it runs (a provider being retried), else NULL.
    sa.Column("trouble", sa.Text),
    sa.Index("ix_task_attempts_agent_outcome", "agent_id", "outcome"),
    sa.Index("ix_task_attempts_outcome_expires", "outcome", "expires_at"),
)

task_artifacts = sa.Table(
    "task_artifacts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("task_id", sa.Uuid, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("mime_type", sa.String(127), nullable=False),
    sa.Column("size_bytes", sa.Integer, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.ForeignKeyConstraint(
        ["task_id", "attempt"],
        ["task_attempts.task_id", "task_attempts.attempt"],
        ondelete="CASCADE",
        name="fk_task_artifacts_task_attempt",
    ),
    sa.UniqueConstraint("task_id", "attempt", "path", name="uq_task_artifacts_attempt_path"),
)

contexts = sa.Table(
    "contexts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
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
    sa.Index("ix_contexts_scope_owner", "scope", "owner_id"),
)

context_conflicts = sa.Table(
    "context_conflicts",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "context_id", sa.Uuid, sa.ForeignKey("contexts.id", ondelete="CASCADE"), nullable=False
    ),
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
    sa.Index("ix_context_conflicts_context_status", "context_id", "status"),
)

agents = sa.Table(
    "agents",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("agent_type", sa.String(64), nullable=False),
    sa.Column("capabilities", Json, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("max_concurrent_tasks", sa.Integer, nullable=False),
    sa.Column("tasks_in_progress", sa.Integer, nullable=False),
    sa.Column("current_load", sa.Float, nullable=False),
    sa.Column("success_count", sa.Integer, nullable=False),
    sa.Column("failure_count", sa.Integer, nullable=False),
    sa.Column("registered_at", Timestamp, nullable=False),
    sa.Column("last_heartbeat", Timestamp),
    sa.Column("last_assigned_at", Timestamp),
    sa.Column("metadata", Json, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)

operator_tokens = sa.Table(
    "operator_tokens",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("revoked_at", Timestamp),
)

webhooks = sa.Table(
    "webhooks",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False, unique=True),
    sa.Column("url", sa.Text, nullable=False),
    # Kept as given: it signs every body. The API shows it only when the webhook is made.
    sa.Column("secret", sa.String(200), nullable=False),
    sa.Column("events", Json, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    # The newest event of the log this webhook has been considered for.
    sa.Column("last_event_id", sa.BigInteger, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Uuid, primary_key=True),
    sa.Column(
        "webhook_id", sa.Uuid, sa.ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False
    ),
    # The event log's global id; None for a test delivery (no foreign key: a delivery's
    # record stays when the session and its events are deleted).
    sa.Column("event_id", sa.BigInteger),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("last_status_code", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", Timestamp),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("delivered_at", Timestamp),
    # An event is queued once per webhook, whichever replica or restart queues it.
    sa.UniqueConstraint("webhook_id", "event_id", name="uq_webhook_deliveries_webhook_event"),
    sa.Index("ix_webhook_deliveries_status_next", "status", "next_attempt_at"),
)

# The side-effect ledger (domain.effects): one row per effect outside the database.
effects = sa.Table(
    "effects",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("session_id", sa.Uuid, sa.ForeignKey("sessions.id", ondelete="CASCADE")),
    sa.Column("task_id", sa.Uuid),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("detail", Json, nullable=False),
    sa.Column("created_at", Timestamp, nullable=False),
    sa.Column("done_at", Timestamp),
    sa.Index("ix_effects_state_session", "state", "session_id"),
    sa.Index("ix_effects_session_created", "session_id", "created_at"),
)

# Running slots (MAX_CONCURRENT_SESSIONS): one row a slot, holding the session that has
# it. Starts take different free rows at once (FOR UPDATE SKIP LOCKED) instead of queueing
# on one lock; the rows are made as the first takers find them missing.
running_slots = sa.Table(
    "running_slots",
    metadata,
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column(
        "session_id",
        sa.Uuid,
        sa.ForeignKey("sessions.id", ondelete="SET NULL"),
        unique=True,
    ),
)
