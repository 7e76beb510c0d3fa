"""Bringing a session's tasks in line with the operator (``services/session_halts.py``)
on the in-memory unit of work: an ended session's unfinished tasks are cancelled and
their leases let go; a paused session's tasks in flight wait, READY, for it to resume,
with nothing held against their agents."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from industrial_orchestrator.domain.agents.agent import Agent, AgentKind, new_agent
from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.attempts import AttemptOutcome
from industrial_orchestrator.domain.tasks.lease_rules import agent_with_lease, lease_task
from industrial_orchestrator.domain.tasks.task import Task, TaskStatus, TaskType, new_task
from industrial_orchestrator.services.session_halts import SessionHalts
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory

pytestmark = pytest.mark.fast

NOW = datetime(2026, 12, 6, tzinfo=UTC)
S = TaskStatus


def _task(session: Session, title: str, status: TaskStatus) -> Task:
    return new_task(
        id=uuid4(),
        title=title,
        description="d",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["python"],
        estimated_effort=1.0,
        now=NOW,
        session_id=session.id,
    ).evolve(status=status)


async def _fleet(status: SessionState) -> tuple[MemoryUnitOfWorkFactory, Session, Agent, Task]:
    """A session in ``status`` with a task of each kind, one of them leased to an agent."""
    uow = MemoryUnitOfWorkFactory()
    session = Session(uuid4(), "s", "p", Priority.LOW, status, NOW, NOW)
    agent = new_agent(
        id=uuid4(),
        name="worker",
        agent_type="coder",
        capabilities=["python"],
        kind=AgentKind.EXTERNAL,
        max_concurrent_tasks=2,
        now=NOW,
    )
    held, attempt = lease_task(_task(session, "held", S.READY), agent, now=NOW, lease_seconds=60)
    async with uow() as unit:
        await unit.sessions.add(session, None, None)
        await unit.agents.add(agent_with_lease(agent, now=NOW))
        for task in (
            _task(session, "waiting", S.PENDING),
            _task(session, "ready", S.READY),
            _task(session, "done", S.COMPLETED),
            _task(session, "failed", S.FAILED),
            held,
        ):
            await unit.tasks.add(task)
        await unit.attempts.add(attempt)
        await unit.commit()
    return uow, session, agent, held


async def _statuses(uow: MemoryUnitOfWorkFactory, session: Session) -> dict[str, TaskStatus]:
    async with uow.reader() as unit:
        return {t.title: t.status for t in await unit.tasks.of_session(session.id)}


async def _after(uow: MemoryUnitOfWorkFactory, agent: Agent, held: Task) -> tuple[int, object]:
    async with uow.reader() as unit:
        found = await unit.agents.get(agent.id)
        attempt = await unit.attempts.get(held.id, 1)
    assert found is not None
    assert attempt is not None
    return found.tasks_in_progress, attempt.outcome


async def test_an_ended_sessions_unfinished_tasks_are_cancelled_and_their_leases_let_go():
    uow, session, agent, held = await _fleet(SessionState.STOPPED)
    await SessionHalts(uow, clock=lambda: NOW).cancel_tasks(session)
    assert await _statuses(uow, session) == {
        "waiting": S.CANCELLED,
        "ready": S.CANCELLED,
        "done": S.COMPLETED,
        "failed": S.FAILED,  # its record of failure stays for the operator
        "held": S.CANCELLED,
    }
    assert await _after(uow, agent, held) == (0, AttemptOutcome.RELEASED)


async def test_a_paused_sessions_tasks_in_flight_wait_ready_with_nothing_held_against_anyone():
    uow, session, agent, held = await _fleet(SessionState.PAUSED)
    await SessionHalts(uow, clock=lambda: NOW).release_running(session, "the session was paused")
    statuses = await _statuses(uow, session)
    assert statuses["held"] == S.READY
    assert statuses["waiting"] == S.PENDING  # the rest untouched
    assert await _after(uow, agent, held) == (0, AttemptOutcome.RELEASED)
    async with uow.reader() as unit:
        again = await unit.agents.get(agent.id)
    assert again is not None
    assert again.failure_count == 0  # a pause is nobody's failure
