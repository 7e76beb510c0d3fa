"""A task attempt: one agent's lease on one task, and how it ended.

A READY task is *leased* to one agent at a time (``lease_rules``: taking, holding and
timing a lease). Taking the lease starts attempt ``task.attempt + 1`` and moves the task
to RUNNING; the attempt stays open until the agent reports a result, or the lease runs
out (the agent stopped heart-beating), or the agent leaves.

This module says what the end of an attempt does to its task: a result completes it, or
fails it for that attempt; a lost attempt (expired, released) fails it for that attempt.
Either failure sends the task straight back to READY for someone else while attempts
are left.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from ..errors import Conflict
from .task import Task, TaskStatus, task_transition


class AttemptOutcome(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    EXPIRED = "expired"
    """The lease ran out: the agent stopped heart-beating or never answered."""
    RELEASED = "released"
    """The agent left (deregistered) while holding the lease."""


LOST_OUTCOMES = frozenset({AttemptOutcome.EXPIRED, AttemptOutcome.RELEASED})


class LeaseLost(Conflict):
    """A result or renewal for an attempt that is no longer the task's open attempt held
    by this agent (expired, handed on, or never leased to it)."""

    code = "lease_lost"


@dataclass(frozen=True, slots=True)
class TaskAttempt:
    task_id: UUID
    attempt: int
    agent_id: UUID
    leased_at: datetime
    expires_at: datetime
    outcome: AttemptOutcome | None = None
    finished_at: datetime | None = None
    error: str | None = None
    output: dict[str, Any] = field(default_factory=dict)
    execution_time_ms: int | None = None
    tokens_used: int = 0
    cost_usd: float = 0.0
    trouble: str | None = None
    """What holds it up while it runs (e.g. a provider being retried)."""

    @property
    def is_open(self) -> bool:
        return self.outcome is None

    def evolve(self, **changes: Any) -> TaskAttempt:
        return dataclasses.replace(self, **changes)


def end_lost_attempt(
    task: Task,
    attempt: TaskAttempt,
    outcome: AttemptOutcome,
    *,
    reason: str,
    now: datetime,
    max_attempts: int,
) -> tuple[list[Task], TaskAttempt]:
    """The task's successive states after its attempt was lost (``outcome`` is EXPIRED or
    RELEASED): FAILED for this attempt, then READY again while attempts are left. Returns
    them in order with the closed attempt."""
    if outcome not in LOST_OUTCOMES:
        raise ValueError(f"{outcome} is not a lost attempt")
    closed = attempt.evolve(outcome=outcome, finished_at=now, error=reason)
    if task.status != TaskStatus.RUNNING:
        return [], closed  # the task was moved on (cancelled) while the agent held it
    if task.attempt < max_attempts:
        summary = f"attempt {task.attempt} {outcome.value}: {reason}; back in the queue"
        failed = task_transition(task, TaskStatus.FAILED, now=now, summary=summary)
        return [failed, task_transition(failed, TaskStatus.READY, now=now)], closed
    summary = (
        f"attempt {task.attempt} {outcome.value}: {reason}; "
        f"failed after {task.attempt} of {max_attempts} attempts"
    )
    return [task_transition(task, TaskStatus.FAILED, now=now, summary=summary)], closed


def after_result(
    task: Task, closed: TaskAttempt, *, now: datetime, max_attempts: int, final: bool = False
) -> list[Task]:
    """The task's successive states after its holder reported ``closed`` (COMPLETED or
    FAILED): COMPLETED; or FAILED for this attempt, then READY again while attempts are
    left, unless ``final`` (another attempt would only repeat this one)."""
    if closed.outcome == AttemptOutcome.COMPLETED:
        return [
            task_transition(task, TaskStatus.COMPLETED, now=now, summary=result_summary(closed))
        ]
    reason = closed.error or "the agent reported a failure"
    failed = task_transition(
        task, TaskStatus.FAILED, now=now, summary=f"attempt {task.attempt} failed: {reason}"
    )
    if task.attempt < max_attempts and not final:
        return [failed, task_transition(failed, TaskStatus.READY, now=now)]
    return [failed]


def result_summary(attempt: TaskAttempt) -> str:
    """What a completed attempt says it did (its output's ``summary``, at most 2000
    characters), else who completed it."""
    summary = attempt.output.get("summary") if attempt.output else None
    if isinstance(summary, str) and summary.strip():
        return summary.strip()[:2000]
    return f"completed by agent {attempt.agent_id} on attempt {attempt.attempt}"
