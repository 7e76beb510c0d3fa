"""An agent and a READY task, as the lease rules' tests (leases, attempts, liveness)
start from."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, new_agent
from industrial_orchestrator.domain.tasks.task import (
    Task,
    TaskStatus,
    TaskType,
    new_task,
    task_transition,
)

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def agent(**changes: Any) -> Agent:
    made = new_agent(
        id=uuid4(),
        name="a",
        agent_type="implementer",
        capabilities=["python"],
        kind=AgentKind.EXTERNAL,
        max_concurrent_tasks=2,
        now=T0,
    )
    return made.evolve(**changes)


def ready_task() -> Task:
    task = new_task(
        id=uuid4(),
        title="t",
        description="",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["python"],
        estimated_effort=1,
        now=T0,
    )
    return task_transition(task, TaskStatus.READY, now=T0)
