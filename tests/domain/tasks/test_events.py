"""The events a task's life writes: those built from more than one record."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

from industrial_orchestrator.domain.events import EventType
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.attempts import TaskAttempt
from industrial_orchestrator.domain.tasks.events import session_telemetry

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def test_telemetry_carries_the_sessions_totals_and_the_attempts_share():
    session = Session(
        id=uuid4(),
        title="s",
        initial_prompt="p",
        priority=Priority.MEDIUM,
        status=SessionState.RUNNING,
        created_at=T0,
        updated_at=T0,
        tokens_used=1500,
        cost_usd=0.75,
    )
    attempt = TaskAttempt(
        task_id=uuid4(),
        attempt=2,
        agent_id=uuid4(),
        leased_at=T0,
        expires_at=T0 + timedelta(seconds=90),
        tokens_used=500,
        cost_usd=0.25,
    )
    later = T0 + timedelta(seconds=5)
    event = session_telemetry(session, attempt, later)
    assert (event.type, event.at, event.session_id) == (
        EventType.SESSION_TELEMETRY,
        later,
        session.id,
    )
    assert event.payload == {
        "tokens_used": 1500,
        "cost_usd": 0.75,
        "task_id": str(attempt.task_id),
        "attempt": 2,
        "task_tokens": 500,
        "task_cost_usd": 0.25,
    }
