"""The task repository's reads: a session's tasks, several by id, a task's session (with
its family's lock), and pages whose total is counted only when the page does not show
it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from industrial_orchestrator.domain.priorities import Priority
from industrial_orchestrator.domain.sessions.session import Session
from industrial_orchestrator.domain.sessions.states import SessionState
from industrial_orchestrator.domain.tasks.task import Task, TaskStatus, TaskType, new_task
from industrial_orchestrator.storage.unit_of_work import SqlUnitOfWorkFactory

from ..domain.lease_builders import agent

NOW = datetime(2026, 12, 5, tzinfo=UTC)


def task(n: int, session_id: UUID | None, depends_on: tuple[UUID, ...] = ()) -> Task:
    return new_task(
        id=uuid4(),
        title=f"t{n}",
        description="d",
        task_type=TaskType.CODE_GENERATION,
        required_capabilities=["python"],
        estimated_effort=1.0,
        now=NOW + timedelta(seconds=n),
        session_id=session_id,
        depends_on=depends_on,
    )


@pytest.fixture
async def planned(uow: SqlUnitOfWorkFactory) -> tuple[Session, list[Task], Task]:
    """A session with five tasks (the last two depend on the first, the third is
    RUNNING), and a task outside any session."""
    session = Session(uuid4(), "s", "p", Priority.LOW, SessionState.PENDING, NOW, NOW)
    first = task(0, session.id)
    tasks = [
        first,
        task(1, session.id),
        task(2, session.id),
        task(3, session.id, (first.id,)),
        task(4, session.id, (first.id,)),
    ]
    loose = task(5, None)
    async with uow() as unit:
        await unit.sessions.add(session, None, None)
        for each in [*tasks, loose]:
            await unit.tasks.add(each)
        running = tasks[2].evolve(status=TaskStatus.RUNNING, version=tasks[2].version + 1)
        assert await unit.tasks.save(tasks[2], running)
        tasks[2] = running
        await unit.commit()
    return session, tasks, loose


async def test_a_sessions_tasks_oldest_first_with_their_dependencies(uow, planned):
    session, tasks, _ = planned
    async with uow.reader() as unit:
        assert await unit.tasks.of_session(session.id) == tasks
        assert await unit.tasks.of_session(session.id, (TaskStatus.RUNNING,)) == [tasks[2]]
        assert await unit.tasks.of_session(uuid4()) == []


async def test_several_tasks_by_id_in_the_order_asked_for(uow, planned):
    _, tasks, loose = planned
    async with uow.reader() as unit:
        wanted = [tasks[4].id, uuid4(), loose.id, tasks[0].id]
        assert await unit.tasks.get_many(wanted) == [tasks[4], loose, tasks[0]]
        assert await unit.tasks.get_many([]) == []


async def test_a_result_that_reads_its_agent_with_the_lock_holds_the_family_lock(uow, planned):
    """The lock a result takes with its agent's record and the task's session (one
    statement on PostgreSQL) is the one every writer of the family takes by the session's
    id: the next waits for the first. An agent not registered takes no lock."""
    session, tasks, _ = planned
    reporter = agent(name="reporter")
    async with uow() as unit:
        await unit.agents.add(reporter)
        await unit.commit()
    async with uow() as gone:
        assert await gone.tasks.lock_session_family_for(tasks[1].id, uuid4()) == (None, None)
        if uow.engine.dialect.name == "postgresql":  # SQLite: one writer at a time anyway
            async with uow() as unit:  # not held by the first: taken at once
                await asyncio.wait_for(unit.tasks.lock_family(session.id), 5)
    async with uow() as first:
        found = await first.tasks.lock_session_family_for(tasks[1].id, reporter.id)
        assert found == (reporter, session.id)
        waiting = await _a_writer_waiting(uow, session.id)
        await first.commit()
    await asyncio.wait_for(waiting, 30)


async def _a_writer_waiting(uow: SqlUnitOfWorkFactory, session_id: UUID) -> asyncio.Task[None]:
    """Another writer, taking the family's lock: still waiting for it 0.3 s later."""

    async def second() -> None:
        async with uow() as unit:
            await unit.tasks.lock_family(session_id)

    waiting = asyncio.create_task(second())
    await asyncio.sleep(0.3)
    assert not waiting.done()
    return waiting


@pytest.mark.parametrize(
    ("offset", "limit", "shown"),
    [
        (0, None, 5),  # every task: the page is the total
        (0, 10, 5),  # a page not full
        (0, 2, 2),  # a full page: counted
        (4, 2, 1),  # the last, short page
        (2, None, 3),
        (9, 2, 0),  # past the end: counted
        (5, 2, 0),
    ],
)
async def test_a_page_comes_with_the_total(uow, planned, offset, limit, shown):
    session, tasks, _ = planned
    async with uow.reader() as unit:
        page, total = await unit.tasks.search(
            session_id=session.id, parent_id=None, statuses=(), offset=offset, limit=limit
        )
    assert page == tasks[offset:][:shown]
    assert total == 5
