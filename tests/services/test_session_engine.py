"""The engine's step on the real app (both backends), called directly."""

from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

from industrial_orchestrator.bootstrap import Components
from industrial_orchestrator.domain.sessions.options import SessionOptions
from industrial_orchestrator.domain.sessions.session import SessionPhase
from industrial_orchestrator.domain.tasks.task import TaskStatus
from industrial_orchestrator.services.plan_advance import Advanced
from industrial_orchestrator.services.sessions import NewSession


# The family lock is PostgreSQL's (an advisory lock); SQLite writers hold the database's.
@pytest.mark.parametrize("backend", ["postgresql"])
async def test_a_step_with_nothing_to_move_does_not_wait_for_the_family_lock(app: FastAPI):
    """After a result (which moved the plan in its own transaction) the step mostly finds
    nothing to open: it then neither writes nor queues behind the session's writers."""
    components: Components = app.state.components
    created = await components.sessions.create(
        NewSession("s", "build it", auto_start=True, options=SessionOptions(template="single"))
    )
    session_id = created.session.id
    engine = components.session_engine
    await engine.step(session_id)  # planned, and its one task opened
    async with components.uow.reader() as uow:
        statuses = [t.status for t in await uow.tasks.of_session(session_id)]
    assert TaskStatus.READY in statuses
    async with components.uow() as writer:
        await writer.tasks.lock_family(session_id)  # a result's transaction, say
        await asyncio.wait_for(engine.step(session_id), timeout=10)


async def test_a_plan_commits_with_its_first_tasks_open(app: FastAPI):
    """Planning stores the plan, moves the session to EXECUTING and opens the tasks that
    wait for nothing, in one transaction: no later step stands between a started session
    and the agents (with many sessions starting, that step waits behind all of theirs).
    The checkpoint taken once planned shows them open."""
    components: Components = app.state.components
    created = await components.sessions.create(
        NewSession("s", "build it", auto_start=True, options=SessionOptions(template="crud"))
    )
    planned = await components.session_engine._planning.step(created.session)
    assert isinstance(planned, Advanced)
    async with components.uow.reader() as uow:
        tasks = await uow.tasks.of_session(created.session.id)
        checkpoint = await uow.checkpoints.latest(created.session.id)
        session = await uow.sessions.get(created.session.id)
    assert session is not None
    assert session.phase == SessionPhase.EXECUTING
    parents = {task.parent_id for task in tasks}
    free = {task.id for task in tasks if not task.depends_on and task.id not in parents}
    ready = {task.id for task in tasks if task.status == TaskStatus.READY}
    assert ready == free
    assert planned.opened == len(free) > 0
    assert checkpoint is not None
    assert checkpoint.label == "planned"
    shown = checkpoint.data["tasks"]
    assert {task_id for task_id, status in shown.items() if status == "READY"} == {
        str(task_id) for task_id in free
    }
