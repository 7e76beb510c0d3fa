"""Rows for the contract cases, made with the domain's own constructors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, new_agent
from industrial_orchestrator.domain.events import EventType, NewEvent
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.task import Task, TaskStatus, TaskType, new_task
from industrial_orchestrator.services.ports import UnitOfWorkFactory

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def session(
    n: int = 0,
    *,
    status: SessionState = SessionState.PENDING,
    priority: Priority = Priority.LOW,
    **changes: Any,
) -> Session:
    made = Session(uuid4(), f"session {n}", f"prompt {n}", priority, status, at(n), at(n))
    return made.evolve(**changes) if changes else made


def task(
    n: int,
    session_id: UUID | None,
    *,
    capabilities: tuple[str, ...] = ("python",),
    depends_on: tuple[UUID, ...] = (),
    parent_id: UUID | None = None,
    status: TaskStatus = TaskStatus.PENDING,
) -> Task:
    made = new_task(
        id=uuid4(),
        title=f"task {n}",
        description="d",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=capabilities,
        estimated_effort=1.0,
        now=at(n),
        session_id=session_id,
        parent_id=parent_id,
        depends_on=depends_on,
    )
    return made.evolve(status=status) if status is not TaskStatus.PENDING else made


def agent(name: str, capabilities: tuple[str, ...] = ("python",), **changes: Any) -> Agent:
    made = new_agent(
        id=uuid4(),
        name=name,
        agent_type="coder",
        capabilities=capabilities,
        kind=AgentKind.EXTERNAL,
        max_concurrent_tasks=2,
        now=NOW,
    )
    return made.evolve(**changes) if changes else made


def line(session_id: UUID | None, text: str) -> NewEvent:
    return NewEvent(EventType.SESSION_LOG, NOW, session_id, {"text": text})


async def committed(
    uow: UnitOfWorkFactory, *sessions: Session, tasks: tuple[Task, ...] = ()
) -> None:
    """Store the sessions, then the tasks, in one committed transaction."""
    async with uow() as unit:
        for each in sessions:
            await unit.sessions.add(each, None, None)
        for each_task in tasks:
            await unit.tasks.add(each_task)
        await unit.commit()
