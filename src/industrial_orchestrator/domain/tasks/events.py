"""The events a task's life writes to the log (``task.*``), in its session's stream
when it belongs to one, else in the global stream."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from ..events import EventType, NewEvent
from ..sessions.session import Session
from .attempts import TaskAttempt
from .loop_guard import LoopStop
from .task import Task

# An event is at most 16 KiB (``events.MAX_PAYLOAD_BYTES``): room for the rest.
_SHOWN_PATHS_BYTES = 8 * 1024


def task_created(task: Task) -> NewEvent:
    return NewEvent(
        EventType.TASK_CREATED,
        task.created_at,
        task.session_id,
        {
            "task_id": str(task.id),
            "title": task.title,
            "task_type": task.task_type.value,
            "parent_id": str(task.parent_id) if task.parent_id else None,
            "depends_on": [str(d) for d in task.depends_on],
            "required_capabilities": list(task.required_capabilities),
            "estimated_effort": task.estimated_effort,
            "status": task.status.value,
        },
    )


def task_transition(before: Task, after: Task) -> NewEvent:
    return NewEvent(
        EventType.TASK_TRANSITION,
        after.updated_at,
        after.session_id,
        {
            "task_id": str(after.id),
            "from": before.status.value,
            "to": after.status.value,
            "version": after.version,
            "result_summary": after.result_summary,
        },
    )


def task_decomposed(
    task: Task, template: str, score: float, children: Sequence[Task], at: datetime
) -> NewEvent:
    return NewEvent(
        EventType.TASK_DECOMPOSED,
        at,
        task.session_id,
        {
            "task_id": str(task.id),
            "template": template,
            "score": score,
            "subtasks": [str(child.id) for child in children],
        },
    )


def task_dependency_added(task: Task, depends_on: Task, at: datetime) -> NewEvent:
    return NewEvent(
        EventType.TASK_DEPENDENCY_ADDED,
        at,
        task.session_id,
        {"task_id": str(task.id), "depends_on": str(depends_on.id)},
    )


def task_leased(task: Task, attempt: TaskAttempt) -> NewEvent:
    return NewEvent(
        EventType.TASK_LEASED,
        attempt.leased_at,
        task.session_id,
        {
            "task_id": str(task.id),
            "agent_id": str(attempt.agent_id),
            "attempt": attempt.attempt,
            "lease_expires_at": attempt.expires_at.isoformat(),
        },
    )


def task_attempt_ended(task: Task, attempt: TaskAttempt, artifacts: int = 0) -> NewEvent:
    assert attempt.outcome is not None
    assert attempt.finished_at is not None
    return NewEvent(
        EventType.TASK_ATTEMPT_ENDED,
        attempt.finished_at,
        task.session_id,
        {
            "task_id": str(task.id),
            "agent_id": str(attempt.agent_id),
            "attempt": attempt.attempt,
            "outcome": attempt.outcome.value,
            "error": attempt.error,
            "tokens_used": attempt.tokens_used,
            "cost_usd": attempt.cost_usd,
            "execution_time_ms": attempt.execution_time_ms,
            "artifacts": artifacts,
        },
    )


def task_held_up(task: Task, attempt: int, trouble: str | None, now: datetime) -> NewEvent:
    """What holds up the agent's attempt (its provider being retried), or, with
    ``trouble`` None, that nothing does any more: the engine shows the session DEGRADED
    meanwhile, and learns of it from this event."""
    return NewEvent(
        EventType.TASK_HELD_UP,
        now,
        task.session_id,
        {"task_id": str(task.id), "attempt": attempt, "trouble": trouble},
    )


def task_loop_stopped(
    task: Task, attempt: TaskAttempt, stop: LoopStop, *, requeued: bool
) -> NewEvent:
    """The loop guard stopped ``attempt``; ``requeued``: the task went back to the queue."""
    assert attempt.finished_at is not None
    return NewEvent(
        EventType.TASK_LOOP_STOPPED,
        attempt.finished_at,
        task.session_id,
        {
            "task_id": str(task.id),
            "agent_id": str(attempt.agent_id),
            "attempt": attempt.attempt,
            "kind": stop.trip.kind.value,
            "message": stop.trip.message,
            "rolled_back": _first_paths(stop.rolled_back),
            "rolled_back_count": len(stop.rolled_back),
            "rollback_error": stop.rollback_error,
            "tokens_used": attempt.tokens_used,
            "requeued": requeued,
        },
    )


def session_telemetry(session: Session, attempt: TaskAttempt, now: datetime) -> NewEvent:
    """The session's running totals after ``attempt``'s result, for the live gauges."""
    return NewEvent(
        EventType.SESSION_TELEMETRY,
        now,
        session.id,
        {
            "tokens_used": session.tokens_used,
            "cost_usd": session.cost_usd,
            "task_id": str(attempt.task_id),
            "attempt": attempt.attempt,
            "task_tokens": attempt.tokens_used,
            "task_cost_usd": attempt.cost_usd,
        },
    )


def _first_paths(paths: Sequence[str]) -> list[str]:
    """As many of ``paths`` as fit in ``_SHOWN_PATHS_BYTES`` (the count is given apart)."""
    shown: list[str] = []
    size = 0
    for path in paths:
        size += len(path.encode()) + 4  # quotes, comma, space
        if size > _SHOWN_PATHS_BYTES:
            break
        shown.append(path)
    return shown
