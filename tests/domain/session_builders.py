"""A session with every field set, for the tests of its mappings."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.sessions.session import (
    Session,
    SessionPhase,
    WorktreeBinding,
)
from industrial_orchestrator.domain.sessions.states import SessionState

from .record_builders import no_field_at_default


def every_option_set() -> SessionOptions:
    """Options with none at its default."""
    return no_field_at_default(
        SessionOptions,
        {
            "template": "crud",
            "verify_command": "make test",
            "max_review_rounds": 5,
            "timeout_seconds": 600,
            "max_tokens": 10_000,
            "max_cost_usd": 2.5,
            "max_parallel_tasks": 3,
            "planner": "agent",
            "amendment": "use the new API",
            "agents": ("ada", "grace"),
        },
    )


def every_field_set() -> Session:
    """A session with no field at its default (the options' neither)."""
    values = {
        "id": uuid4(),
        "title": "Build the thing",
        "initial_prompt": "Build it well",
        "priority": Priority.HIGH,
        "status": SessionState.RUNNING,
        "created_at": datetime(2026, 12, 6, 1, 2, 3, 456789, tzinfo=UTC),
        "updated_at": datetime(2026, 12, 6, 4, 5, 6, tzinfo=UTC),
        "version": 7,
        "transition_seq": 5,
        "phase": SessionPhase.REVIEWING,
        "workspace": "/srv/work/thing",
        "metadata": {"team": "blue", "limits": [1, 2]},
        "status_reason": "resumed",
        "started_at": datetime(2026, 12, 6, 2, 0, tzinfo=UTC),
        "finished_at": datetime(2026, 12, 6, 3, 0, tzinfo=UTC),
        "retry_of": uuid4(),
        "attempt": 2,
        "restored_from_checkpoint": uuid4(),
        "forked_from": uuid4(),
        "tokens_used": 1234,
        "cost_usd": 0.75,
        "options": every_option_set(),
        "review_round": 1,
        "worktree": WorktreeBinding("/srv/trees/thing", "orchestrator/thing", "a" * 40),
        "checkpoint_checked_at": datetime(2026, 12, 6, 4, 0, tzinfo=UTC),
    }
    # A new field of Session belongs here too (and in ``session_fields``).
    return no_field_at_default(Session, values)
