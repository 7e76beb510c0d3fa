"""Lease rules: who may take a lease, what taking one does, when it is held, and how
long it lasts.

A lease is a task's open attempt (``task_attempts.TaskAttempt``). An agent takes one only
while it accepts work (online, not busy, below its capacity); taking it counts one more
task in progress on the agent, and the end of the attempt one fewer, with a success or a
failure on its record. The attempt number is the fencing token: a result is accepted
only for the task's current, open attempt and only from the agent holding it, so a
zombie that wakes up after its lease was handed on cannot overwrite the work of its
successor. A lease lasts ``lease_seconds`` from its taking, but never runs out within
the orchestrator's own restart grace (its agents could not renew while it was down).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from ..agents.agent import Agent, AgentStatus
from ..errors import Conflict
from .attempts import AttemptOutcome, LeaseLost, TaskAttempt
from .task import Task, TaskStatus, task_transition

UNKNOWN_LEASE_GRACE_SECONDS = 30.0
"""How long an agent may have a lease it does not list in its heartbeats before the lease
is let go: longer than any answer to a pull can take to arrive."""


class AgentNotAccepting(Conflict):
    """The agent asked for work while offline, busy or at capacity."""

    code = "agent_not_accepting"


def check_accepting(agent: Agent) -> None:
    """``AgentNotAccepting`` saying why, unless ``agent`` may take a lease now."""
    if agent.status in (AgentStatus.OFFLINE, AgentStatus.BUSY):
        raise AgentNotAccepting(
            f"Agent {agent.id} is {agent.status.value}; send a heartbeat with status "
            "'healthy' or 'degraded' before asking for work",
            {"agent_id": str(agent.id), "status": agent.status.value},
        )
    if agent.at_capacity:
        raise AgentNotAccepting(
            f"Agent {agent.id} holds {agent.tasks_in_progress} of its "
            f"{agent.max_concurrent_tasks} concurrent tasks; report a result first",
            {
                "agent_id": str(agent.id),
                "tasks_in_progress": agent.tasks_in_progress,
                "max_concurrent_tasks": agent.max_concurrent_tasks,
            },
        )


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


def effective_expiry(attempt: TaskAttempt, *, grace_until: datetime) -> datetime:
    """When the lease really runs out: never before ``grace_until``, the moment the
    orchestrator has given its agents to renew after its own start (they could not
    renew while it was down)."""
    return max(attempt.expires_at, grace_until)


def restart_grace_until(started_at: datetime, lease_seconds: float) -> datetime:
    """Until when no lease runs out: one lease's length after the orchestrator started."""
    return started_at + timedelta(seconds=lease_seconds)


def unknown_leases(
    held: Sequence[TaskAttempt], listed: Collection[UUID], *, now: datetime
) -> list[TaskAttempt]:
    """The leases of ``held`` that an agent's heartbeat listing its tasks (``listed``) did
    not name, once it has had them for ``UNKNOWN_LEASE_GRACE_SECONDS``: the answer to its
    pull never reached it, so it will never report."""
    cutoff = now - timedelta(seconds=UNKNOWN_LEASE_GRACE_SECONDS)
    known = set(listed)
    return [a for a in held if a.task_id not in known and a.leased_at <= cutoff]
