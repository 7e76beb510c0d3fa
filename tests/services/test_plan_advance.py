"""Moving a plan on (``services/plan_advance.py``) on the in-memory unit of work: what
opens, up to the session's limit, what closes, and the look that says whether anything
would."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.sessions.session import Session, SessionPhase
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.task import Task, TaskStatus, TaskType, new_task
from industrial_orchestrator.services.plan_advance import advance_plan, plan_now
from industrial_orchestrator.testing.memory_unit_of_work import MemoryUnitOfWorkFactory

pytestmark = pytest.mark.fast

NOW = datetime(2026, 12, 6, tzinfo=UTC)
S = TaskStatus


def _session(**options: object) -> Session:
    return Session(
        uuid4(),
        "s",
        "p",
        Priority.MEDIUM,
        SessionState.RUNNING,
        NOW,
        NOW,
        phase=SessionPhase.EXECUTING,
        started_at=NOW,
        options=SessionOptions(**options),  # type: ignore[arg-type]
    )


def _task(session: Session, n: int, *, status: TaskStatus = S.PENDING, **links: object) -> Task:
    made = new_task(
        id=uuid4(),
        title=f"task {n}",
        description="d",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["python"],
        estimated_effort=1.0,
        now=NOW + timedelta(seconds=n),
        session_id=session.id,
        **links,  # type: ignore[arg-type]
    )
    return made.evolve(status=status)


async def _stored(session: Session, *tasks: Task) -> MemoryUnitOfWorkFactory:
    uow = MemoryUnitOfWorkFactory()
    async with uow() as unit:
        await unit.sessions.add(session, None, None)
        for task in tasks:
            await unit.tasks.add(task)
        await unit.commit()
    return uow


async def _statuses(uow: MemoryUnitOfWorkFactory, session_id: UUID) -> list[TaskStatus]:
    async with uow.reader() as unit:
        return [t.status for t in await unit.tasks.of_session(session_id)]


async def _advance(uow: MemoryUnitOfWorkFactory, session_id: UUID) -> tuple[int, int]:
    async with uow() as unit:
        advanced = await advance_plan(unit, session_id, NOW, default_parallel=4)
        await unit.commit()
    assert advanced is not None
    return advanced.opened, advanced.closed


async def _movable(uow: MemoryUnitOfWorkFactory, session_id: UUID) -> bool | None:
    async with uow.reader() as unit:
        now = await plan_now(unit, session_id, default_parallel=4)
    return None if now is None else now[1]


async def test_a_task_opens_when_what_it_waits_for_is_done_and_the_look_says_so_first():
    session = _session()
    first = _task(session, 0, status=S.COMPLETED)
    second = _task(session, 1, depends_on=[first.id])
    third = _task(session, 2, depends_on=[second.id])
    uow = await _stored(session, first, second, third)
    assert await _movable(uow, session.id) is True
    assert await _advance(uow, session.id) == (1, 0)
    assert await _statuses(uow, session.id) == [S.COMPLETED, S.READY, S.PENDING]
    # Nothing more until the second is done: the look says so, and a step writes nothing.
    assert await _movable(uow, session.id) is False


async def test_independent_tasks_open_side_by_side_up_to_the_sessions_limit():
    session = _session(max_parallel_tasks=2)
    tasks = [_task(session, n) for n in range(3)]
    uow = await _stored(session, *tasks)
    assert await _advance(uow, session.id) == (2, 0)
    assert await _statuses(uow, session.id) == [S.READY, S.READY, S.PENDING]
    assert await _movable(uow, session.id) is False  # the limit is reached


async def test_a_summary_task_closes_when_its_subtasks_are_done():
    session = _session()
    parent = _task(session, 0)
    child = _task(session, 1, status=S.COMPLETED, parent_id=parent.id)
    after = _task(session, 2, depends_on=[parent.id])
    uow = await _stored(session, parent, child, after)
    assert await _movable(uow, session.id) is True
    # The summary closes, and what waited for it opens in the same move.
    assert await _advance(uow, session.id) == (1, 1)
    assert await _statuses(uow, session.id) == [S.COMPLETED, S.COMPLETED, S.READY]


@pytest.mark.parametrize(
    "session",
    [
        _session(max_tokens=100).evolve(tokens_used=101),  # over its budget
        _session().evolve(phase=SessionPhase.PLANNING),  # not planned yet
        _session().evolve(status=SessionState.PAUSED),
    ],
)
async def test_a_plan_that_is_not_executing_is_not_moved(session: Session):
    uow = await _stored(session, _task(session, 0))
    assert await _movable(uow, session.id) is None
    async with uow() as unit:
        assert await advance_plan(unit, session.id, NOW, default_parallel=4) is None
    assert await _statuses(uow, session.id) == [S.PENDING]


async def test_the_look_judges_by_the_session_its_caller_read():
    """The engine's step hands over the session it has just read: the look reads only
    the tasks (the write re-reads the session under the family's lock)."""
    session = _session()
    first = _task(session, 0)
    uow = await _stored(session, first)
    paused_meanwhile = dataclasses.replace(session, status=SessionState.PAUSED)
    async with uow.reader() as unit:
        told = await plan_now(unit, session.id, default_parallel=4, session=paused_meanwhile)
        assert told is None
        look = await plan_now(unit, session.id, default_parallel=4)
    assert look is not None
    assert look[1] is True
    assert await _advance(uow, session.id) == (1, 0)
