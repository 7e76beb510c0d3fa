"""A task attempt: one agent's lease on one task, and how it ended.

A READY task is *leased* to one agent at a time. Taking the lease starts attempt
``task.attempt + 1`` and moves the task to RUNNING; the attempt stays open until the agent
reports a result, or the lease runs out (the agent stopped heart-beating), or the agent
leaves. The attempt number is the fencing token: a result is accepted only for the
task's current, open attempt and only from the agent holding it, so a zombie that wakes
up after its lease was handed on cannot overwrite the work of its successor.

A lost attempt (expired, released) fails the task for that attempt; while attempts are
left, the task goes straight back to READY for someone else.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID

from .agents import Agent
from .errors import Conflict
from .tasks import Task, TaskStatus, task_transition


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


def lease_task(
    task: Task, agent: Agent, *, now: datetime, lease_seconds: float
) -> tuple[Task, TaskAttempt]:
    """Start the next attempt of a READY task on ``agent``: the task becomes RUNNING."""
    if task.status != TaskStatus.READY:
        raise Conflict(
            f"Task {task.id} is {task.status.value}; only a READY task can be leased",
            {"task_id": str(task.id), "current_state": task.status.value},
        )
    running = task_transition(task, TaskStatus.RUNNING, now=now).evolve(attempt=task.attempt + 1)
    attempt = TaskAttempt(
        task_id=task.id,
        attempt=running.attempt,
        agent_id=agent.id,
        leased_at=now,
        expires_at=now + timedelta(seconds=lease_seconds),
    )
    return running, attempt


def check_holder(
    task: Task, attempt: TaskAttempt | None, agent_id: UUID, claimed: int | None
) -> TaskAttempt:
    """The open attempt ``agent_id`` may act on, or ``LeaseLost`` saying why not.

    ``claimed`` is the attempt number the agent says it is reporting for (None: its
    current one)."""
    details: dict[str, Any] = {"task_id": str(task.id), "current_attempt": task.attempt}
    if claimed is not None and claimed != task.attempt:
        raise LeaseLost(
            f"Attempt {claimed} of task {task.id} is over; the task is on attempt "
            f"{task.attempt}. The result was not recorded.",
            {**details, "attempt": claimed},
        )
    if attempt is None or not attempt.is_open or task.status != TaskStatus.RUNNING:
        raise LeaseLost(
            f"Task {task.id} is not leased (it is {task.status.value}); the result of "
            f"attempt {task.attempt} was not recorded",
            details,
        )
    if attempt.agent_id != agent_id:
        raise LeaseLost(
            f"Task {task.id} is leased to another agent; the result was not recorded",
            details,
        )
    return attempt


def effective_expiry(attempt: TaskAttempt, *, grace_until: datetime) -> datetime:
    """When the lease really runs out: never before ``grace_until``, the moment the
    orchestrator has given its agents to renew after its own start (they could not
    renew while it was down)."""
    return max(attempt.expires_at, grace_until)


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


def agent_with_lease(agent: Agent, *, now: datetime) -> Agent:
    """The agent's record once it took a lease: one more task in progress."""
    busy = agent.tasks_in_progress + 1
    return agent.evolve(
        tasks_in_progress=busy,
        current_load=min(1.0, busy / agent.max_concurrent_tasks),
        last_assigned_at=now,
        version=agent.version + 1,
    )


def agent_after_attempt(agent: Agent, outcome: AttemptOutcome, *, on_record: bool = True) -> Agent:
    """The agent's record once an attempt it held ended: one task fewer in progress, and
    a success (COMPLETED) or a failure (anything else: a lost lease is a task the agent
    took and did not deliver) on its record, unless ``on_record`` is False (the task was
    taken out of its hands, e.g. cancelled by an operator)."""
    busy = max(0, agent.tasks_in_progress - 1)
    succeeded = on_record and outcome == AttemptOutcome.COMPLETED
    failed = on_record and not succeeded
    return agent.evolve(
        tasks_in_progress=busy,
        current_load=min(1.0, busy / agent.max_concurrent_tasks),
        success_count=agent.success_count + (1 if succeeded else 0),
        failure_count=agent.failure_count + (1 if failed else 0),
        version=agent.version + 1,
    )
